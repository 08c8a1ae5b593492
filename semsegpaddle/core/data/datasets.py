"""Datasets from config, checked samples, and a deterministic, resumable training batch order."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import paddle

from semsegpaddle.core.config.loader import build_component
from semsegpaddle.core.errors import DataError
from semsegpaddle.core.model.interfaces import SegDataset
from semsegpaddle.core.data.loader import iterate_batches
from semsegpaddle.core.config.schema import SCHEMA
from semsegpaddle.core.data.transforms import TrainTransform, to_model_input


def create_dataset(config: dict[str, Any], split: str) -> SegDataset:
    """Build the config's dataset for ``split``."""
    dataset = build_component(config, "dataset", "dataset", split, extra=SCHEMA["dataset"].extra)
    if len(dataset) == 0:
        raise DataError(f"dataset '{config['dataset']['name']}' split '{split}' is empty")
    return dataset


def checked_sample(dataset: SegDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``dataset[index]`` with its contract checked; a bad sample raises DataError naming it."""
    image, label = dataset[index]
    where = dataset.describe(index)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{where}: image must be uint8 H×W×3, got {image.dtype} {image.shape}")
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


class TrainSamples:
    """Augmented training samples; augmentation randomness depends only on (seed, step, slot)."""

    def __init__(self, dataset: SegDataset, transform: TrainTransform, seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        index, draw = key
        try:
            image, label = checked_sample(self.dataset, index)
            rng = np.random.default_rng([self.seed, draw])
            image, label = self.transform(image, label, rng)
        except DataError:
            raise
        except Exception as exc:  # a dataset plugin's own error: name the sample
            raise DataError(f"{self.dataset.describe(index)}: cannot load ({type(exc).__name__}: {exc})") from None
        return to_model_input(image), np.ascontiguousarray(label, dtype=np.int64)


class StepBatches:
    """Batches of (index, draw) for steps ``start``..``total``-1, each a pure function of the step.

    Epoch ``e`` visits the dataset in the permutation seeded by (seed, e); step ``s`` takes the
    next ``batch_size × world_size`` indices of that stream and this rank keeps its slice. So
    resuming at step ``s`` replays exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, total: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.total, self.rank, self.world_size = start, total, rank, world_size

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """The (index, draw) pairs of this rank at ``step``."""
        per_step = self.batch_size * self.world_size
        first = step * per_step + self.rank * self.batch_size
        orders: dict[int, np.ndarray] = {}  # a batch spans at most a few epochs: one permutation each
        out = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.num_samples)
            if epoch not in orders:
                orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            out.append((int(orders[epoch][offset]), position))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return self.total - self.start


def train_loader(dataset: SegDataset, config: dict[str, Any], start: int, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[paddle.Tensor, paddle.Tensor]]:
    """(images, labels) tensors, one augmented batch per step from ``start`` to ``train.iters``.

    A sample that fails to load stops the loop with a DataError naming it, with any number of
    ``train.num_workers``.
    """
    train = config["train"]
    transform = TrainTransform(train["crop_size"], train["scale_range"], train["flip"],
                               config["model"]["mean"], dataset.ignore_index)
    seed = config["runtime"]["seed"]
    sampler = StepBatches(len(dataset), train["batch_size"], seed, start, train["iters"], rank, world_size)
    batches = iterate_batches(TrainSamples(dataset, transform, seed).__getitem__, sampler, train["num_workers"])
    for images, labels in batches:
        yield paddle.to_tensor(images), paddle.to_tensor(labels)
