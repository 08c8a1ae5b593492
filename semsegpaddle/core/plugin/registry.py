"""Per-kind registries of components (backbones, decoders, datasets, losses) and their declared
options, and the registry of packaged config files."""
from __future__ import annotations

import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from semsegpaddle.core.common.errors import DuplicateComponentError, UnknownComponentError, did_you_mean
from semsegpaddle.core.common.typecheck import choices_of, type_name

_EMPTY = inspect.Parameter.empty
NAME_PATTERN = r"[a-z][a-z0-9_\-.]*"


class _Required:
    """The default of an option the config must set (a factory keyword without a default)."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


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

    @property
    def choices(self) -> list[Any] | None:
        """The values the option allows when its annotation declares them (``OneOf``), else None."""
        choices = choices_of(self.annotation)
        return None if choices is None else list(choices)

    @property
    def required(self) -> bool:
        """True when the factory gives no default: every config must set this option."""
        return self.default is REQUIRED


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
        """Option name -> default value (required options have none and are left out)."""
        return {o.name: o.default for o in self.options if not o.required}


def declared_options(
    factory: Callable[..., Any], descriptions: dict[str, str], positional: tuple[str, ...]
) -> tuple[Option, ...]:
    """Read the factory's keyword arguments and pair each with its one-line description.

    Every keyword argument must be described and every description must name one, so the listing
    is complete and cannot drift from the code. A keyword without a default is a required option.
    """
    if not callable(factory):
        raise TypeError(f"the factory must be callable, got {type(factory).__name__}")
    if not isinstance(descriptions, dict):
        raise TypeError(f"options must map each keyword argument to a description, got {type(descriptions).__name__}")
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = _annotations(target)
    params = [
        p
        for p in inspect.signature(factory).parameters.values()
        if p.name not in positional and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY]
    if positional_only:
        raise TypeError(f"options must be keyword arguments; positional-only: {', '.join(positional_only)}")
    names = [p.name for p in params]
    undescribed = [n for n in names if n not in descriptions]
    unknown = [n for n in descriptions if n not in names]
    if undescribed or unknown:
        raise TypeError(
            f"option descriptions do not match the factory's keyword arguments "
            f"(undescribed: {undescribed or 'none'}, not arguments: {unknown or 'none'})"
        )
    return tuple(
        Option(p.name, REQUIRED if p.default is _EMPTY else p.default, hints.get(p.name, p.annotation),
               descriptions[p.name])
        for p in params
    )


def _annotations(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return inspect.get_annotations(target, eval_str=True)
    except Exception:  # unresolvable string annotations: keep them as strings
        return inspect.get_annotations(target)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"{kind} name {name!r} must be lower case letters, digits, _ - .")


def _who(plugin: str, distribution: str) -> str:
    return f"plugin '{plugin}'" + ("" if distribution in ("-", "?") else f" ({distribution})")


def _taken(kind: str, name: str, first: Any, plugin: str, distribution: str) -> DuplicateComponentError:
    return DuplicateComponentError(
        f"{kind} '{name}' is registered twice: {_who(first.plugin, first.distribution)} registered it first "
        f"and keeps it; {_who(plugin, distribution)} is refused (rename one, or block one with SEMSEG_BLOCK_PLUGINS)"
    )


class Registry:
    """The components of one kind (``backbone``, ``decoder``, ``dataset`` or ``loss``)."""

    def __init__(self, kind: str, positional: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.positional = positional
        self._components: dict[str, Component] = {}

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
        backbone's ``convert_weights``). The first registration of a name keeps it: a later one
        raises :class:`DuplicateComponentError` naming both plugins and changes nothing.
        """
        _check_name(self.kind, name)
        if name in self._components:
            raise _taken(self.kind, name, self._components[name], plugin, distribution)
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


@dataclass(frozen=True)
class PackagedConfig:
    """A YAML config shipped by a plugin (or by semsegpaddle itself), addressable by name."""

    name: str
    path: Path
    plugin: str
    distribution: str
    version: str


class ConfigFiles:
    """Packaged configs by name: the first registration of a name keeps it, as for components."""

    kind = "config"

    def __init__(self) -> None:
        self._configs: dict[str, PackagedConfig] = {}

    def add(self, name: str, path: str | Path, *, plugin: str = "?", distribution: str = "?",
            version: str = "?") -> PackagedConfig:
        """Register the YAML file ``path`` (it must exist) under ``name``."""
        _check_name(self.kind, name)
        if not isinstance(path, (str, Path)) or not Path(path).is_file():
            raise FileNotFoundError(f"config '{name}': {path} is not a file")
        if Path(path).suffix not in (".yaml", ".yml"):
            raise ValueError(f"config '{name}': {path} is not a .yaml or .yml file")
        if name in self._configs:
            raise _taken(self.kind, name, self._configs[name], plugin, distribution)
        entry = PackagedConfig(name, Path(path).resolve(), plugin, distribution, version)
        self._configs[name] = entry
        return entry

    def find(self, name: str) -> PackagedConfig | None:
        """The config called ``name`` (a trailing .yaml/.yml is ignored), or None."""
        for suffix in (".yaml", ".yml"):
            name = name[: -len(suffix)] if name.endswith(suffix) else name
        return self._configs.get(name)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the fnmatch ``pattern``, in natural order."""
        return sorted(fnmatch.filter(self._configs, pattern), key=_natural_key)

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    def __iter__(self) -> Iterator[PackagedConfig]:
        return (self._configs[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._configs)
