"""The plugin manager: load entry-point plugins once, fill one registry per component kind.

Environment switches: ``SEMSEG_BLOCK_PLUGINS=a,b`` skips those entry points;
``SEMSEG_LOAD_PLUGINS=a,b`` loads only those (an empty value loads none).
"""
from __future__ import annotations

import importlib.metadata
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from semsegpaddle.core import hookspecs
from semsegpaddle.core.registry import Registry

ENTRY_POINT_GROUP = "semsegpaddle"

#: kind -> (hook name, factory arguments that are not options)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "backbone": ("semseg_register_backbones", ()),
    "decoder": ("semseg_register_decoders", ("feature_info", "num_classes")),
    "dataset": ("semseg_register_datasets", ("split",)),
}


class PluginWarning(UserWarning):
    """A plugin failed to import or to register; the others were loaded."""


@dataclass
class PluginState:
    """The loaded plugin manager, the registries it filled, and the plugins that failed."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry]
    failures: list[tuple[str, str]] = field(default_factory=list)  # (plugin, error)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin -> (dist, version)

    def distribution_of(self, plugin_name: str) -> tuple[str, str]:
        """(name, version) of the distribution that installed a plugin; ('-', '-') if in-memory."""
        return self.distributions.get(plugin_name, ("-", "-"))


_state: PluginState | None = None
_lock = threading.Lock()


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _warn(state: PluginState, plugin: str, error: BaseException) -> None:
    message = f"plugin '{plugin}' failed and was skipped: {type(error).__name__}: {error}"
    state.failures.append((plugin, f"{type(error).__name__}: {error}"))
    warnings.warn(message, PluginWarning, stacklevel=3)


def _load_entry_points(state: PluginState) -> None:
    allow, block = _env_list("SEMSEG_LOAD_PLUGINS"), _env_list("SEMSEG_BLOCK_PLUGINS") or set()
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                continue
            seen.add(ep.name)
            if ep.name in block or (allow is not None and ep.name not in allow):
                continue
            try:
                plugin = ep.load()
                state.manager.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                _warn(state, ep.name, exc)
                continue
            state.distributions[ep.name] = (dist.metadata["name"], dist.version)


def _fill_registries(state: PluginState) -> None:
    manager = state.manager
    for kind, (hook_name, positional) in KINDS.items():
        registry = state.registries[kind]
        hook = getattr(manager.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order, oldest first
            plugin_name = manager.get_name(impl.plugin) or repr(impl.plugin)
            dist_name, version = state.distribution_of(plugin_name)

            def register(name: str, factory: Callable[..., Any], **kwargs: Any) -> None:
                registry.add(name, factory, plugin=plugin_name, distribution=dist_name,
                             version=version, **kwargs)

            try:
                impl.function(register=register)
            except Exception as exc:
                _warn(state, plugin_name, exc)


def new_state(plugins: list[tuple[object, str]] = (), entry_points: bool = True) -> PluginState:
    """A fresh plugin manager: entry-point plugins (unless disabled), then ``plugins`` in memory."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    state = PluginState(manager, {kind: Registry(kind, positional) for kind, (_, positional) in KINDS.items()})
    if entry_points:
        _load_entry_points(state)
    for plugin, name in plugins:
        manager.register(plugin, name=name)
    manager.check_pending()
    _fill_registries(state)
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
    """The registry of ``kind`` ('backbone', 'decoder' or 'dataset') after loading plugins."""
    return load_plugins().registries[kind]
