"""The example's models and dataset: imported by the factories in ``plugin`` when a component is built,
so that loading the plugin (for `semseg list`, `--help`, ...) imports no paddle."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from semsegpaddle.core.model.interfaces import Backbone, Decoder, FeatureInfo, FeatureLevel
from semsegpaddle.core.data.base import SegDataset, default_palette


class TinyCNN(Backbone):
    """Four stages of a strided 3×3 conv-BN-ReLU; levels at strides 4, 8, 16, 32."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        channels = [width, width * 2, width * 4, width * 8]
        layers, previous = [], 3
        for index, out in enumerate(channels):
            stride = 4 if index == 0 else 2
            layers.append(nn.Sequential(nn.Conv2D(previous, out, 3, stride=stride, padding=1, bias_attr=False),
                                        nn.BatchNorm2D(out), nn.ReLU()))
            previous = out
        self.stages = nn.LayerList(layers)
        self.feature_info = FeatureInfo([FeatureLevel(c, 4 * 2**i, f"stage{i + 1}") for i, c in enumerate(channels)])

    def forward(self, x):
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class SimpleFCN(Decoder):
    """Sum of 1×1-projected levels, resized to the finest one, then a 1×1 classifier."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 32) -> None:
        super().__init__()
        self.projections = nn.LayerList([nn.Conv2D(c, channels, 1) for c in feature_info.channels])
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features):
        size = features[0].shape[-2:]
        fused = sum(F.interpolate(p(f), size=size, mode="bilinear") for p, f in zip(self.projections, features))
        return self.classifier(F.relu(fused))


class Rings(SegDataset):
    """A filled disc (class 1) inside a ring (class 2) on a noisy background, at random places."""

    num_classes = 3
    ignore_index = 255
    class_names = ("background", "disc", "ring")

    def __init__(self, split: str, *, size: int = 48, count: int = 32) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"rings: split must be 'train' or 'val', got {split!r}")
        self.split, self.size, self.count = split, size, count
        self.palette = default_palette(3)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        rng = np.random.default_rng([index, 0 if self.split == "train" else 1])
        s = self.size
        yy, xx = np.mgrid[:s, :s]
        cy, cx = rng.uniform(s * 0.3, s * 0.7, size=2)
        radius = np.hypot(yy - cy, xx - cx)
        label = np.zeros((s, s), np.int64)
        label[radius < s * 0.3] = 2
        label[radius < s * 0.15] = 1
        image = rng.normal(100, 20, (s, s, 3))
        image[label == 1] += 90
        image[label == 2] -= 60
        return np.clip(image, 0, 255).astype(np.uint8), label

    def describe(self, index: int) -> str:
        return f"rings {self.split} sample {index}"
