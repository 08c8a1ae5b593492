"""PASCAL-Context (59 or 60 classes) read from disk, in the layout SemSegPaddle used.

Layout (``root``)::

    root/
      JPEGImages/<id>.jpg
      GroundTruth_trainval_png/<id>.png     # 0 = background, 1..59 = the 59 classes (alphabetical)
      pascal_context_train.txt              # 4998 lines 'JPEGImages/<id>.jpg GroundTruth_trainval_png/<id>.png'
      pascal_context_val.txt                # 5105 lines

A split is the list file ``pascal_context_<split>.txt`` (``list_file`` names another, e.g.
``ImageSets/{split}.txt``). A line is an ``image label`` pair of paths relative to ``root``, or a
single image id (a path is taken by its stem) looked up in ``JPEGImages`` and
``GroundTruth_trainval_png``.

Label values follow the 59-class release (``59_labels.txt``): 0 is background, 1..59 the classes in
alphabetical order. With 59 classes (the usual benchmark, and SemSegPaddle's) background is
ignored and value ``k`` is class ``k - 1``; with 60 the values are the classes, 0 = background.
The palette is the PASCAL VOC colour map by label value, so a class has the same colour in both
variants (SemSegPaddle coloured class ``k - 1`` with map entry ``k - 1`` in its visualisations).
"""
from __future__ import annotations

import os
from pathlib import Path

from semsegpaddle.core.data.base import default_palette
from semsegpaddle.core.data.file_dataset import (
    FileDataset,
    Pair,
    listed_pairs,
    read_list_lines,
    require_dir,
)
from semsegpaddle.core.data.labels import LabelMapping
from semsegpaddle.core.common.errors import DataError

IMAGE_FOLDER = "JPEGImages"
LABEL_FOLDER = "GroundTruth_trainval_png"
DEFAULT_LIST = "pascal_context_{split}.txt"
BACKGROUND = "background"

#: the 59 classes, for label values 1..59
CLASS_NAMES_59: tuple[str, ...] = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)
CLASS_NAMES_60: tuple[str, ...] = (BACKGROUND, *CLASS_NAMES_59)
#: colour of each label value 0..59 (the PASCAL VOC colour map)
PALETTE_60 = default_palette(len(CLASS_NAMES_60))


def split_pairs(root: str | os.PathLike[str], split: str, list_file: str = DEFAULT_LIST) -> list[Pair]:
    """(image, label) pairs of ``split`` in list order; listed files that do not exist are a
    pairing problem, an empty list an error naming it."""
    root = require_dir(root, "Pascal Context root")
    path = root / list_file.replace("{split}", split)
    if not path.is_file():
        raise FileNotFoundError(2, f"Pascal Context list file of split '{split}' not found", str(path))
    pairs: list[Pair] = []
    missing: list[str] = []
    for number, fields in read_list_lines(path):
        if len(fields) == 2:
            image, label = root / fields[0], root / fields[1]
        elif len(fields) == 1:
            stem = Path(fields[0]).stem
            image, label = root / IMAGE_FOLDER / f"{stem}.jpg", root / LABEL_FOLDER / f"{stem}.png"
        else:
            raise DataError(f"{path}:{number}: expected 'image label' or an image id, got {len(fields)} fields")
        absent = [str(p) for p in (image, label) if not p.is_file()]
        if absent:
            missing.extend(absent)
        else:
            pairs.append((image, label))
    return listed_pairs(path, pairs, missing, f"Pascal Context split '{split}'")


class PascalContextDataset(FileDataset):
    """One split of PASCAL-Context: 59 classes with background ignored (``mapping.reduce_zero_label``),
    or 60 with background as class 0."""

    def __init__(self, root: str | os.PathLike[str], split: str, mapping: LabelMapping,
                 list_file: str = DEFAULT_LIST) -> None:
        if mapping.reduce_zero_label:
            names, palette = CLASS_NAMES_59, PALETTE_60[1:]
        else:
            names, palette = CLASS_NAMES_60, PALETTE_60
        super().__init__(split_pairs(root, split, list_file), num_classes=len(names), class_names=names,
                         palette=palette, ignore_index=mapping.ignore_index, mapping=mapping,
                         name="pascal_context", split=split)
