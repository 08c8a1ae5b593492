"""Build a component from its config section: call the registered factory with the section's
options, turning the factory's errors into one line that names the file, the key and the component."""
from __future__ import annotations

import os
import re
from typing import Any, Iterable

from semsegpaddle.core.common.errors import ConfigError, SemsegError
from semsegpaddle.core.plugin.manager import get_registry


def _select(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def component_options(section: dict[str, Any], spec_extra: Iterable[str] = ()) -> dict[str, Any]:
    """The options to pass to a component's factory: the section minus ``name`` and engine keys."""
    skip = {"name", *spec_extra}
    return {k: v for k, v in section.items() if k not in skip}


def build_component(config: dict[str, Any], dotted: str, kind: str, *args: Any, extra: Iterable[str] = (),
                    overrides: dict[str, Any] | None = None) -> Any:
    """Call the factory of the component named at ``dotted`` with its options (``overrides``
    replacing some of them, e.g. ``class_weights: auto`` by the weights computed from the data).

    An error from the factory (ValueError for a bad option value, FileNotFoundError, OSError,
    KeyError, TypeError, ...) becomes a ConfigError ``FILE: KEY (kind 'name'): message`` naming the
    file, the key and the component, so the user knows what to fix; the original stays chained as
    its cause (``semseg --debug`` shows the traceback). Errors that already speak to the user
    (SemsegError) pass unchanged.
    """
    section = _select(config, dotted)
    component = get_registry(kind).get(section["name"])
    try:
        return component.factory(*args, **{**component_options(section, extra), **(overrides or {})})
    except SemsegError:
        raise
    except Exception as exc:
        key = f"{dotted}.{option}" if (option := _blamed_option(section, exc)) else dotted
        source = config.source_of(key) if hasattr(config, "source_of") else "config"
        message = str(exc) if type(exc) is ValueError else _one_line(exc)
        raise ConfigError(f"{source}: {key} ({kind} '{section['name']}'): {message}") from exc


def _blamed_option(section: dict[str, Any], error: BaseException) -> str | None:
    """The option an error is about: named as ``option=value`` (the factory convention), or the
    path option holding the file a FileNotFoundError/OSError names."""
    text = str(error)
    named = next((k for k in section if re.search(rf"\b{re.escape(k)}=", text)), None)
    if named or not isinstance(error, OSError) or error.filename is None:
        return named
    missing = os.path.abspath(str(error.filename))
    paths = {k: str(v) for k, v in section.items() if isinstance(v, (str, os.PathLike)) and os.path.isabs(str(v))}
    return next((k for k, v in paths.items() if missing == v or missing.startswith(v.rstrip(os.sep) + os.sep)), None)


def _one_line(error: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
