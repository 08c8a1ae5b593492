"""PASCAL VOC 2012 segmentation (21 classes), with the SBD-augmented training set on request: registration.

Imports neither numpy nor paddle: the dataset lives in ``voc_impl`` (layouts and list files
documented there) and is imported when a dataset is built.
"""
from __future__ import annotations

from pathlib import Path

from semsegpaddle import hookimpl
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, label_mapping


def voc(split: str, *, root: Path, aug: bool = False, label_map: dict[int, int] | None = None,
        reduce_zero_label: bool = False):
    """PASCAL VOC 2012: 20 object classes and background, 255 = void; splits from ImageSets/Segmentation."""
    if not isinstance(aug, bool):
        raise ValueError(f"aug={aug!r} is not valid; expected true or false")
    if not split or "/" in split or "\\" in split:
        raise ValueError(f"voc dataset has no split {split!r}; expected a list name such as train, val or trainval")
    if aug and split not in ("train", "val"):
        raise ValueError(f"aug=True augments the train split only; split {split!r} would mix SBD and VOC lists "
                         f"(use train and val)")
    mapping = label_mapping(ignore_index=255, label_map=label_map, reduce_zero_label=reduce_zero_label)
    from semsegpaddle.plugins.datasets.voc_impl import VOCDataset

    return VOCDataset(root, split, mapping, aug=aug)


def voc_labels(options: dict) -> dict | None:
    """The classes and palette a ``voc`` dataset with ``options`` has, known without its files
    (None when a ``label_map`` makes them depend on the data)."""
    if options.get("label_map"):
        return None
    from semsegpaddle.plugins.datasets.voc_impl import CLASS_NAMES, PALETTE

    skip = 1 if options.get("reduce_zero_label") else 0
    return {"class_names": list(CLASS_NAMES[skip:]), "palette": [[int(v) for v in c] for c in PALETTE[skip:]]}


@hookimpl
def semseg_register_datasets(register):
    """Register the ``voc`` dataset."""
    register(
        "voc",
        voc,
        label_space=voc_labels,
        options={
            "root": "VOCdevkit, or VOCdevkit/VOC2012 (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)",
            "aug": "true: the train split is the SBD-augmented set (SegmentationClassAug/ with train_aug.txt, "
                   "trainaug.txt or train.txt + aug.txt); val is unchanged",
            **LABEL_OPTIONS,
            "reduce_zero_label": "true: background (0) is ignored and value k is class k-1, 20 classes without "
                                 "background; false: the 21 VOC classes",
        },
        description="PASCAL VOC 2012, 21 classes, 255 = void (splits = ImageSets/Segmentation lists; no download)",
    )
