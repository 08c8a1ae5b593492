"""Per-image class pixel counts of a training split: counted once, cached by the data's identity.

Class balance (loss weights ``class_weights: auto``, ``train.sampler: rare_class``; see
:mod:`class_balance`) needs, for every training image, how many labelled pixels of each class it
holds: labels as training reads them (after the dataset's label mapping), ``ignore_index`` left
out. Counting reads every label once, so the result is kept in a cache file
``class_stats-<identity>.npz``, whose name is a hash of the data's identity: the dataset's class,
its config section (the val split left out), its size and label space, and, for datasets read
from files (``source_files``), every file's resolved path, size and modification time. Editing a
file or an option makes a new identity, never serves stale counts; a dataset that reads no files
(a procedural one) is identified by its options alone. Cache files are written atomically and
never deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from semsegpaddle.core.common.atomic import atomic_path
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.data.batches import iterate_batches
from semsegpaddle.core.data.datasets import (SkippedSample, checked_sample, loader_label_dtype, max_bad_samples,
                                             too_many_bad_samples)
from semsegpaddle.core.data.decoded_cache import DecodedCache

#: changes whenever what is counted or how it is stored changes, so older cache files are not read
STATS_FORMAT = 1
#: images counted per task handed to a loader worker
CHUNK = 16


@dataclass(frozen=True)
class ClassStats:
    """Labelled pixels of each class in each image of a split, and the identity of that data."""

    counts: np.ndarray  # int64, images × classes
    identity: str

    @property
    def pixels(self) -> np.ndarray:
        """Pixels of each class over the split."""
        return self.counts.sum(axis=0)

    @property
    def images(self) -> np.ndarray:
        """How many images contain each class (at least one pixel)."""
        return (self.counts > 0).sum(axis=0)

    def presence_digest(self) -> str:
        """SHA-256 of which image contains which class (what rare-class sampling draws from)."""
        presence = np.packbits(self.counts > 0, axis=None)
        return hashlib.sha256(f"{self.counts.shape}".encode() + presence.tobytes()).hexdigest()


def data_identity(dataset: SegDataset, dataset_options: dict[str, Any]) -> str:
    """The hash naming the cached counts of ``dataset`` built from its config section ``dataset_options``."""
    options = {k: v for k, v in dataset_options.items() if k != "val_split"}
    parts = [f"{STATS_FORMAT}|{type(dataset).__module__}.{type(dataset).__qualname__}",
             json.dumps(options, sort_keys=True, default=str),
             f"{len(dataset)}|{dataset.num_classes}|{dataset.ignore_index}"]
    source_files = getattr(dataset, "source_files", None)
    if callable(source_files):
        for index in range(len(dataset)):
            for path in source_files(index):
                try:
                    info = os.stat(path)
                    parts.append(f"{Path(path).resolve()}|{info.st_size}|{info.st_mtime_ns}")
                except OSError:
                    parts.append(f"{path}|missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def stats_file(folder: str | os.PathLike[str], identity: str) -> Path:
    """The cache file of the counts of the data ``identity`` in ``folder``."""
    return Path(folder) / f"class_stats-{identity}.npz"


def load_cached(folder: str | os.PathLike[str], dataset: SegDataset, identity: str) -> ClassStats | None:
    """The counts cached in ``folder`` for ``identity``, or None (absent, unreadable or not fitting)."""
    path = stats_file(folder, identity)
    try:
        with np.load(path, allow_pickle=False) as stored:
            counts = np.asarray(stored["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if counts.shape != (len(dataset), dataset.num_classes) or (counts < 0).any():
        return None
    return ClassStats(counts, identity)


def save(stats: ClassStats, folder: str | os.PathLike[str]) -> Path:
    """Write ``stats`` to its cache file in ``folder`` (atomically); return the file."""
    path = stats_file(folder, stats.identity)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, counts=stats.counts)
    except OSError as exc:
        raise DataError(f"cannot write the class statistics {path} ({exc.strerror or exc})") from None
    return path


def count_classes(dataset: SegDataset, *, num_workers: int = 0, skip_bad: bool = False,
                  decoded_cache: tuple[str, dict[str, Any]] | None = None, progress: bool = False) -> np.ndarray:
    """Labelled pixels of each class in each image of ``dataset`` (int64, images × classes).

    Labels are read as training reads them (checked; through the decoded-sample cache when
    ``decoded_cache`` = (folder, dataset options) is given, which fills it), in ``num_workers``
    worker processes. A sample that fails to load raises a DataError naming it; with
    ``skip_bad`` it counts as holding no pixel (rare-class sampling never draws it), up to the
    share of bad samples training tolerates.
    """
    counter = _Counter(dataset, skip_bad, decoded_cache)
    chunks = [list(range(start, min(start + CHUNK, len(dataset)))) for start in range(0, len(dataset), CHUNK)]
    counts = np.zeros((len(dataset), dataset.num_classes), dtype=np.int64)
    failed: list[SkippedSample] = []
    with tqdm(total=len(dataset), desc="class stats", unit="img", disable=not progress, leave=False) as bar:
        for chunk, (rows, failures) in zip(chunks, iterate_batches(counter, _single(chunks), num_workers)):
            counts[chunk[0]:chunk[-1] + 1] = rows[0]
            failed.extend(f for f in failures[0] if f is not None)
            if len(failed) > max_bad_samples(len(dataset)):
                raise too_many_bad_samples(len(dataset), failed)
            bar.update(len(chunk))
    return counts


def _single(chunks: list[list[int]]) -> Iterator[list[list[int]]]:
    """Each chunk as a batch of one key (a worker counts a whole chunk per task)."""
    return ([chunk] for chunk in chunks)


class _Counter:
    """Counts the classes of a chunk of samples (called in the loader's processes)."""

    def __init__(self, dataset: SegDataset, skip_bad: bool, decoded_cache: tuple[str, dict[str, Any]] | None) -> None:
        self.dataset, self.skip_bad = dataset, skip_bad
        self.cache = None if decoded_cache is None else DecodedCache(dataset, decoded_cache[0], decoded_cache[1],
                                                                     loader_label_dtype(dataset))

    def __call__(self, chunk: list[int]) -> tuple[np.ndarray, list[SkippedSample | None]]:
        rows = np.zeros((len(chunk), self.dataset.num_classes), dtype=np.int64)
        failures: list[SkippedSample | None] = []
        for row, index in enumerate(chunk):
            try:
                label = self._label(index)
            except DataError as error:
                if not self.skip_bad:
                    raise
                failures.append(SkippedSample(index, self.dataset.describe(index), str(error)))
                continue
            labelled = label[label != self.dataset.ignore_index]
            rows[row] = np.bincount(labelled.ravel(), minlength=self.dataset.num_classes)[:self.dataset.num_classes]
        return rows, failures

    def _label(self, index: int) -> np.ndarray:
        try:
            if self.cache is None:
                return checked_sample(self.dataset, index)[1]
            return self.cache.load(index, lambda i: checked_sample(self.dataset, i))[1]
        except DataError:
            raise
        except Exception as exc:  # a dataset plugin's own error: name the sample
            raise DataError(f"{self.dataset.describe(index)}: cannot load ({type(exc).__name__}: {exc})") from None


def class_stats(dataset: SegDataset, dataset_options: dict[str, Any], cache_folder: str | os.PathLike[str], *,
                num_workers: int = 0, skip_bad: bool = False, decoded_cache: str | None = None,
                progress: bool = False) -> tuple[ClassStats, bool]:
    """The class counts of ``dataset`` and whether they came from ``cache_folder`` (True) or were
    counted now (False; the caller saves them with :func:`save`, e.g. once the run is known to start).

    ``decoded_cache`` is ``train.cache_dir`` (labels are then read through it).
    """
    identity = data_identity(dataset, dataset_options)
    cached = load_cached(cache_folder, dataset, identity)
    if cached is not None:
        return cached, True
    decoded = None if decoded_cache is None else (decoded_cache, dataset_options)
    counts = count_classes(dataset, num_workers=num_workers, skip_bad=skip_bad, decoded_cache=decoded,
                           progress=progress)
    return ClassStats(counts, identity), False
