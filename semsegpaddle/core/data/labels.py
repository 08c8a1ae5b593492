"""From the values in label files to class ids: value maps, ``reduce_zero_label``, colour masks.

Every dataset can take these options, so the usual mismatches between label files and a model's
classes are fixed in the config rather than by rewriting the files:

- ``label_map: {255: 1}`` — 0/255 binary masks to classes 0/1; any value → value (applied first);
- ``reduce_zero_label: true`` — 0 (an unlabelled background) becomes ``ignore_index``, every other
  value is shifted down by one (ADE20K's convention);
- colour masks (RGB files painting each class in its palette colour) become class ids through the
  dataset's palette; a colour outside the palette is an error naming it, or ``ignore_index`` for
  the colours listed as ignored.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from semsegpaddle.core.common.errors import DataError

#: the largest raw label value handled by the lookup table (16-bit label files)
MAX_VALUE = 65535


class LabelMapping:
    """A vectorised raw-value → class-id mapping (one lookup table, no per-pixel Python)."""

    def __init__(self, ignore_index: int = 255, label_map: Mapping[int, int] | None = None,
                 reduce_zero_label: bool = False, colors: Sequence[Sequence[int]] | np.ndarray | None = None,
                 ignore_colors: Sequence[Sequence[int]] = ()) -> None:
        self.ignore_index = int(ignore_index)
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        for key, value in self.label_map.items():
            if not (0 <= key <= MAX_VALUE and 0 <= value <= MAX_VALUE):
                raise ValueError(f"label_map={{{key}: {value}}}: values must lie in 0..{MAX_VALUE}")
        self.reduce_zero_label = bool(reduce_zero_label)
        table = np.arange(MAX_VALUE + 1, dtype=np.int64)
        for key, value in self.label_map.items():
            table[key] = value
        if self.reduce_zero_label:
            zero = table == 0
            table = table - 1
            table[zero] = self.ignore_index
            table[table == self.ignore_index - 1] = self.ignore_index  # ignore stays ignore
        self.table = table
        self._byte_table = _compact(table[:256])  # looks up uint8 files (most datasets) into uint8 ids
        self._wide_table = _compact(table)
        self.colors = None if colors is None else np.asarray(colors, dtype=np.int64).reshape(-1, 3)
        self.ignore_colors = np.asarray(ignore_colors, dtype=np.int64).reshape(-1, 3)

    @property
    def is_identity(self) -> bool:
        """True when raw values are already the class ids."""
        return not self.label_map and not self.reduce_zero_label and self.colors is None

    def __call__(self, raw: np.ndarray, where: str = "label") -> np.ndarray:
        """Class ids of a raw label (H×W integers, or H×W×3 colours with a palette), H×W in the
        smallest integer type holding them: uint8 for a uint8 file whose mapped values fit, so
        the training pipeline never widens a mask to int64."""
        if raw.ndim == 3:
            raw = self.colour_ids(raw, where)
        if self.is_identity or raw.ndim != 2:
            return raw
        if raw.dtype == np.uint8:
            return np.take(self._byte_table, raw)
        if raw.min(initial=0) < 0 or raw.max(initial=0) > MAX_VALUE:
            raise DataError(f"{where}: label values must lie in 0..{MAX_VALUE}, found "
                            f"{int(raw.min())}..{int(raw.max())}")
        return np.take(self._wide_table, raw)

    def colour_ids(self, rgb: np.ndarray, where: str = "label") -> np.ndarray:
        """Class ids of an H×W×3 colour mask via the palette (ignored colours → ``ignore_index``)."""
        if self.colors is None:
            raise DataError(f"{where}: label file holds colours, but the dataset has no palette to read them "
                            f"with; save class ids (mode L or P) or set the dataset's colour option")
        codes = _codes(rgb[..., :3].astype(np.int64))
        known = np.concatenate([_codes(self.colors), _codes(self.ignore_colors)])
        ids = np.concatenate([np.arange(len(self.colors)), np.full(len(self.ignore_colors), self.ignore_index)])
        order = np.argsort(known)
        position = np.clip(np.searchsorted(known[order], codes), 0, len(known) - 1)
        found = known[order][position] == codes
        if not found.all():
            missing = np.unique(codes[~found])[:5]
            colours = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in missing.tolist())
            raise DataError(f"{where}: colours {colours} are not in the dataset's palette")
        return ids[order][position]


def _compact(table: np.ndarray) -> np.ndarray:
    """``table`` in the smallest of uint8, uint16 and int64 holding its values."""
    for dtype in (np.uint8, np.uint16):
        if table.min(initial=0) >= 0 and table.max(initial=0) <= np.iinfo(dtype).max:
            return table.astype(dtype)
    return table


def _codes(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
