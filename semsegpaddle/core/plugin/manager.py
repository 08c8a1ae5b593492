"""The plugin manager: load entry-point plugins once, in a fixed order, and fill the registries.

Order: semsegpaddle's own plugins (distribution ``semsegpaddle``) first, then every other plugin
sorted by entry-point name, then in-memory plugins (tests) in the order given. The first
registration of a name keeps it; a later one is refused with a warning naming both plugins.

A broken plugin never takes the others down: an import error, an unknown hook or wrong hook
arguments skip that plugin; a refused component skips that component; an exception in a hook keeps
what the hook registered before it. Each is a :class:`PluginWarning` naming the plugin, its
distribution, the component when known and the ``file:line`` in the plugin's code, and is kept in
``PluginState.failures`` (shown by ``semseg plugins``).

Environment switches: ``SEMSEG_BLOCK_PLUGINS=a,b`` skips those entry points;
``SEMSEG_LOAD_PLUGINS=a,b`` loads only those (an empty value loads none).
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

from semsegpaddle.core.plugin import hookspecs
from semsegpaddle.core.common.errors import DuplicateComponentError
from semsegpaddle.core.plugin.failures import (PluginFailure, caller_location, describe, error_location,
                                               format_traceback, hook_problems, module_roots, plugin_module,
                                               plugin_roots)
from semsegpaddle.core.plugin.registry import ConfigFiles, Registry

ENTRY_POINT_GROUP = "semsegpaddle"
BUILTIN_DISTRIBUTION = "semsegpaddle"
CONFIG_HOOK = "semseg_register_configs"

#: kind -> (hook name, factory arguments that are not options)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "backbone": ("semseg_register_backbones", ("in_channels",)),
    "decoder": ("semseg_register_decoders", ("feature_info", "num_classes")),
    "dataset": ("semseg_register_datasets", ("split",)),
    "loss": ("semseg_register_losses", ("ignore_index",)),
    "logger": ("semseg_register_loggers", ()),
}

__all__ = ["PluginFailure", "PluginState", "PluginWarning", "load_plugins", "new_state", "reset_plugins",
           "get_registry", "call_each"]


class PluginWarning(UserWarning):
    """A plugin, or one component of it, failed to load; everything else was loaded."""


@dataclass
class PluginState:
    """The loaded plugin manager, the registries it filled, and what failed."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry]
    configs: ConfigFiles = field(default_factory=ConfigFiles)
    failures: list[PluginFailure] = field(default_factory=list)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin -> (dist, version)
    order: list[str] = field(default_factory=list)  # registered plugins, in load order
    roots: dict[str, tuple[str, ...]] = field(default_factory=dict)  # plugin -> its code's folders

    def distribution_of(self, plugin_name: str) -> tuple[str, str]:
        """(name, version) of the distribution that installed a plugin; ('-', '-') if in-memory."""
        return self.distributions.get(plugin_name, ("-", "-"))

    def fail(self, failure: PluginFailure) -> None:
        """Record ``failure`` and warn with its one-line message."""
        self.failures.append(failure)
        warnings.warn(failure.message(), PluginWarning, stacklevel=3)


_state: PluginState | None = None
_lock = threading.Lock()


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


# -------------------------------------------------------------------------------------------------
# finding and registering plugins
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EntryPoint:
    name: str
    value: str
    distribution: str
    version: str
    entry_point: Any


def _normalized(dist_name: str) -> str:
    return dist_name.lower().replace("_", "-")


def _entry_points() -> list[_EntryPoint]:
    """Every entry point of the group, built-ins first, then by name (a distribution found twice on
    sys.path counts once: the first copy, which is the one Python imports)."""
    found: dict[tuple[str, str], _EntryPoint] = {}
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["name"] or "?"
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found.setdefault((_normalized(dist_name), ep.name),
                                 _EntryPoint(ep.name, ep.value, dist_name, dist.version, ep))
    return sorted(found.values(), key=lambda e: (_normalized(e.distribution) != BUILTIN_DISTRIBUTION,
                                                 e.name, _normalized(e.distribution)))


def _load_entry_points(state: PluginState) -> None:
    allow, block = _env_list("SEMSEG_LOAD_PLUGINS"), _env_list("SEMSEG_BLOCK_PLUGINS") or set()
    taken: dict[str, _EntryPoint] = {}
    for ep in _entry_points():
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if ep.name in taken:
            state.fail(PluginFailure(ep.name, ep.distribution, ep.version, "entry point",
                                     f"the entry-point name '{ep.name}' is taken by {taken[ep.name].distribution}, "
                                     f"whose plugin loads first"))
            continue
        taken[ep.name] = ep
        roots = module_roots(ep.value)
        try:
            plugin = ep.entry_point.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
            state.fail(PluginFailure(ep.name, ep.distribution, ep.version, "import", describe(exc),
                                     location=error_location(exc, roots), traceback=format_traceback(exc)))
            continue
        _add_plugin(state, plugin, ep.name, ep.distribution, ep.version, roots or plugin_roots(plugin))


def _add_plugin(state: PluginState, plugin: Any, name: str, dist: str, version: str,
                roots: tuple[str, ...]) -> None:
    """Register one plugin and check its hooks against the specs; skip it alone if they do not fit.

    This replaces ``pm.check_pending()``, which raises for the first bad plugin of all of them and
    so would stop every command.
    """
    manager = state.manager
    try:
        manager.register(plugin, name=name)
        unknown = [caller.name for caller in manager.get_hookcallers(plugin) or []
                   if not caller.has_spec()
                   and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())]
    except pluggy.PluginValidationError as exc:  # e.g. a hook asking for an argument it is not given
        if manager.get_plugin(name) is plugin:  # older pluggy leaves a half-registered plugin
            manager.unregister(name=name)
        _reject(state, plugin, name, dist, version, str(exc).splitlines()[0])
        return
    except Exception as exc:  # e.g. the same module under two entry-point names
        state.fail(PluginFailure(name, dist, version, "validation", describe(exc)))
        return
    if unknown:
        manager.unregister(plugin=plugin, name=name)
        _reject(state, plugin, name, dist, version, f"unknown hook(s) {', '.join(unknown)}")
        return
    state.distributions[name] = (dist, version)
    state.order.append(name)
    state.roots[name] = roots


def _reject(state: PluginState, plugin: Any, name: str, dist: str, version: str, fallback: str) -> None:
    problems = hook_problems(state.manager, plugin) or [(fallback, None)]
    state.fail(PluginFailure(name, dist, version, "validation", "; ".join(p for p, _ in problems),
                             location=problems[0][1]))


# -------------------------------------------------------------------------------------------------
# calling hooks, one plugin at a time
# -------------------------------------------------------------------------------------------------


@dataclass
class PluginCall:
    """One plugin's implementation of one hook being called: who it is and what it registered."""

    state: PluginState
    plugin: str
    hook: str
    registered: list[str] = field(default_factory=list)

    @property
    def distribution(self) -> str:
        """The plugin's distribution name ('-' for in-memory plugins)."""
        return self.state.distribution_of(self.plugin)[0]

    @property
    def version(self) -> str:
        """The plugin's distribution version ('-' for in-memory plugins)."""
        return self.state.distribution_of(self.plugin)[1]

    def refuse(self, component: str, error: BaseException, location: str | None = None) -> None:
        """Record that ``component`` was not registered because of ``error``. ``location`` defaults to
        the plugin code that called the function calling ``refuse`` (e.g. its ``register(...)`` line)."""
        if location is None:
            location = caller_location(sys._getframe(2), self.state.roots.get(self.plugin, ()))
        duplicate = isinstance(error, DuplicateComponentError)  # its message is the whole story
        stage, text = ("duplicate", str(error)) if duplicate else ("register", describe(error))
        trace = format_traceback(error) + (f"  (registered at {location})\n" if location else "")
        self.state.fail(PluginFailure(self.plugin, self.distribution, self.version, stage, text,
                                      hook=self.hook, component=component, location=location, traceback=trace))


def call_each(state: PluginState, hook_name: str, kwargs_for: Callable[[PluginCall], dict[str, Any]],
              after: Callable[[PluginCall], None] | None = None) -> None:
    """Call ``hook_name`` of every registered plugin in load order, one at a time.

    ``kwargs_for(call)`` gives the hook's arguments for that plugin; ``after(call)`` runs once it
    returned. An exception in one plugin's hook is recorded as a failure and the next plugin runs;
    what the failing hook did before it raised is kept.
    """
    hook = getattr(state.manager.hook, hook_name)
    for name in list(state.order):
        plugin = state.manager.get_plugin(name)
        for impl in [i for i in hook.get_hookimpls() if i.plugin is plugin]:
            call = PluginCall(state, name, hook_name)
            kwargs = kwargs_for(call)
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except (Exception, SystemExit) as exc:
                state.fail(PluginFailure(
                    name, call.distribution, call.version, "hook", describe(exc), hook=hook_name,
                    component=call.registered[-1] if call.registered else None,
                    location=error_location(exc, state.roots.get(name, ())), traceback=format_traceback(exc)))
            if after is not None:
                after(call)


def _component_register(registry: Registry) -> Callable[[PluginCall], dict[str, Any]]:
    def kwargs_for(call: PluginCall) -> dict[str, Any]:
        def register(*args: Any, **kwargs: Any) -> None:
            name = args[0] if args else kwargs.get("name")
            label = f"{registry.kind} '{name}'"
            try:
                registry.add(*args, plugin=call.plugin, distribution=call.distribution, version=call.version,
                             **kwargs)
            except Exception as exc:  # refuse this component only; the hook goes on
                call.refuse(label, exc)
                return
            call.registered.append(label)

        return {"register": register}

    return kwargs_for


def _config_register(call: PluginCall) -> dict[str, Any]:
    module = plugin_module(call.state.manager.get_plugin(call.plugin))
    base = Path(module.__file__).parent if module is not None and getattr(module, "__file__", None) else Path.cwd()

    def register(name: str, path: str | Path) -> None:
        try:
            call.state.configs.add(name, base / path, plugin=call.plugin, distribution=call.distribution,
                                   version=call.version)
        except Exception as exc:
            call.refuse(f"config '{name}'", exc)
            return
        call.registered.append(f"config '{name}'")

    return {"register": register}


def new_state(plugins: list[tuple[object, str]] = (), entry_points: bool = True) -> PluginState:
    """A fresh plugin manager: entry-point plugins (unless disabled), then ``plugins`` in memory."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    state = PluginState(manager, {kind: Registry(kind, positional) for kind, (_, positional) in KINDS.items()})
    if entry_points:
        _load_entry_points(state)
    for plugin, name in plugins:
        _add_plugin(state, plugin, name, "-", "-", plugin_roots(plugin))
    for kind, (hook_name, _) in KINDS.items():
        call_each(state, hook_name, _component_register(state.registries[kind]))
    call_each(state, CONFIG_HOOK, _config_register)
    return state


def load_plugins() -> PluginState:
    """Load every installed plugin once (idempotent); later calls return the same state."""
    global _state
    with _lock:
        if _state is None:
            _state = new_state()
        return _state


def reset_plugins(state: PluginState | None = None) -> None:
    """Forget the loaded plugins (or install ``state``); the next call reloads. Used by tests."""
    global _state
    with _lock:
        _state = state


def get_registry(kind: str) -> Registry:
    """The registry of ``kind`` ('backbone', 'decoder', 'dataset', 'loss' or 'logger') after loading plugins."""
    return load_plugins().registries[kind]


def list_components(kind: str | None = None, pattern: str = "*") -> list[Any]:
    """Registered components of ``kind`` (or all kinds) whose names match ``pattern``."""
    registries = load_plugins().registries
    kinds = [kind] if kind else list(registries)
    return [registries[k].get(n) for k in kinds for n in registries[k].names(pattern)]
