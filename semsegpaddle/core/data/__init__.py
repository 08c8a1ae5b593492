"""Data: datasets from config and the resumable batch order (``datasets``), batch loading
(``loader``), augmentation (``transforms``) and image/label files (``image_io``).

``semsegpaddle.core.data`` also offers the public names of :mod:`semsegpaddle.core.data.datasets` (loaded on first use).
"""
from __future__ import annotations

from typing import Any

_MODULE = "semsegpaddle.core.data.datasets"


def __getattr__(name: str) -> Any:
    import importlib

    module = importlib.import_module(_MODULE)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
