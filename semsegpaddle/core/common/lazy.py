"""Module-level ``__getattr__`` that imports a heavy sibling module on first attribute access."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable


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
