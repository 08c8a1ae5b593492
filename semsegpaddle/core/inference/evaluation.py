"""Whole-image inference and evaluation over a dataset (one confusion matrix, then metrics)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import paddle
from tqdm import tqdm

from semsegpaddle.core.data.datasets import checked_sample
from semsegpaddle.core.model.interfaces import SegDataset
from semsegpaddle.core.inference.metrics import ConfusionMatrix, Metrics, compute_metrics
from semsegpaddle.core.engine.runtime import DistEnv
from semsegpaddle.core.data.transforms import to_model_input


@paddle.no_grad()
def predict_batch(model: paddle.nn.Layer, images: list[np.ndarray]) -> np.ndarray:
    """Class map (N×H×W int64) for uint8 H×W×3 images of one size."""
    batch = paddle.to_tensor(np.stack([to_model_input(im) for im in images]))
    return model(batch).argmax(axis=1).numpy()


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


def evaluate(model: paddle.nn.Layer, dataset: SegDataset, batch_size: int = 1, progress: bool = True,
             dist: DistEnv = DistEnv()) -> Metrics:
    """mIoU etc. of ``model`` on ``dataset``; with several processes each takes a share, and the
    confusion matrices are summed across processes."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    with tqdm(total=len(indices), desc="eval", unit="img", disable=not (progress and dist.is_main),
              leave=False, dynamic_ncols=True) as bar:
        for batch in _same_size_batches(dataset, indices, batch_size):
            predictions = predict_batch(model, [image for image, _ in batch])
            for prediction, (_, label) in zip(predictions, batch):
                matrix.update(prediction, label)
            bar.update(len(batch))
    if dist.world_size > 1:
        import paddle.distributed as pdist

        total = paddle.to_tensor(matrix.matrix)
        pdist.all_reduce(total)
        matrix.matrix = total.numpy()
    if was_training:
        model.train()
    return compute_metrics(matrix.matrix, dataset.class_names or None)
