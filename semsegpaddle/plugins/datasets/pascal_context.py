"""PASCAL-Context (59 classes with background ignored, or 60), SemSegPaddle's layout: registration.

Imports neither numpy nor paddle: the dataset lives in ``pascal_context_impl`` (layout, list
files, label values, names and palette documented there) and is imported when a dataset is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from semsegpaddle import hookimpl
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, label_mapping


def pascal_context(split: str, *, root: Path, num_classes: Literal[59, 60] = 59,
                   list_file: str = "pascal_context_{split}.txt", label_map: dict[int, int] | None = None,
                   reduce_zero_label: bool | None = None):
    """PASCAL-Context: 59 classes (background ignored) or 60 (background = class 0); splits are list files."""
    if isinstance(num_classes, bool) or num_classes not in (59, 60):
        raise ValueError(f"num_classes={num_classes!r} is not valid; expected 59 (background ignored) or 60")
    ignores_background = num_classes == 59
    if reduce_zero_label is not None and reduce_zero_label is not ignores_background:
        raise ValueError(f"reduce_zero_label={reduce_zero_label!r} contradicts the {num_classes} classes of "
                         f"num_classes: 59 ignore value 0 (reduce_zero_label true), 60 keep it as background "
                         f"(false); leave reduce_zero_label unset")
    if not isinstance(list_file, str) or not list_file.strip():
        raise ValueError(f"list_file={list_file!r} is not valid; expected a path relative to root")
    if not split or "/" in split or "\\" in split or split in (".", ".."):
        raise ValueError(f"pascal_context dataset has no split {split!r}; expected a list name such as train or val")
    mapping = label_mapping(ignore_index=255, label_map=label_map, reduce_zero_label=ignores_background)
    from semsegpaddle.plugins.datasets.pascal_context_impl import (
        PascalContextDataset,
    )

    return PascalContextDataset(root, split, mapping, list_file)


@hookimpl
def semseg_register_datasets(register):
    """Register the ``pascal_context`` dataset."""
    register(
        "pascal_context",
        pascal_context,
        options={
            "root": "folder holding JPEGImages/, GroundTruth_trainval_png/ and pascal_context_{train,val}.txt",
            "num_classes": "59: the benchmark's classes, label value 0 (background) ignored; "
                           "60: background is class 0",
            "list_file": "list file of a split, relative to root ({split} = the split): lines 'image label' "
                         "or image ids",
            **LABEL_OPTIONS,
            "reduce_zero_label": "follows num_classes when unset (59: true, 60: false); "
                                 "a value that contradicts it is an error",
        },
        description="PASCAL-Context, 59 classes (background ignored) or 60, 255 = ignored "
                    "(splits train, val from the list files; no download)",
    )
