"""Sample checks and training augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from semsegpaddle.core.data.datasets import checked_sample
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.data.transforms import TrainTransform


class OneSample(SegDataset):
    num_classes, ignore_index = 3, 255

    def __init__(self, image, label):
        self.image, self.label = image, label

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.image, self.label

    def describe(self, index):
        return f"/data/img_{index}.png"


def test_label_values_outside_the_classes_name_the_sample():
    """The classic 0/255 binary mask with num_classes=2 mistaken for 0/1: caught, with the file."""
    label = np.zeros((4, 4), np.int64)
    label[0, 0] = 7
    with pytest.raises(DataError, match=r"/data/img_0.png: label values \[7\] are neither classes 0..2"):
        checked_sample(OneSample(np.zeros((4, 4, 3), np.uint8), label), 0)


@pytest.mark.parametrize("image, label, message", [
    (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.int64), "image must be uint8"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int64), "image must be uint8 H×W×3"),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int64), "label must be H×W matching"),
])
def test_malformed_samples_are_named(image, label, message):
    with pytest.raises(DataError, match=message):
        checked_sample(OneSample(image, label), 0)


def test_train_transform_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 3, (8, 12)), np.ones((5, 5))).astype(np.int64)  # 40×60, 5-px blocks
    image = np.repeat((label * 80).astype(np.uint8)[..., None], 3, axis=2)
    transform = TrainTransform([16, 16], [0.5, 2.0], True, [0.0, 0.0, 0.0], ignore_index=255)
    for seed in range(20):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == (16, 16, 3) and out_label.shape == (16, 16)
        # away from block edges (a uniform 3×3 label neighbourhood) the bilinear image must show
        # exactly the label's class colour; a misaligned label would break this at block edges
        padded = np.pad(out_label, 1, constant_values=-1)  # crop borders: neighbours unknown
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
        interior = (windows == out_label[..., None, None]).all(axis=(-1, -2)) & (out_label != 255)
        assert interior.sum() > 50
        assert (out_image[..., 0][interior] == out_label[interior] * 80).all()
        assert set(np.unique(out_label)) <= {0, 1, 2, 255}


def test_padding_is_ignored_in_the_label():
    label = np.ones((8, 8), np.int64)
    image = np.full((8, 8, 3), 200, np.uint8)
    transform = TrainTransform([12, 12], [1.0, 1.0], False, [0.0, 0.0, 0.0], ignore_index=255)
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    assert (out_label == 255).sum() == 12 * 12 - 64
    assert (out_image[out_label == 255] == 0).all()
