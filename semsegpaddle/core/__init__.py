"""The framework's core, grouped by stage: ``plugin`` (hook specs, plugin manager, registries),
``config`` (YAML loading, schema, validation), ``model`` (contracts, layers, assembly, weights,
losses), ``data`` (datasets, loading, transforms, image files), ``engine`` (training loop,
checkpoints, run folder, process set-up) and ``inference`` (evaluation, metrics, prediction,
export). The core never imports a plugin.

The flat module paths of earlier versions (``semsegpaddle.core.interfaces``,
``semsegpaddle.core.layers``, ...) keep working: they are aliases of the modules' new homes, so
plugins written against them need no change.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any, Callable, Iterable

#: earlier flat module name -> its module now
FLAT_NAMES = {
    "hookspecs": "plugin.hookspecs", "plugins": "plugin.manager", "plugin_failures": "plugin.failures",
    "registry": "plugin.registry", "schema": "config.schema", "typecheck": "config.typecheck",
    "interfaces": "model.interfaces", "layers": "model.layers", "backbone_options": "model.backbone_options",
    "weights": "model.weights", "losses": "model.losses", "loader": "data.loader", "transforms": "data.transforms",
    "image_io": "data.image_io", "checkpoint": "engine.checkpoint", "run_folder": "engine.run_folder",
    "interrupt": "engine.interrupt", "runtime": "engine.runtime", "atomic": "engine.atomic",
    "evaluation": "inference.evaluation", "metrics": "inference.metrics", "prediction": "inference.prediction",
    "export": "inference.export", "capture": "inference.capture",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: ANN001 - importlib protocol
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: ANN001 - already executed under its own name
        pass


class _FlatNames(importlib.abc.MetaPathFinder):
    """Resolves ``semsegpaddle.core.<flat name>`` to the module's new home (the same object)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib protocol
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or name not in FLAT_NAMES:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"{__name__}.{FLAT_NAMES[name]}"))


if not any(isinstance(finder, _FlatNames) for finder in sys.meta_path):
    sys.meta_path.append(_FlatNames())


def lazy_attributes(module: str, names: Iterable[str] | None = None) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving the attributes of ``module`` (all, or ``names``),
    imported on first access: light modules can offer what a heavy sibling defines."""
    allowed = None if names is None else frozenset(names)

    def __getattr__(name: str) -> Any:
        if allowed is None or name in allowed:
            try:
                return getattr(importlib.import_module(module), name)
            except AttributeError:
                pass
        raise AttributeError(f"module has no attribute {name!r}")

    return __getattr__
