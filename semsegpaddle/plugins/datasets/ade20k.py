"""ADE20K, the SceneParsing benchmark's 150 classes (ADEChallengeData2016 on disk): registration.

Imports neither numpy nor paddle: the dataset lives in ``ade20k_impl`` (layout, class names
and palette documented there) and is imported when a dataset is built.
"""
from __future__ import annotations

from pathlib import Path

from semsegpaddle import hookimpl
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, check_split, label_mapping

SPLITS = ("train", "val")


def ade20k(split: str, *, root: Path, reduce_zero_label: bool = True, label_map: dict[int, int] | None = None):
    """ADE20K scene parsing (ADEChallengeData2016): 150 classes, annotation value 0 ignored."""
    check_split("ade20k", split, SPLITS)
    mapping = label_mapping(ignore_index=255, label_map=label_map, reduce_zero_label=reduce_zero_label)
    from semsegpaddle.plugins.datasets.ade20k_impl import ADE20KDataset

    return ADE20KDataset(root, split, mapping)


@hookimpl
def semseg_register_datasets(register):
    """Register the ``ade20k`` dataset."""
    register(
        "ade20k",
        ade20k,
        options={
            "root": "the ADEChallengeData2016 folder (images/, annotations/) or the folder holding it",
            **LABEL_OPTIONS,
            "reduce_zero_label": "true (the benchmark's convention): annotation 0 is ignored and value k is class "
                                 "k-1, 150 classes; false: the raw values are the classes, 151 with 0 = 'other'",
        },
        description="ADE20K scene parsing, 150 classes (ADEChallengeData2016; splits train, val; no download)",
    )
