"""Check config values against type annotations (the small subset configs use)."""
from __future__ import annotations

import collections.abc
import inspect
import math
import os
import pathlib
import re
import types
import typing
from typing import Any


class OneOf:
    """``Annotated`` metadata naming the values an option accepts, e.g.
    ``output_stride: Annotated[int, OneOf(8, 16, 32)] = 32``: the type is checked first, then the
    value, whenever a config is validated (``semseg config`` included), without building anything."""

    def __init__(self, *choices: Any) -> None:
        self.choices = choices

    def __repr__(self) -> str:
        return f"OneOf{self.choices!r}"


def choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The values a ``OneOf`` in ``Annotated[T, OneOf(...)]`` allows, else None."""
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, OneOf):
                return meta.choices
    return None


def _strip_annotated(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def type_matches(value: Any, annotation: Any) -> bool:
    """True if ``value`` (as read from YAML) is acceptable for ``annotation``.

    Supports None, bool, int, float (ints accepted), str, ``pathlib.Path`` (a non-empty string),
    list/tuple/Sequence[X] (YAML lists), dict, Literal, Optional/Union and ``X | Y``. Unknown or
    string annotations accept anything.
    """
    annotation = _strip_annotated(annotation)
    if annotation in (inspect.Parameter.empty, Any) or isinstance(annotation, str):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(type_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return isinstance(value, (str, os.PathLike)) and str(value) != ""
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(type_matches(v, a) for v, a in zip(value, args))
        return all(type_matches(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def type_name(annotation: Any) -> str:
    """A readable name for an annotation, e.g. ``int``, ``list[float]``, ``str | None`` (the values
    a ``OneOf`` allows are listed apart, see :func:`choices_of`)."""
    annotation = _strip_annotated(annotation)
    if annotation in (inspect.Parameter.empty, Any):
        return "any"
    if isinstance(annotation, str):
        return annotation
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return "path"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(annotation))
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def is_path_annotation(annotation: Any) -> bool:
    """True for ``pathlib.Path`` (or another PurePath class), alone or in a union such as ``Path | None``.

    String annotations that could not be evaluated count when they name ``Path``.
    """
    if isinstance(annotation, str):
        return re.search(r"\bPath\b", annotation) is not None
    if isinstance(annotation, type):
        return issubclass(annotation, pathlib.PurePath)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(is_path_annotation(arg) for arg in typing.get_args(annotation))
    return False


def first_non_finite(value: Any) -> float | None:
    """The first infinite or NaN float in ``value`` (searching lists and mappings), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for child in children:
        found = first_non_finite(child)
        if found is not None:
            return found
    return None
