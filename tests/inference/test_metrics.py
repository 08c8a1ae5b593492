"""Metrics from one confusion matrix, checked against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from semsegpaddle.core.inference.metrics import ConfusionMatrix, compute_metrics


def test_confusion_matrix_skips_ignored_pixels():
    cm = ConfusionMatrix(3, ignore_index=255)
    label = np.array([[0, 0, 1], [2, 255, 1]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    cm.update(pred, label)
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert (cm.matrix == expected).all()


def test_metrics_values():
    matrix = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    m = compute_metrics(matrix, ["a", "b", "c"])
    # IoU a: 1/(2+2-1)=1/3, b: 1/3, c: 1/1
    assert m.per_class_iou == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert m.miou == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert m.pixel_accuracy == pytest.approx(3 / 5)
    assert m.mean_accuracy == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m.fw_iou == pytest.approx(0.4 / 3 + 0.4 / 3 + 0.2)


def test_absent_class_is_nan_and_not_averaged():
    matrix = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    m = compute_metrics(matrix)
    assert math.isnan(m.per_class_iou[2])
    assert m.miou == pytest.approx(1.0)
    assert m.to_json()["per_class"]["2"]["IoU"] is None
    assert "     -" in m.table()


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((3, 2)))


def test_evaluation_batches_only_images_of_one_size():
    from semsegpaddle.core.inference.evaluation import _same_size_batches
    from semsegpaddle.core.data.base import SegDataset

    class Mixed(SegDataset):
        num_classes, ignore_index = 2, 255

        def __init__(self):
            self.sizes = [(8, 8), (8, 8), (6, 10), (8, 8), (8, 8), (8, 8)]

        def __len__(self):
            return len(self.sizes)

        def __getitem__(self, index):
            h, w = self.sizes[index]
            return np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.int64)

    batches = list(_same_size_batches(Mixed(), list(range(6)), batch_size=2))
    assert [len(b) for b in batches] == [2, 1, 2, 1]
    assert all(len({image.shape for image, _ in batch}) == 1 for batch in batches)
