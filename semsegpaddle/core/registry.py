"""Per-kind registries of components (backbones, decoders, datasets) and their declared options."""
from __future__ import annotations

import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from semsegpaddle.core.errors import DuplicateComponentError, UnknownComponentError, did_you_mean
from semsegpaddle.core.typecheck import type_name

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Option:
    """One keyword argument of a component's factory: what `semseg list` shows and config checks."""

    name: str
    default: Any
    annotation: Any
    description: str

    @property
    def type_name(self) -> str:
        """The annotation as a readable string, e.g. ``int`` or ``list[int] | None``."""
        return type_name(self.annotation)


@dataclass(frozen=True)
class Component:
    """A registered backbone, decoder or dataset, and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    options: tuple[Option, ...]
    plugin: str = "?"
    distribution: str = "?"
    version: str = "?"
    extras: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Option | None:
        """The option called ``name``, or None."""
        return next((o for o in self.options if o.name == name), None)

    def defaults(self) -> dict[str, Any]:
        """Option name -> default value."""
        return {o.name: o.default for o in self.options}


def declared_options(
    factory: Callable[..., Any], descriptions: dict[str, str], positional: tuple[str, ...]
) -> tuple[Option, ...]:
    """Read the factory's keyword arguments and pair each with its one-line description.

    Every keyword argument with a default must be described and every description must name one,
    so the listing is complete and cannot drift from the code.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = _annotations(target)
    params = [
        p
        for p in inspect.signature(factory).parameters.values()
        if p.name not in positional and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing_default = [p.name for p in params if p.default is _EMPTY]
    if missing_default:
        raise TypeError(f"options without a default: {', '.join(missing_default)}")
    names = [p.name for p in params]
    undescribed = [n for n in names if n not in descriptions]
    unknown = [n for n in descriptions if n not in names]
    if undescribed or unknown:
        raise TypeError(
            f"option descriptions do not match the factory's keyword arguments "
            f"(undescribed: {undescribed or 'none'}, not arguments: {unknown or 'none'})"
        )
    return tuple(
        Option(p.name, p.default, hints.get(p.name, p.annotation), descriptions[p.name]) for p in params
    )


def _annotations(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return inspect.get_annotations(target, eval_str=True)
    except Exception:  # unresolvable string annotations: keep them as strings
        return inspect.get_annotations(target)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class Registry:
    """The components of one kind (``backbone``, ``decoder`` or ``dataset``)."""

    def __init__(self, kind: str, positional: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.positional = positional
        self._components: dict[str, Component] = {}
        self._conflicts: dict[str, str] = {}  # name -> the duplicate-registration message

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: dict[str, str],
        description: str = "",
        plugin: str = "?",
        distribution: str = "?",
        version: str = "?",
        **extras: Any,
    ) -> Component:
        """Register ``factory`` under ``name``.

        ``options`` maps each keyword argument of the factory to a one-line description;
        ``description`` is one line about the component; ``extras`` are kind-specific (e.g. a
        backbone's ``convert_weights``). A name registered twice raises
        :class:`DuplicateComponentError` naming both plugins: there is no silent override.
        """
        if not re.fullmatch(r"[a-z][a-z0-9_\-.]*", name):
            raise ValueError(f"{self.kind} name {name!r} must be lower case letters, digits, _ - .")
        if name in self._components:
            other = self._components[name]
            self._conflicts[name] = (
                f"{self.kind} '{name}' is registered twice: by plugin '{other.plugin}' "
                f"({other.distribution}) and by plugin '{plugin}' ({distribution}); "
                f"uninstall or block one of them (SEMSEG_BLOCK_PLUGINS)"
            )
            raise DuplicateComponentError(self._conflicts[name])
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        component = Component(
            kind=self.kind,
            name=name,
            factory=factory,
            description=doc,
            options=declared_options(factory, options, self.positional),
            plugin=plugin,
            distribution=distribution,
            version=version,
            extras=dict(extras),
        )
        self._components[name] = component
        return component

    def get(self, name: str) -> Component:
        """The component called ``name``; unknown names list what exists and the closest one."""
        if name in self._conflicts:
            raise DuplicateComponentError(self._conflicts[name])
        try:
            return self._components[name]
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise UnknownComponentError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._components)}; "
                f"available: {available}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the fnmatch ``pattern``, in natural order."""
        return sorted(fnmatch.filter(self._components, pattern), key=_natural_key)

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __iter__(self) -> Iterator[Component]:
        return (self._components[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._components)
