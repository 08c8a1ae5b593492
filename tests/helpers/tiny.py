"""Tiny in-memory components (a backbone, a dataset, the plugin giving them, a config using them), so
core tests stay fast."""
from __future__ import annotations

import numpy as np
import paddle
from paddle import nn

from semsegpaddle import hookimpl
from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
from semsegpaddle.core.model.interfaces import Backbone, FeatureInfo, FeatureLevel
from semsegpaddle.core.data.base import SegDataset, default_palette

paddle.base.core.set_num_threads(2)
# MKL fixes its code path at its first call: take the engine's (runtime.mkl_code_path: auto) now, so
# every test of the session computes on the same path whatever ran before it
choose_mkl_code_path("auto")


class TinyBackbone(Backbone):
    """Four strided 3×3 convs: levels at strides 4, 8, 16, 32 (the test stand-in for a real backbone)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        chans = [width, width * 2, width * 3, width * 4]
        self.stem = nn.Conv2D(3, chans[0], 3, stride=4, padding=1)
        self.stages = nn.LayerList([nn.Conv2D(chans[i], chans[i + 1], 3, stride=2, padding=1) for i in range(3)])
        self.feature_info = FeatureInfo([FeatureLevel(c, 4 * 2**i, f"s{i}") for i, c in enumerate(chans)])

    def forward(self, x):
        out = [paddle.nn.functional.relu(self.stem(x))]
        for stage in self.stages:
            out.append(paddle.nn.functional.relu(stage(out[-1])))
        return out


class TwoSquares(SegDataset):
    """Each image: one bright square (class 1) or dark square (class 2) on grey; a few ignore pixels."""

    num_classes = 3
    ignore_index = 255
    class_names = ("background", "bright", "dark")

    def __init__(self, split: str, size: int = 32, count: int = 8) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be train or val, got {split!r}")
        self.size, self.count, self.offset = size, count, 0 if split == "train" else 1000
        self.palette = default_palette(3)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        rng = np.random.default_rng(self.offset + index)
        s = self.size
        image = np.full((s, s, 3), 128, np.uint8)
        label = np.zeros((s, s), np.int64)
        cls = 1 + index % 2
        side = s // 2
        top, left = rng.integers(0, s - side, size=2)
        image[top:top + side, left:left + side] = 230 if cls == 1 else 20
        label[top:top + side, left:left + side] = cls
        label[0, 0] = 255
        return image, label


class TinyPlugin:
    """An in-memory plugin contributing the tiny backbone and dataset."""

    @hookimpl
    def semseg_register_backbones(self, register):
        register("tiny", TinyBackbone, options={"width": "channels of the first level"})

    @hookimpl
    def semseg_register_datasets(self, register):
        register("two_squares", TwoSquares, options={"size": "image side", "count": "samples per split"})

TINY_CONFIG = {
    "model": {"backbone": {"name": "tiny"}, "decoder": {"name": "deeplabv3", "channels": 16}},
    "dataset": {"name": "two_squares"},
    "train": {"iters": 4, "batch_size": 2, "crop_size": [32, 32], "scale_range": [1.0, 1.0], "lr": 0.01},
    "runtime": {"progress": False, "threads": 2},
}
