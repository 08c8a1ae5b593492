"""Checks of a dataset plugin's declared label space (classes and palette known without files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data.datasets import create_dataset
from semsegpaddle.core.engine.checkpoint import label_space
from semsegpaddle.core.engine.restore import declared_labels


def assert_declared_labels_match(name: str, root: Path, options: dict) -> None:
    """The declared classes and palette equal those of the dataset read from ``root``; a label_map
    makes the plugin declare nothing (the classes then depend on the data)."""
    config = config_from_dict({"dataset": {"name": name, "root": str(root), **options}})
    declared = declared_labels(config)
    built = label_space(create_dataset(config, config["dataset"]["val_split"]))
    assert declared["class_names"] == built["class_names"]
    np.testing.assert_array_equal(np.asarray(declared["palette"]), np.asarray(built["palette"]))
    assert declared["num_classes"] == built["num_classes"]
    mapped = config_from_dict({"dataset": {"name": name, "root": str(root), **options, "label_map": {3: 4}}})
    assert declared_labels(mapped) is None
