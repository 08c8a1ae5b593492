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


def ade20k_labels(options: dict) -> dict | None:
    """The classes and palette an ``ade20k`` dataset with ``options`` has, known without its files
    (None when a ``label_map`` makes them depend on the data)."""
    if options.get("label_map"):
        return None
    from semsegpaddle.plugins.datasets.ade20k_impl import CLASS_NAMES, OTHER_COLOUR, OTHER_NAME, PALETTE

    names, palette = list(CLASS_NAMES), [[int(v) for v in c] for c in PALETTE]
    if not options.get("reduce_zero_label", True):
        names, palette = [OTHER_NAME, *names], [list(OTHER_COLOUR), *palette]
    return {"class_names": names, "palette": palette}


@hookimpl
def semseg_register_datasets(register):
    """Register the ``ade20k`` dataset."""
    register(
        "ade20k",
        ade20k,
        label_space=ade20k_labels,
        options={
            "root": "the ADEChallengeData2016 folder (images/, annotations/) or the folder holding it",
            **LABEL_OPTIONS,
            "reduce_zero_label": "true (the benchmark's convention): annotation 0 is ignored and value k is class "
                                 "k-1, 150 classes; false: the raw values are the classes, 151 with 0 = 'other'",
        },
        description="ADE20K scene parsing, 150 classes (ADEChallengeData2016; splits train, val; no download)",
    )
