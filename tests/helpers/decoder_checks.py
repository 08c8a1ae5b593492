"""Checks every decoder head test runs: parameter counts, shapes, gradients, overfitting, a CLI run."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import yaml

from semsegpaddle.core.model.interfaces import FeatureInfo, FeatureLevel
from semsegpaddle.core.model.assembly import SegmentationModel, create_backbone
from semsegpaddle.core.plugin.manager import new_state

from tests.helpers.tiny import TinyBackbone
from tests.helpers.cli import semseg

#: ResNet50_vd at output stride 8 as PaddleSeg 2.8 builds it: 256 channels at stride 4, 2048 at 8
RESNET50_OS8 = FeatureInfo([FeatureLevel(256, 4, "layer1"), FeatureLevel(512, 8, "layer2"),
                            FeatureLevel(1024, 8, "layer3"), FeatureLevel(2048, 8, "layer4")])
DECODERS = new_state().registries["decoder"]


def small_info(strides: tuple[int, ...], channels: tuple[int, ...] = (16, 24, 32, 48)) -> FeatureInfo:
    """A four-level FeatureInfo with few channels, for cheap forward passes."""
    return FeatureInfo([FeatureLevel(c, s, f"level{i}") for i, (c, s) in enumerate(zip(channels, strides))])


def build(name: str, feature_info: FeatureInfo, num_classes: int, **options):
    """The registered decoder ``name``, built through its entry-point factory."""
    return DECODERS.get(name).factory(feature_info, num_classes, **options)


def count_parameters(layer: paddle.nn.Layer) -> int:
    """sum(numel) over ``parameters()``: BatchNorm statistics included, as PaddleSeg's figures count."""
    return int(sum(int(p.numel()) for p in layer.parameters()))


def resnet18_features(output_stride: int, height: int, width: int, batch: int = 2):
    """A ResNet-18 at ``output_stride`` and its four levels for a random batch of height × width."""
    backbone = create_backbone("resnet", depth=18, output_stride=output_stride)
    backbone.eval()
    with paddle.no_grad():
        features = backbone(paddle.rand([batch, 3, height, width]))
    return backbone.feature_info, features


def assert_every_parameter_learns(head: paddle.nn.Layer, feature_info: FeatureInfo, num_classes: int) -> None:
    """One forward/backward in training mode: every trainable parameter gets a non-zero gradient."""
    paddle.seed(0)
    head.train()
    features = [paddle.randn([2, level.channels, 64 // level.stride, 48 // level.stride]) for level in feature_info]
    logits = head(features)
    label = paddle.randint(0, num_classes, [2, *logits.shape[2:]])
    F.cross_entropy(logits, label, axis=1).backward()
    trainable = [(name, p) for name, p in head.named_parameters() if not p.stop_gradient]
    assert trainable
    silent = [name for name, p in trainable if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert not silent, f"parameters without gradient: {silent}"


def blocky_batch(num_classes: int, size: int = 32, cell: int = 8, seed: int = 0):
    """Two images whose labels are constant on cell × cell blocks, coloured by class plus noise."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, num_classes, (2, size // cell, size // cell))
    label = np.kron(cells, np.ones((cell, cell), np.int64))
    colours = rng.uniform(0, 255, (num_classes, 3))
    image = colours[label].transpose(0, 3, 1, 2) + rng.normal(0, 20, (2, 3, size, size))
    return paddle.to_tensor(image.astype("float32")), paddle.to_tensor(label)


def overfit(make_decoder, num_classes: int = 4, steps: int = 60) -> tuple[float, float]:
    """Train TinyBackbone + the decoder on one batch; return the first and the last loss."""
    paddle.seed(0)
    backbone = TinyBackbone(width=16)
    model = SegmentationModel(backbone, make_decoder(backbone.feature_info, num_classes), num_classes,
                              mean=[128.0] * 3, std=[64.0] * 3)
    model.train()
    optimizer = paddle.optimizer.Adam(learning_rate=0.01, parameters=model.parameters())
    images, label = blocky_batch(num_classes)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(images)[0], label, axis=1)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    return losses[0], losses[-1]


def assert_exports(tmp_path: Path, name: str, **options) -> None:
    """ResNet-18 OS8 + the decoder exports with a dynamic input size and matches the dynamic model."""
    from semsegpaddle.core.inference.export import export_model

    backbone = create_backbone("resnet", depth=18, output_stride=8)
    model = SegmentationModel(backbone, build(name, backbone.feature_info, 4, **options), 4, [0.0] * 3, [1.0] * 3)
    report = export_model(model, tmp_path / name, ["a", "b", "c", "d"], np.zeros((4, 3), np.uint8))
    assert set(report.max_abs_error) == {"64x64", "48x80"}
    # float32 rounding relative to the logits' size (random weights and 0-255 inputs: logits ~1e3)
    assert max(report.max_abs_error.values()) <= 1e-5 * max(1.0, report.max_abs_logit)


def train_through_cli(tmp_path: Path, decoder: dict) -> dict:
    """`semseg train` in a subprocess: ResNet-18, the embedded dataset at 64 px, three steps.

    Returns the run's metrics.json; the run must exit 0.
    """
    config = {
        "model": {"backbone": {"name": "resnet", "depth": 18, "output_stride": 8}, "decoder": decoder},
        "dataset": {"name": "synthetic", "image_size": 64, "num_train": 8, "num_val": 4},
        "train": {"iters": 3, "batch_size": 2, "crop_size": [64, 64], "scale_range": [1.0, 1.0]},
        "eval": {"batch_size": 2},
        "runtime": {"progress": False, "threads": 2, "output_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = semseg(None, "train", path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert math.isfinite(metrics["mIoU"]) and 0.0 <= metrics["mIoU"] <= 1.0, metrics
    return metrics


def entry_point_module(name: str) -> str:
    """The module the installed ``semsegpaddle`` entry point ``name`` loads."""
    from importlib.metadata import entry_points

    return next(ep.value for ep in entry_points(group="semsegpaddle") if ep.name == name)


def import_without_paddle(module: str) -> subprocess.CompletedProcess:
    """Import ``module`` and run its registration hook in a fresh interpreter where paddle cannot be imported."""
    code = (
        "import sys\n"
        "sys.modules['paddle'] = None\n"
        "import importlib\n"
        f"module = importlib.import_module({module!r})\n"
        "names = []\n"
        "module.semseg_register_decoders(lambda name, factory, **kw: names.append(name))\n"
        "print(','.join(names))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
