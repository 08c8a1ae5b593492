"""Evaluation over a dataset with any inference mode and backend (one confusion matrix, then metrics)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import paddle
from tqdm import tqdm

from semsegpaddle.core.data.datasets import checked_sample
from semsegpaddle.core.common.runtime import DistEnv
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.backends import DynamicBackend
from semsegpaddle.core.inference.metrics import ConfusionMatrix, Metrics, compute_metrics
from semsegpaddle.core.inference.segmenter import InferenceMode, Segmenter
from semsegpaddle.core.data.base import SegDataset


def as_segmenter(model: Any, mode: InferenceMode | None = None) -> Segmenter:
    """A :class:`Segmenter` from a paddle model, a backend, or a segmenter (``mode`` replaces its mode)."""
    if isinstance(model, Segmenter):
        return model if mode is None else Segmenter(model.backend, mode)
    backend = DynamicBackend(model) if isinstance(model, paddle.nn.Layer) else model
    return Segmenter(backend, mode)


def predict_batch(model: Any, images: list[np.ndarray], mode: InferenceMode | None = None) -> np.ndarray:
    """Class maps (N×H×W int64) of uint8 H×W×3 images of one size, by a paddle model (in its
    current train/eval state), a backend or a segmenter, in ``mode`` (default: whole image)."""
    return as_segmenter(model, mode).masks(images)


def _same_size_batches(dataset: SegDataset, indices: list[int], batch_size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for index in indices:
        image, label = checked_sample(dataset, index)
        if batch and (len(batch) == batch_size or batch[0][0].shape != image.shape):
            yield batch
            batch = []
        batch.append((image, label))
    if batch:
        yield batch


def evaluate(model: Any, dataset: SegDataset, batch_size: int = 1, progress: bool = True,
             dist: DistEnv = DistEnv(), mode: InferenceMode | None = None) -> Metrics:
    """mIoU etc. on ``dataset`` of a paddle model (evaluated in eval mode, its mode restored
    after), a backend or a segmenter, in ``mode`` (default: whole image; batches of
    ``batch_size`` same-size images when a single pass, else one image at a time). With several
    processes each takes a share, and the confusion matrices are summed across processes."""
    layer = model if isinstance(model, paddle.nn.Layer) else None
    was_training = layer is not None and layer.training
    if layer is not None:
        layer.eval()
    segmenter = as_segmenter(model, mode)
    predicted = getattr(segmenter.backend, "num_classes", None)
    if predicted is not None and predicted != dataset.num_classes:
        raise SemsegError(f"the model predicts {predicted} classes, the dataset has {dataset.num_classes}")
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    if not segmenter.mode.single_pass:
        batch_size = 1
    try:
        with tqdm(total=len(indices), desc="eval", unit="img", disable=not (progress and dist.is_main),
                  leave=False, dynamic_ncols=True) as bar:
            for batch in _same_size_batches(dataset, indices, batch_size):
                predictions = segmenter.masks([image for image, _ in batch])
                for prediction, (_, label) in zip(predictions, batch):
                    matrix.update(prediction, label)
                bar.update(len(batch))
    finally:
        if was_training:
            layer.train()
    table = matrix.table()
    if dist.world_size > 1:
        import paddle.distributed as pdist

        total = paddle.to_tensor(table)
        pdist.all_reduce(total)
        table = total.numpy()
    return compute_metrics(table, dataset.class_names or None)
