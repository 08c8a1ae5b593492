"""Options and helpers shared by the dataset plugins (light: no numpy, paddle or cv2 at import).

Every real dataset offers the same two label options, so a mismatch between the values in the
label files and the model's classes is fixed in the config instead of by rewriting the files::

    from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, label_mapping

    def cityscapes(split: str, *, root: Path, ..., label_map: dict[int, int] | None = None,
                   reduce_zero_label: bool = False):
        \"\"\"...\"\"\"
        from semsegpaddle.plugins.datasets.cityscapes_impl import CityscapesDataset
        mapping = label_mapping(ignore_index=255, label_map=label_map, reduce_zero_label=reduce_zero_label)
        return CityscapesDataset(split, root, mapping=mapping)   # FileDataset(..., mapping=mapping)

    @hookimpl
    def semseg_register_datasets(register):
        register("cityscapes", cityscapes, options={"root": "...", ..., **LABEL_OPTIONS})

Names (stable; other plugins import them):

- ``LABEL_OPTIONS`` — ``{"label_map": ..., "reduce_zero_label": ...}``, the one-line descriptions
  of the two options; spread it into ``register(..., options={...})``. The factory declares them
  as ``label_map: dict[int, int] | None = None`` and ``reduce_zero_label: bool = False``.
- ``label_mapping(ignore_index, label_map=None, reduce_zero_label=False, colors=None,
  ignore_colors=())`` — checks the option values (a ValueError naming ``label_map=...`` that the
  config loader turns into a one-line error on that key) and returns the
  :class:`~semsegpaddle.core.data.labels.LabelMapping` to pass to ``FileDataset(mapping=...)``.
  ``colors`` (the palette, one RGB per class) makes colour masks readable.
- ``check_split(dataset, split, splits)`` — a ValueError naming the split and the valid ones.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

#: descriptions of the label options every real dataset takes (spread into ``register(options=...)``)
LABEL_OPTIONS: dict[str, str] = {
    "label_map": "raw label value -> class id, applied first, e.g. {255: 1} for 0/255 binary masks; "
                 "values not listed stay as they are",
    "reduce_zero_label": "true: value 0 (unlabelled background) becomes ignore_index and every other "
                         "value moves down by one (ADE20K convention); ignore_index stays ignored",
}


def label_mapping(ignore_index: int = 255, label_map: Mapping[Any, Any] | None = None,
                  reduce_zero_label: bool = False, colors: Sequence[Sequence[int]] | None = None,
                  ignore_colors: Sequence[Sequence[int]] = ()) -> Any:
    """The LabelMapping for the label options (ValueError ``label_map=...`` on a bad value).

    ``label_map`` keys and values must be integers in 0..65535 (integer strings such as ``"255"``
    are accepted, as JSON or some YAML writers quote keys). ``colors``/``ignore_colors``: RGB
    triples read as class ids / ``ignore_index`` in colour masks (leave None for id masks).
    """
    from semsegpaddle.core.data.labels import MAX_VALUE, LabelMapping

    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not 0 <= ignore_index <= MAX_VALUE:
        raise ValueError(f"ignore_index={ignore_index!r} is not valid; expected an integer in 0..{MAX_VALUE}")
    if not isinstance(reduce_zero_label, bool):
        raise ValueError(f"reduce_zero_label={reduce_zero_label!r} is not valid; expected true or false")
    clean: dict[int, int] = {}
    if label_map is not None:
        if not isinstance(label_map, Mapping):
            raise ValueError(f"label_map={label_map!r} is not valid; expected a mapping such as {{255: 1}}")
        for key, value in label_map.items():
            raw, mapped = _as_label_value(key), _as_label_value(value)
            if raw is None or mapped is None or raw > MAX_VALUE or mapped > MAX_VALUE:
                raise ValueError(f"label_map={{{key!r}: {value!r}}} is not valid; keys and values must be "
                                 f"integers in 0..{MAX_VALUE}, e.g. {{255: 1}}")
            clean[raw] = mapped
    colors = _plain_list(colors)
    ignore_colors = _plain_list(ignore_colors) or []
    if colors is not None:
        _check_colours("palette", colors)
    _check_colours("ignore_colors", ignore_colors)
    return LabelMapping(ignore_index, label_map=clean, reduce_zero_label=reduce_zero_label,
                        colors=None if colors is None else [list(c) for c in colors],
                        ignore_colors=[list(c) for c in ignore_colors])


def check_split(dataset: str, split: str, splits: Iterable[str]) -> None:
    """ValueError ``<dataset> dataset has no split 'x'; expected one of: ...`` unless ``split`` is valid."""
    splits = list(splits)
    if split not in splits:
        raise ValueError(f"{dataset} dataset has no split {split!r}; expected one of: {', '.join(splits)}")


def _as_label_value(value: Any) -> int | None:
    """``value`` as a non-negative int (from an int or an integer string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    return None


def _plain_list(colours: Any) -> Any:
    """Colour triples as plain lists (numpy arrays too), or None."""
    if colours is None:
        return None
    if hasattr(colours, "tolist"):
        return colours.tolist()
    return [c.tolist() if hasattr(c, "tolist") else list(c) if isinstance(c, tuple) else c for c in colours]


def _check_colours(option: str, colours: Sequence[Sequence[int]]) -> None:
    for colour in colours:
        if (isinstance(colour, (str, bytes)) or not isinstance(colour, Sequence) or len(colour) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
            raise ValueError(f"{option}={list(colours)!r} is not valid; expected RGB triples of integers "
                             f"0..255, e.g. [[0, 0, 0], [128, 0, 0]]")
