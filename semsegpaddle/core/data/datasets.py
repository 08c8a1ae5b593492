"""Datasets from config, checked samples, and a deterministic, resumable training batch order."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import paddle

from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.data.batches import iterate_batches
from semsegpaddle.core.data.class_balance import RareClassSampler
from semsegpaddle.core.config.schema import SCHEMA
from semsegpaddle.core.data.decoded_cache import DecodedCache
from semsegpaddle.core.data.transforms import Photometric, TrainTransform, to_planes


def create_dataset(config: dict[str, Any], split: str) -> SegDataset:
    """Build the config's dataset for ``split``."""
    dataset = build_component(config, "dataset", "dataset", split, extra=SCHEMA["dataset"].extra)
    bands = config.get("model", {}).get("in_channels", 3)
    if bands != 3:
        from semsegpaddle.core.data.file_dataset import FileDataset

        if not isinstance(dataset, FileDataset):
            raise DataError(f"model.in_channels is {bands}: dataset '{config['dataset']['name']}' gives RGB "
                            f"images only (read N-band TIFFs with a file dataset such as folder)")
        dataset.in_channels = bands
        dataset.check_input_bands()  # every image's band count, from the file headers, before any step
    if len(dataset) == 0:
        raise DataError(f"dataset '{config['dataset']['name']}' split '{split}' is empty")
    return dataset


def checked_sample(dataset: SegDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``dataset[index]`` with its contract checked; a bad sample raises DataError naming it."""
    image, label = dataset[index]
    where = dataset.describe(index)
    bands = getattr(dataset, "in_channels", 3)
    if bands == 3 and (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3):
        raise DataError(f"{where}: image must be uint8 H×W×3, got {image.dtype} {image.shape}")
    if bands != 3 and (image.dtype not in (np.uint8, np.float32) or image.ndim != 3 or image.shape[2] != bands):
        raise DataError(f"{where}: image must be uint8 or float32 H×W×{bands} (model.in_channels), "
                        f"got {image.dtype} {image.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise DataError(f"{where}: label must be an integer array (class ids), got {label.dtype}")
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise DataError(f"{where}: label must be H×W matching the image {image.shape[:2]}, got {label.shape}")
    valid = (label < dataset.num_classes) | (label == dataset.ignore_index)
    if (label < 0).any() or not valid.all():
        bad = np.unique(label[~valid | (label < 0)])[:5].tolist()
        raise DataError(f"{where}: label values {bad} are neither classes 0..{dataset.num_classes - 1} "
                        f"nor ignore_index {dataset.ignore_index}")
    return image, label


#: ``train.skip_bad_samples`` tolerates up to this share of the dataset's samples (at least one)
#: failing to load; one more stops training: such data is broken, not noisy
MAX_BAD_FRACTION = 0.05


def max_bad_samples(num_samples: int) -> int:
    """How many distinct bad samples ``train.skip_bad_samples`` tolerates in a dataset of this size."""
    return max(1, int(MAX_BAD_FRACTION * num_samples))


def loader_label_dtype(dataset: SegDataset) -> type[np.integer]:
    """The compact label type batches travel in: uint8 when the classes and ignore_index fit, else int32."""
    fits = 0 <= dataset.ignore_index <= 255 and dataset.num_classes <= 256
    return np.uint8 if fits else np.int32


def epoch_order(seed: int, epoch: int, num_samples: int) -> np.ndarray:
    """The permutation in which epoch ``epoch`` visits the dataset."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


@dataclass(frozen=True)
class SkippedSample:
    """A drawn sample that failed to load and was replaced: its description and the error."""

    index: int
    where: str
    reason: str


class TrainSamples:
    """Augmented training samples; augmentation randomness depends only on (seed, step, slot).

    A key is (index, position): ``position`` counts the samples drawn since the first step (the
    slot), so the augmentation of a slot is the same in any process. With ``skip_bad`` a sample
    that fails to load is replaced by the next sample of the epoch's order that loads, augmented
    with the slot's own randomness: the same replacement whenever that step runs.
    """

    def __init__(self, dataset: SegDataset, transform: TrainTransform, seed: int, skip_bad: bool = False,
                 cache: tuple[str, dict[str, Any]] | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.skip_bad = skip_bad
        self.label_dtype = loader_label_dtype(dataset)
        #: (folder, the dataset's options): decoded samples are kept there (:mod:`decoded_cache`)
        self.cache = None if cache is None else DecodedCache(dataset, cache[0], cache[1], self.label_dtype)

    def decoded(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` checked and decoded (from the cache folder when one is set)."""
        if self.cache is None:
            return checked_sample(self.dataset, index)
        return self.cache.load(index, lambda i: checked_sample(self.dataset, i))

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int, draw: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` augmented with the randomness of slot ``draw``: uint8 3×H×W image and
        label (uint8 when the classes and ignore_index fit, else int32); failures raise DataError naming it.

        Batches travel from worker processes in these compact types (a quarter of float32 and
        int64); :func:`model_batch` converts them.
        """
        try:
            image, label = self.decoded(index)
            label = label.astype(self.label_dtype, copy=False)  # checked: every value fits
            image, label = self.transform(image, label, np.random.default_rng([self.seed, draw]))
        except DataError:
            raise
        except Exception as exc:  # a dataset plugin's own error: name the sample
            raise DataError(f"{self.dataset.describe(index)}: cannot load ({type(exc).__name__}: {exc})") from None
        return to_planes(image), np.ascontiguousarray(label, dtype=self.label_dtype)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[SkippedSample, ...]]:
        """(image, label, the samples that failed in this slot: the drawn one first, then any
        candidates that failed while looking for its replacement)."""
        index, draw = key
        try:
            return (*self.load(index, draw), ())
        except DataError as error:
            if not self.skip_bad:
                raise
            failed = [SkippedSample(index, self.dataset.describe(index), str(error))]
        n = len(self.dataset)
        epoch, offset = divmod(draw, n)
        order = epoch_order(self.seed, epoch, n)
        for step in range(1, min(n, max_bad_samples(n) + 1)):
            candidate = int(order[(offset + step) % n])
            try:
                return (*self.load(candidate, draw), tuple(failed))
            except DataError as error:
                failed.append(SkippedSample(candidate, self.dataset.describe(candidate), str(error)))
        raise too_many_bad_samples(n, failed)


def too_many_bad_samples(num_samples: int, failed: list[SkippedSample]) -> DataError:
    """The error that stops training when skipping bad samples would hide broken data
    (``failed``: distinct failures in the order met)."""
    if len(failed) >= num_samples:
        return DataError(f"every training sample failed to load ({num_samples} of {num_samples}), "
                         f"e.g. {failed[-1].reason}")
    return DataError(f"{len(failed)} of the {num_samples} training samples failed to load, more than the "
                     f"{max_bad_samples(num_samples)} train.skip_bad_samples tolerates ({100 * MAX_BAD_FRACTION:g} % "
                     f"of the dataset); the last: {failed[-1].reason}")


class Batch(tuple):
    """One step's ``(images, labels)``; ``skipped`` lists the drawn samples that failed to load
    and were replaced in this batch (empty unless ``train.skip_bad_samples``)."""

    skipped: tuple[SkippedSample, ...] = ()


class StepBatches:
    """Batches of (index, draw) for steps ``start``..``total``-1, each a pure function of the step.

    Step ``s`` takes the draws (positions) ``s × batch_size × world_size`` onwards, and this rank
    keeps its slice of them: ranks hold disjoint shares of every step's draws. With the uniform
    order, epoch ``e`` visits the dataset in the permutation seeded by (seed, e) and position ``p``
    is entry ``p mod N`` of epoch ``p div N``; with a ``sampler`` (rare-class sampling), position
    ``p`` is drawn by ``sampler.draw(p)``. So resuming at step ``s`` replays exactly the batches an
    uninterrupted run would have seen.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, total: int,
                 rank: int = 0, world_size: int = 1, sampler: RareClassSampler | None = None) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.total, self.rank, self.world_size = start, total, rank, world_size
        self.sampler = sampler

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """The (index, draw) pairs of this rank at ``step``."""
        per_step = self.batch_size * self.world_size
        first = step * per_step + self.rank * self.batch_size
        positions = range(first, first + self.batch_size)
        if self.sampler is not None:
            return [(self.sampler.draw(position), position) for position in positions]
        orders: dict[int, np.ndarray] = {}  # a batch spans at most a few epochs: one permutation each
        out = []
        for position in positions:
            epoch, offset = divmod(position, self.num_samples)
            if epoch not in orders:
                orders[epoch] = epoch_order(self.seed, epoch, self.num_samples)
            out.append((int(orders[epoch][offset]), position))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return self.total - self.start


def image_sampler(dataset: SegDataset, config: dict[str, Any], class_counts: np.ndarray | None
                  ) -> RareClassSampler | None:
    """The sampler ``train.sampler`` asks for: None for ``uniform`` (epoch permutations), a
    :class:`RareClassSampler` over ``class_counts`` (images × classes pixel counts) for ``rare_class``."""
    train = config["train"]
    if train.get("sampler", "uniform") == "uniform":
        return None
    if class_counts is None:
        raise DataError("train.sampler: rare_class needs the training split's per-image class counts "
                        "(class_counts); semseg train counts them")
    if class_counts.shape != (len(dataset), dataset.num_classes):
        raise DataError(f"train.sampler: class counts of shape {tuple(class_counts.shape)} do not fit a dataset of "
                        f"{len(dataset)} samples and {dataset.num_classes} classes")
    temperature = train.get("sampler_temperature", SCHEMA["train"]["sampler_temperature"].default)
    return RareClassSampler(class_counts, temperature, config["runtime"]["seed"])


class DataWarning(UserWarning):
    """A training sample was skipped (``train.skip_bad_samples``)."""


def model_batch(images: np.ndarray, labels: np.ndarray) -> tuple[paddle.Tensor, paddle.Tensor]:
    """N×3×H×W uint8 images and N×H×W labels → float32 (0–255) and int64 tensors.

    Cast by Paddle after the copy: ``paddle.to_tensor`` of the float32 array costs several times more.
    """
    return paddle.to_tensor(images).astype("float32"), paddle.to_tensor(labels).astype("int64")


def train_transform(config: dict[str, Any], ignore_index: int) -> TrainTransform:
    """The augmentation ``train`` describes (crop, scale range, flip, photometric distortion)."""
    train = config["train"]
    return TrainTransform(train["crop_size"], train["scale_range"], train["flip"], config["model"]["mean"],
                          ignore_index, Photometric.from_config(train.get("photometric")))


def train_loader(dataset: SegDataset, config: dict[str, Any], start: int, rank: int = 0,
                 world_size: int = 1, class_counts: np.ndarray | None = None) -> Iterator[Batch]:
    """(images, labels) tensors as :class:`Batch`, one augmented batch per step from ``start`` to
    ``train.iters``, identical with any ``train.num_workers``.

    ``train.sampler: rare_class`` draws the images with :class:`RareClassSampler` over
    ``class_counts`` (the per-image class pixel counts of ``dataset``, see ``class_stats``).

    A sample that fails to load stops the loop with a DataError naming it. With
    ``train.skip_bad_samples`` it is replaced instead (see :class:`TrainSamples`), each bad sample
    is named once in a warning, and the loop stops with a DataError once more than
    :func:`max_bad_samples` distinct samples have failed.
    """
    train = config["train"]
    seed = config["runtime"]["seed"]
    skip_bad = bool(train.get("skip_bad_samples", False))
    cache = None if train.get("cache_dir") is None else (train["cache_dir"], config.get("dataset", {}))
    samples = TrainSamples(dataset, train_transform(config, dataset.ignore_index), seed, skip_bad, cache)
    sampler = StepBatches(len(dataset), train["batch_size"], seed, start, train["iters"], rank, world_size,
                          image_sampler(dataset, config, class_counts))
    bad: dict[int, SkippedSample] = {}
    for images, labels, failures in iterate_batches(samples.__getitem__, sampler, train["num_workers"]):
        batch = Batch(model_batch(images, labels))
        batch.skipped = tuple(failed[0] for failed in failures if failed)
        for failure in (f for failed in failures for f in failed if f.index not in bad):
            bad[failure.index] = failure
            if len(bad) > max_bad_samples(len(dataset)):
                raise too_many_bad_samples(len(dataset), list(bad.values()))
            warnings.warn(f"skipping bad training sample (train.skip_bad_samples), replaced whenever drawn: "
                          f"{failure.reason}", DataWarning, stacklevel=2)
        yield batch


class SkipCounter:
    """The ``skipped`` record of the train log: replaced draws so far and the last sample replaced.

    Restored from a checkpoint's ``skipped`` entry on resume. In data parallel, every process
    adds the replacements of all processes (a small all-reduce per step), so the count is the
    run's; the last sample named is one this process saw.
    """

    def __init__(self, enabled: bool, saved: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.count = int((saved or {}).get("count", 0))
        self.last: str | None = (saved or {}).get("last")

    def add(self, batch: Any, world_size: int = 1) -> None:
        """Count the replacements of one step's batch (every process must call this at every step)."""
        if not self.enabled:
            return
        skipped = getattr(batch, "skipped", ())
        if skipped:
            self.last = skipped[-1].where
        if world_size > 1:
            import paddle.distributed as pdist

            total = paddle.to_tensor([len(skipped)], dtype="int64")
            pdist.all_reduce(total)
            self.count += int(total.item())
        else:
            self.count += len(skipped)

    def record(self) -> dict[str, Any]:
        """``{"skipped": {"count", "last"}}`` for a log line or checkpoint, or {} when not enabled."""
        return {"skipped": {"count": self.count, "last": self.last}} if self.enabled else {}
