"""Cityscapes (19 train classes, read in the official layout or from SemSegPaddle list files): registration.

Imports neither numpy nor paddle: the dataset lives in ``cityscapes_impl`` (layouts and list
files documented there), the label table in ``cityscapes_labels``; both are imported when a
dataset is built.
"""
from __future__ import annotations

import re
from pathlib import Path

from semsegpaddle import hookimpl
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, label_mapping


def cityscapes(split: str, *, root: Path, use_train_ids: bool = True, coarse: bool = False,
               list_file: str | None = "auto", label_map: dict[int, int] | None = None,
               reduce_zero_label: bool = False):
    """Cityscapes: 19 classes from the official label table, 255 ignored; splits are leftImg8bit folders."""
    for option, value in (("use_train_ids", use_train_ids), ("coarse", coarse)):
        if not isinstance(value, bool):
            raise ValueError(f"{option}={value!r} is not valid; expected true or false")
    if list_file is not None and (not isinstance(list_file, str) or not list_file.strip()):
        raise ValueError(f"list_file={list_file!r} is not valid; expected auto, null or a path relative to root")
    if not split or "/" in split or "\\" in split or split in (".", ".."):
        raise ValueError(f"cityscapes dataset has no split {split!r}; expected a leftImg8bit folder "
                         f"(train, val, test, train_extra) or a list name")
    mapping = label_mapping(ignore_index=255, label_map=label_map, reduce_zero_label=reduce_zero_label)
    from semsegpaddle.plugins.datasets.cityscapes_impl import CityscapesDataset

    return CityscapesDataset(root, split, mapping, use_train_ids=use_train_ids, coarse=coarse, list_file=list_file)


#: CITY_SEQUENCE_FRAME anywhere in a file name, as the official evaluator matches files
_FRAME = re.compile(r"([A-Za-z-]+_\d{6}_\d{6})(?!\d)")


def sample_key(file_name: str) -> str | None:
    """The ``city_seq_frame`` part of a Cityscapes file name (None if it has none)."""
    found = _FRAME.search(file_name)
    return found.group(1) if found else None


def submission_name(file_name: str) -> str | None:
    """The name the evaluation server expects for the prediction of an image file."""
    key = sample_key(file_name)
    return None if key is None else f"{key}_leftImg8bit.png"


def submission_ids() -> dict[int, int]:
    """Train id (class index) -> labelId of the official table, for files the evaluator reads."""
    from semsegpaddle.plugins.datasets.cityscapes_labels import TRAIN_LABELS

    return {label.train_id: label.id for label in TRAIN_LABELS}


def cityscapes_labels(options: dict) -> dict | None:
    """The classes and palette a ``cityscapes`` dataset with ``options`` has, known without its files
    (None when a ``label_map`` makes them depend on the data)."""
    if options.get("label_map"):
        return None
    from semsegpaddle.plugins.datasets.cityscapes_labels import CLASS_NAMES, PALETTE

    skip = 1 if options.get("reduce_zero_label") else 0
    return {"class_names": list(CLASS_NAMES[skip:]), "palette": [list(c) for c in PALETTE[skip:]]}


@hookimpl
def semseg_register_datasets(register):
    """Register the ``cityscapes`` dataset."""
    register(
        "cityscapes",
        cityscapes,
        label_space=cityscapes_labels,
        options={
            "root": "folder holding leftImg8bit/ and gtFine/ (gtCoarse/ for coarse; list files optional)",
            "use_train_ids": "true: read *_labelTrainIds.png where present, else convert *_labelIds.png; "
                             "false: always convert *_labelIds.png with the official table",
            "coarse": "true: labels from gtCoarse/ (splits train, train_extra, val); train_extra holds "
                      "the 19,998 extra images",
            "list_file": "auto: cityscapes_list/<split>.lst or <split>Labels.txt under root when present, "
                         "else scan the folders; null: always scan; else a list file relative to root "
                         "({split} = the split)",
            **LABEL_OPTIONS,
            "label_map": "train id -> class id, applied to the train ids (after the labelIds conversion), "
                         "e.g. {18: 255} ignores bicycle; values not listed stay as they are",
            "reduce_zero_label": "true: train id 0 (road) is ignored and the other classes move down by one "
                                 "(18 classes); rarely wanted",
        },
        description="Cityscapes, 19 classes by the official label table, 255 = ignored (splits train, val, "
                    "test; train_extra with coarse; no download)",
        sample_key=sample_key,
        submission_ids=submission_ids,
        submission_name=submission_name,
    )
