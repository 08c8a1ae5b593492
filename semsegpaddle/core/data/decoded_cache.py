"""Decoded training samples kept on disk (``train.cache_dir``): decode each file once.

Decoding a Cityscapes-size PNG costs ~35 ms (image and label), most of a training sample's
time on the CPU, and the same files are decoded again every epoch. With a cache folder, the
first time a sample is drawn its checked image (H×W×N, uint8 or float32, as decoded) and label
(in the loader's label type) are written there as ``.npy`` files; afterwards they are
memory-mapped, so the augmentation reads only the rows and columns of its crop window from the
page cache or disk.
Batches are identical with and without the cache (decoding is deterministic).

An entry's name is a hash of the dataset's config section, the sample's files (resolved path,
size, modification time) and the label type: editing a file or a dataset option (``label_map``,
...) makes new entries, never serves stale pixels. Entries are written to a temporary file
and renamed, so processes (loader workers, data-parallel ranks) can fill one folder together,
and a run killed while writing leaves nothing half-written behind; an entry is read only if its
size is exactly what its ``.npy`` header announces. Old entries are never deleted: remove the
folder to reclaim the space (about 8 MB per Cityscapes sample).

On a full disk (or past the file-size limit) the cache stops writing, warns once for the whole
run (loader workers included) and the samples not cached yet are decoded from their files.
"""
from __future__ import annotations

import hashlib
import io
import json
import mmap
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.common.atomic import atomic_path
from semsegpaddle.core.common.disk import is_disk_full
from semsegpaddle.core.common.errors import DataError

#: changes whenever the stored layout changes, so older entries are not read
CACHE_FORMAT = 1

Sample = tuple[np.ndarray, np.ndarray]


def require_cacheable(dataset: SegDataset, name: str) -> None:
    """A one-line DataError unless ``dataset`` (config name ``name``) says which files each sample
    is read from (``source_files``): without them no entry could tell when it is stale."""
    if not callable(getattr(dataset, "source_files", None)):
        raise DataError(f"train.cache_dir: dataset '{name}' does not read its samples from files, so there is "
                        f"nothing to cache; remove train.cache_dir")


class DecodedCache:
    """Reads samples of a file dataset through a folder of decoded ``.npy`` entries.

    ``load`` is given the uncached reader (which decodes and checks a sample) and calls it only
    for samples not cached yet.
    """

    def __init__(self, dataset: SegDataset, folder: str | os.PathLike[str], dataset_options: dict[str, Any],
                 label_dtype: type[np.integer]) -> None:
        require_cacheable(dataset, str(dataset_options.get("name", type(dataset).__name__)))
        self.dataset = dataset
        self.folder = Path(folder)
        self.label_dtype = np.dtype(label_dtype)
        options = json.dumps(dataset_options, sort_keys=True, default=str)
        self._salt = f"{CACHE_FORMAT}|{type(dataset).__module__}.{type(dataset).__qualname__}|{options}|{self.label_dtype}"
        bands = getattr(dataset, "in_channels", 3)
        if bands != 3:  # the same files read for another band count are other samples
            self._salt += f"|bands={bands}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"train.cache_dir: cannot create folder {self.folder} ({exc.strerror or exc})") from None
        # one byte shared with the loader workers forked later: set once the disk is full; the lock
        # makes testing and setting it one step, so exactly one process warns
        self._full = mmap.mmap(-1, 1)
        self._full_lock = multiprocessing.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # an anonymous mapping and a lock do not pickle: a spawned process keeps its own flag
        state["_full"] = state["_full_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._full = mmap.mmap(-1, 1)
        self._full_lock = multiprocessing.Lock()

    @property
    def full(self) -> bool:
        """True once a write failed for want of space: the cache is then only read."""
        return self._full[0] == 1

    def entry(self, index: int) -> str | None:
        """The entry name of sample ``index``, or None when one of its files cannot be stat'ed
        (the uncached reader then reports it)."""
        parts = [self._salt]
        for path in self.dataset.source_files(index):
            try:
                info = os.stat(path)
            except OSError:
                return None
            parts.append(f"{Path(path).resolve()}|{info.st_size}|{info.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

    def load(self, index: int, read: Callable[[int], Sample]) -> Sample:
        """Sample ``index`` from its entry (memory-mapped, read-only), or through ``read`` and then stored."""
        name = self.entry(index)
        if name is None:
            return read(index)
        image_file, label_file = self.folder / f"{name}.image.npy", self.folder / f"{name}.label.npy"
        try:
            return _load_whole(image_file), _load_whole(label_file)
        except (OSError, ValueError, EOFError):  # not cached yet (or an entry damaged on disk: rewritten)
            pass
        image, label = read(index)
        label = np.ascontiguousarray(label, dtype=self.label_dtype)
        if self._store(label_file, label):
            self._store(image_file, np.ascontiguousarray(image))  # last: its presence marks a whole entry
        return image, label

    def _store(self, destination: Path, array: np.ndarray) -> bool:
        """Write one entry file; False (nothing written) once the disk is full."""
        if self.full:
            return False
        try:
            data = _npy_bytes(array)
            with atomic_path(destination, size=len(data)) as tmp:
                tmp.write_bytes(data)
            return True
        except OSError as exc:
            if not is_disk_full(exc):
                raise DataError(f"train.cache_dir: cannot write {destination} ({exc.strerror or exc})") from None
            with self._full_lock:
                first = not self.full
                self._full[0] = 1
            if first:
                warnings.warn(f"train.cache_dir: {exc}; decoding the samples not cached yet from their files "
                              f"for the rest of the run", stacklevel=2)
            return False


def _load_whole(path: Path) -> np.ndarray:
    """A memory-mapped ``.npy`` entry, refused (ValueError) unless the file holds exactly the bytes
    its header announces."""
    array = np.load(path, mmap_mode="r")
    if array.offset + array.nbytes != os.path.getsize(path):
        raise ValueError(f"{path}: size does not match its header")
    return array


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as a ``.npy`` file's bytes. Written by Python's own file object: numpy's
    ``np.save`` to a file goes through C stdio, which loses a write error at the limit and leaves
    a short file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
