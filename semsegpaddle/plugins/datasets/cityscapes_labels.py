"""The Cityscapes label table: every labelId of the benchmark, its train id, category and colour.

The values are those of the official cityscapesScripts (``cityscapesscripts.helpers.labels``):
34 labels with ids 0..33 and ``license plate`` (id -1, never drawn in the label images). Nineteen
of them are trained and scored (train ids 0..18); every other label is ignored (train id 255 here,
where the official table writes 255 or -1).

Light: plain Python, no numpy, so the registration module can show class names without loading
anything heavy.
"""
from __future__ import annotations

from typing import NamedTuple

#: the train id of every label that is not one of the 19 classes
IGNORE_INDEX = 255


class CityscapesLabel(NamedTuple):
    """One row of the official table."""

    name: str
    id: int  # the value in *_labelIds.png
    train_id: int  # 0..18, or 255 (ignored) / -1 (license plate) as in the official table
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


_L = CityscapesLabel
#: the official table, in labelId order (license plate last)
LABELS: tuple[CityscapesLabel, ...] = (
    _L("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    _L("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    _L("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    _L("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    _L("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    _L("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    _L("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    _L("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    _L("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    _L("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    _L("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    _L("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    _L("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    _L("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    _L("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    _L("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    _L("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    _L("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    _L("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    _L("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    _L("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    _L("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    _L("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    _L("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    _L("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    _L("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    _L("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    _L("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    _L("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    _L("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    _L("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    _L("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    _L("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    _L("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
    _L("license plate", -1, -1, "vehicle", 7, False, True, (0, 0, 142)),
)
del _L

#: the 19 trained classes, in train id order
TRAIN_LABELS: tuple[CityscapesLabel, ...] = tuple(sorted((l for l in LABELS if 0 <= l.train_id < IGNORE_INDEX),
                                                         key=lambda l: l.train_id))
CLASS_NAMES: tuple[str, ...] = tuple(l.name for l in TRAIN_LABELS)
#: the official colour of each train class (RGB), in train id order
PALETTE: tuple[tuple[int, int, int], ...] = tuple(l.color for l in TRAIN_LABELS)
#: labelId -> train id for every label of the table (255 for the ignored ones, license plate included)
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    l.id: l.train_id if 0 <= l.train_id < IGNORE_INDEX else IGNORE_INDEX for l in LABELS
}


def train_id(label_id: int) -> int:
    """The train id (0..18) of a labelId, or 255 for a label that is not trained; KeyError for an
    id that is not in the table."""
    return LABEL_ID_TO_TRAIN_ID[label_id]
