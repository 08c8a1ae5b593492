"""Models: the plugin contracts (``interfaces``), shared layers, assembly of backbone + decoder +
auxiliary head (``assembly``), weight import (``weights``), backbone option checks and the training objective (``losses``).

``semsegpaddle.core.model`` also offers the public names of :mod:`semsegpaddle.core.model.assembly` (loaded on first use).
"""
from __future__ import annotations

from typing import Any

_MODULE = "semsegpaddle.core.model.assembly"


def __getattr__(name: str) -> Any:
    import importlib

    module = importlib.import_module(_MODULE)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
