"""Score prediction PNGs made by any tool against a dataset's labels, with no model (no paddle).

Each sample of the split is matched to one prediction file under the predictions folder (searched
recursively for ``*.png``) by a key taken from the file names: the dataset plugin's
``sample_key`` extra when it registers one (Cityscapes: ``city_seq_frame``, so
``berlin_000000_000019_leftImg8bit.png`` matches ``berlin_000000_000019*.png`` wherever it lies),
else the image's file stem (``a.jpg`` ↔ ``a.png``).

A prediction holds one value per pixel, in one of two encodings (or ``auto``):

- ``index``: the class index (0..num_classes-1), as ``semseg predict`` writes it (Cityscapes:
  train ids);
- ``submission``: the ids of the dataset's official evaluation (its ``submission_ids`` extra;
  Cityscapes: labelIds, as ``semseg predict --format cityscapes`` writes them);
- ``auto`` (default): ``submission`` when the dataset has such ids and some prediction holds a
  value in num_classes..254 (never a class index, nor the usual ignore value 255), else ``index``.

Values that are no class in the chosen encoding count as misses of the true class (see
:class:`semsegpaddle.core.inference.metrics.ConfusionMatrix`). Counting is done on raw values
(0..255, one column for anything above) and mapped to classes at the end, so the encoding is
decided after one reading of every file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.data.file_dataset import FileDataset
from semsegpaddle.core.data.image_io import read_label
from semsegpaddle.core.common.errors import DataError, SemsegError
from semsegpaddle.core.inference.metrics import Metrics, compute_metrics

ENCODINGS = ("auto", "index", "submission")
#: raw prediction values counted one by one; larger values share the last column
RAW_VALUES = 256
#: how many names a "missing predictions" error shows
SHOWN = 3


@dataclass
class ScoreResult:
    """The metrics, the encoding the predictions were read in, and prediction files left unused."""

    metrics: Metrics
    encoding: str
    unused: list[Path]


def default_key(file_name: str) -> str:
    """The key of a file without a dataset rule: its stem."""
    return Path(file_name).stem


def dataset_extras(config: dict[str, Any]) -> dict[str, Any]:
    """The registry extras of the config's dataset component."""
    from semsegpaddle.core.plugin.manager import get_registry

    return get_registry("dataset").get(config["dataset"]["name"]).extras


def build_dataset(config: dict[str, Any], split: str) -> SegDataset:
    """The config's dataset for ``split``, built without the paddle-side helpers."""
    from semsegpaddle.core.plugin.build import build_component
    from semsegpaddle.core.config.schema import SCHEMA

    return build_component(config, "dataset", "dataset", split, extra=SCHEMA["dataset"].extra)


def match_predictions(dataset: SegDataset, folder: Path, key: Callable[[str], str | None]
                      ) -> tuple[list[Path], list[Path]]:
    """(the prediction file of each sample, prediction files that match no sample).

    Raises a one-line SemsegError when samples have no prediction (how many and a few names),
    when two files share a key, or when the dataset's samples have no file names.
    """
    if not isinstance(dataset, FileDataset):
        raise SemsegError(f"dataset '{getattr(dataset, 'name', type(dataset).__name__)}' has no image files to "
                          f"match predictions against; score predictions of a dataset read from files")
    if not folder.is_dir():
        raise FileNotFoundError(2, "predictions folder not found", str(folder))
    found: dict[str, Path] = {}
    unmatched: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".png" and p.is_file()):
        name = key(path.name)
        if name is None:
            unmatched.append(path)
        elif name in found:
            raise SemsegError(f"{found[name]} and {path} are both predictions of '{name}'; keep one")
        else:
            found[name] = path
    chosen: list[Path] = []
    missing: list[str] = []
    for image, _ in dataset.pairs:
        name = key(image.name)
        if name is None or name not in found:
            missing.append(image.name)
        else:
            chosen.append(found.pop(name))
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
        raise SemsegError(f"{folder}: no prediction for {len(missing)} of {len(dataset)} samples of split "
                          f"'{dataset.split}' ({shown}); predictions are matched by file name")
    return chosen, sorted([*unmatched, *found.values()])


def _label(dataset: FileDataset, index: int) -> np.ndarray:
    """The sample's label after the dataset's mapping, without reading its image."""
    path = dataset.pairs[index][1]
    if path is None:
        return np.full((0,), dataset.ignore_index, dtype=np.int64)  # unlabelled: nothing to score
    return dataset.mapping(dataset.read_raw_label(index), where=str(path))


def raw_counts(dataset: FileDataset, predictions: list[Path], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(num_classes × 257 counts of labelled pixels by true class and raw predicted value,
    257 counts of every predicted value over all pixels); the last column holds values > 255."""
    n, ignore = dataset.num_classes, dataset.ignore_index
    counts = np.zeros((n, RAW_VALUES + 1), dtype=np.int64)
    seen = np.zeros(RAW_VALUES + 1, dtype=np.int64)
    for index, path in enumerate(tqdm(predictions, desc="score", unit="img", disable=not progress, leave=False)):
        label = _label(dataset, index)
        prediction = read_label(path)
        raw = np.minimum(prediction.astype(np.int64, copy=False), RAW_VALUES).ravel()
        seen += np.bincount(raw, minlength=RAW_VALUES + 1)
        if label.size == 0:
            continue
        if label.shape != prediction.shape:
            raise DataError(f"{path}: prediction is {prediction.shape[1]}×{prediction.shape[0]}, its label "
                            f"{dataset.pairs[index][1]} is {label.shape[1]}×{label.shape[0]} (width×height)")
        keep = label.ravel() != ignore
        gt = label.ravel()[keep].astype(np.int64)
        if gt.size and (gt.min() < 0 or gt.max() >= n):
            bad = np.unique(gt[(gt < 0) | (gt >= n)])[:5].tolist()
            raise DataError(f"{dataset.pairs[index][1]}: label values {bad} are neither classes 0..{n - 1} "
                            f"nor ignore_index {ignore}")
        counts += np.bincount(gt * (RAW_VALUES + 1) + raw[keep], minlength=n * (RAW_VALUES + 1)).reshape(n, -1)
    return counts, seen


def choose_encoding(encoding: str, seen: np.ndarray, num_classes: int, ignore_index: int,
                    submission: dict[int, int] | None) -> str:
    """``index`` or ``submission``, following the module's rules for ``auto``."""
    if encoding not in ENCODINGS:
        raise SemsegError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if encoding == "submission" and not submission:
        raise SemsegError("encoding 'submission': this dataset declares no submission ids; use index")
    if encoding != "auto":
        return encoding
    if not submission:
        return "index"
    beyond = [v for v in np.flatnonzero(seen[num_classes:RAW_VALUES]) + num_classes if v != ignore_index]
    return "submission" if beyond else "index"


def class_table(counts: np.ndarray, encoding: str, submission: dict[int, int] | None) -> np.ndarray:
    """The n × (n + 1) table of :func:`compute_metrics` from raw-value counts."""
    n = counts.shape[0]
    column = np.full(RAW_VALUES + 1, n, dtype=np.int64)  # every value: none of the classes ...
    if encoding == "index":
        column[:n] = np.arange(n)
    else:
        for cls, value in (submission or {}).items():
            if 0 <= value < RAW_VALUES:
                column[value] = cls  # ... but these
    table = np.zeros((n, n + 1), dtype=np.int64)
    for value in np.flatnonzero(counts.any(axis=0)):
        table[:, column[value]] += counts[:, value]
    return table


def submission_ids(extras: dict[str, Any], num_classes: int) -> dict[int, int] | None:
    """class index → official id from the dataset's ``submission_ids`` extra (None without one);
    it must cover the classes 0..num_classes-1 exactly."""
    make = extras.get("submission_ids")
    if make is None:
        return None
    ids = {int(k): int(v) for k, v in make().items()}
    if sorted(ids) != list(range(num_classes)):
        raise SemsegError(f"the dataset's submission ids cover classes {sorted(ids)[:5]}..., "
                          f"the dataset has {num_classes} classes (0..{num_classes - 1})")
    return ids


def score_predictions(config: dict[str, Any], predictions: str | os.PathLike[str], split: str | None = None,
                      encoding: str = "auto", progress: bool = True) -> ScoreResult:
    """Metrics of the prediction PNGs in ``predictions`` against the labels of the config's
    dataset (``split``, default ``dataset.val_split``); see the module docstring for matching and
    encodings. Loads no model."""
    if encoding not in ENCODINGS:
        raise SemsegError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    dataset = build_dataset(config, split or config["dataset"]["val_split"])
    extras = dataset_extras(config)
    key = extras.get("sample_key") or default_key
    files, unused = match_predictions(dataset, Path(predictions), key)
    counts, seen = raw_counts(dataset, files, progress)
    ids = None
    if encoding == "submission":
        ids = submission_ids(extras, dataset.num_classes)
    elif encoding == "auto":
        try:
            ids = submission_ids(extras, dataset.num_classes)
        except SemsegError:  # e.g. reduce_zero_label: the official ids no longer fit the classes
            ids = None
    chosen = choose_encoding(encoding, seen, dataset.num_classes, dataset.ignore_index, ids)
    table = class_table(counts, chosen, ids)
    return ScoreResult(compute_metrics(table, dataset.class_names or None), chosen, unused)
