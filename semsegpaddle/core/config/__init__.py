"""Configs: YAML loading with ``_base_`` and overrides (``loader``), the engine's keys (``schema``),
value checks against type annotations (``typecheck``), and the packaged configs (``configs/``).

``semsegpaddle.core.config`` also offers the public names of :mod:`semsegpaddle.core.config.loader` (loaded on first use).
"""
from __future__ import annotations

from typing import Any

_MODULE = "semsegpaddle.core.config.loader"


def __getattr__(name: str) -> Any:
    import importlib

    module = importlib.import_module(_MODULE)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
