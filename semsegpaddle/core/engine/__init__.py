"""Training: the loop (``trainer``), checkpoints, the run folder, signal handling, process
set-up (``runtime``) and atomic file writes.

``semsegpaddle.core.engine`` also offers the public names of :mod:`semsegpaddle.core.engine.trainer` (loaded on first use).
"""
from __future__ import annotations

from typing import Any

_MODULE = "semsegpaddle.core.engine.trainer"


def __getattr__(name: str) -> Any:
    import importlib

    module = importlib.import_module(_MODULE)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
