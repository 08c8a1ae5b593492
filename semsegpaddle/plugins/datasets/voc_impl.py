"""PASCAL VOC 2012 segmentation, optionally with the SBD-augmented training set, read from disk.

Layout (``root`` is ``VOCdevkit`` or ``VOCdevkit/VOC2012``)::

    VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png          # palette PNGs: index = class (0..20), 255 = void border
      ImageSets/Segmentation/{train,val,trainval}.txt   # one image id per line
      SegmentationClassAug/<id>.png       # SBD conversion (only for aug=True)

``aug=True`` replaces the ``train`` split by the SBD-augmented training set ("train_aug", 10,582
images in the usual conversion). Its list is the first found of:

- ``ImageSets/Segmentation/train_aug.txt`` or ``ImageSets/SegmentationAug/train_aug.txt`` (the
  widely shared SegmentationClassAug release; lines are ids or ``/JPEGImages/x.jpg /Seg.../x.png``),
- ``ImageSets/Segmentation/trainaug.txt`` (MMSegmentation's voc_aug converter),
- ``ImageSets/Segmentation/train.txt`` followed by ``aug.txt`` (MMSegmentation's config and
  PaddleSeg's ``voc_augment.py``: aug.txt holds the SBD images outside VOC's train/val).

An image with an original VOC annotation (``SegmentationClass/<id>.png``, with its void borders)
uses it; the others use ``SegmentationClassAug/<id>.png``. The ``val`` split is never augmented.
"""
from __future__ import annotations

import os
from pathlib import Path

from semsegpaddle.core.data.base import default_palette
from semsegpaddle.core.data.file_dataset import FileDataset, Pair, require_dir
from semsegpaddle.core.data.labels import LabelMapping

CLASS_NAMES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
#: VOC's own colour map (the one its palette PNGs carry)
PALETTE = default_palette(len(CLASS_NAMES))
IGNORE_INDEX = 255
LIST_FOLDER = Path("ImageSets", "Segmentation")
#: the SBD-augmented training lists, in the order they are looked for (a tuple of files read in turn)
AUG_LISTS: tuple[tuple[Path, ...], ...] = (
    (LIST_FOLDER / "train_aug.txt",),
    (Path("ImageSets", "SegmentationAug", "train_aug.txt"),),
    (LIST_FOLDER / "trainaug.txt",),
    (LIST_FOLDER / "train.txt", LIST_FOLDER / "aug.txt"),
)


def voc2012_folder(root: str | os.PathLike[str]) -> Path:
    """The VOC2012 folder: ``root/VOC2012`` when ``root`` is VOCdevkit, else ``root`` itself."""
    root = require_dir(root, "VOC root")
    for folder in (root / "VOC2012", root):
        if (folder / "JPEGImages").is_dir():
            return folder
    raise FileNotFoundError(2, "VOC root holds neither VOC2012/JPEGImages nor JPEGImages "
                               "(expected VOCdevkit or VOCdevkit/VOC2012)", str(root))


def read_ids(path: Path) -> list[tuple[str, int]]:
    """(image id, line number) of each non-blank line; a line's first field may be an id or a path."""
    if not path.is_file():
        raise FileNotFoundError(2, "VOC list file not found", str(path))
    ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if fields:
            ids.append((Path(fields[0]).stem, number))
    return ids


def aug_lists(folder: Path) -> tuple[Path, ...]:
    """The list files of the SBD-augmented training set (see the module docstring)."""
    for candidate in AUG_LISTS:
        if all((folder / part).is_file() for part in candidate):
            return tuple(folder / part for part in candidate)
    raise FileNotFoundError(2, "aug=True needs the SBD-augmented training list (train_aug.txt, trainaug.txt "
                               "or aug.txt beside train.txt) and SegmentationClassAug/",
                            str(folder / AUG_LISTS[0][0]))


def split_pairs(root: str | os.PathLike[str], split: str, aug: bool = False) -> list[Pair]:
    """(image, label) pairs of ``split`` in list order; the first missing file is an error naming it."""
    folder = voc2012_folder(root)
    images = folder / "JPEGImages"
    labels = require_dir(folder / "SegmentationClass", "VOC SegmentationClass")
    if aug and split == "train":
        extra = require_dir(folder / "SegmentationClassAug", "VOC SegmentationClassAug (SBD labels for aug=True)")
        lists = aug_lists(folder)
    else:
        extra, lists = None, (folder / LIST_FOLDER / f"{split}.txt",)
    have_image, have_label = set(os.listdir(images)), set(os.listdir(labels))
    have_extra = set(os.listdir(extra)) if extra is not None else set()
    pairs: list[Pair] = []
    seen: set[str] = set()
    for list_file in lists:
        for image_id, number in read_ids(list_file):
            if image_id in seen:
                continue
            seen.add(image_id)
            where = f"{list_file}:{number}"
            image = images / f"{image_id}.jpg"
            if image.name not in have_image:
                raise FileNotFoundError(2, f"image of id '{image_id}' ({where}) not found", str(image))
            label_name = f"{image_id}.png"
            if label_name in have_label:
                pairs.append((image, labels / label_name))
            elif label_name in have_extra:
                pairs.append((image, extra / label_name))
            else:
                missing = (extra or labels) / label_name
                raise FileNotFoundError(2, f"label of id '{image_id}' ({where}) not found", str(missing))
    return pairs


class VOCDataset(FileDataset):
    """One split of PASCAL VOC 2012: 21 classes (20 without background when zero is reduced)."""

    def __init__(self, root: str | os.PathLike[str], split: str, mapping: LabelMapping, aug: bool = False) -> None:
        names, palette = (CLASS_NAMES[1:], PALETTE[1:]) if mapping.reduce_zero_label else (CLASS_NAMES, PALETTE)
        super().__init__(split_pairs(root, split, aug), num_classes=len(names), class_names=names,
                         palette=palette, ignore_index=mapping.ignore_index, mapping=mapping, name="voc",
                         split=split)
