"""Importing trained zoo models: reading the file, building and loading, and full-size logit agreement.

For each model: a reference built as its zoo config builds it (PaddleSeg 2.8 or torchvision, random
weights and BatchNorm statistics), saved as that framework saves it; then, timed separately,
reading the file with our pickle-free reader and with the framework's own loader, and
``semsegpaddle.load_model(packaged config, file)``; finally both models on one full-size image.

    python benchmarks/zoo_import.py [--size 512,1024] [--models pspnet-101 deeplabv3-101 tv-deeplabv3-101]

Needs the test extras and PaddleSeg 2.8 (`pip install --no-deps paddleseg==2.8.0`).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

from semsegpaddle import api
from semsegpaddle.core.engine.restore import declared_labels
from semsegpaddle.core.model.weight_files import read_weights

MODELS = {
    "pspnet-101": ("paddleseg_pspnet_resnet101_os8_cityscapes_1024x512_80k", "PSPNet", 101, {}),
    "deeplabv3-101": ("paddleseg_deeplabv3_resnet101_os8_cityscapes_1024x512_80k", "DeepLabV3", 101,
                      {"aspp_ratios": (1, 12, 24, 36)}),
    "ginet-101": ("paddleseg_ginet_resnet101_os8_cityscapes_1024x512_80k", "GINet", 101, {}),
    "tv-deeplabv3-101": ("torchvision_deeplabv3_resnet101", "deeplabv3_resnet101", 101, None),
}


def _paddleseg(kind: str, depth: int, extra: dict, classes: int):
    from paddleseg.models import DeepLabV3, DeepLabV3P, GINet, GloRe, PSPNet, backbones

    backbone = (backbones.ResNet50_vd if depth == 50 else backbones.ResNet101_vd)(
        output_stride=8, multi_grid=(1, 2, 4) if kind.startswith("DeepLab") else (1, 1, 1))
    cls = {"PSPNet": PSPNet, "DeepLabV3": DeepLabV3, "DeepLabV3P": DeepLabV3P, "GloRe": GloRe, "GINet": GINet}[kind]
    model = cls(num_classes=classes, backbone=backbone, **extra)
    rng = np.random.default_rng(0)
    state = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            value = rng.normal(0, 1, shape) / np.sqrt(np.prod(shape[1:]) if len(shape) == 4 else shape[0])
        else:
            value = rng.normal(0, 0.1, shape) if name.endswith(("_mean", "bias")) else rng.uniform(0.5, 1.5, shape)
        state[name] = value.astype(str(tensor.dtype).replace("paddle.", ""))
    model.set_state_dict(state)
    return model.eval()


def _timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def run(name: str, size: tuple[int, int], folder: Path) -> dict:
    config_name, kind, depth, extra = MODELS[name]
    config = api.load_config(config_name)
    classes = declared_labels(config)["num_classes"]
    pixels = np.random.default_rng(1).uniform(0, 255, (1, 3, *size)).astype(np.float32)
    if extra is None:
        import torch
        from torchvision.models import segmentation

        reference = getattr(segmentation, kind)(weights=None, weights_backbone=None, num_classes=classes, aux_loss=True).eval()
        path = folder / f"{name}.pth"
        torch.save(reference.state_dict(), path)
        _, native = _timed(lambda: torch.load(path, map_location="cpu", weights_only=True))
        mean = np.array([123.675, 116.28, 103.53], np.float32).reshape(1, 3, 1, 1)
        std = np.array([58.395, 57.12, 57.375], np.float32).reshape(1, 3, 1, 1)
        with torch.no_grad():
            expected, reference_time = _timed(lambda: reference(torch.from_numpy((pixels - mean) / std))["out"].numpy())
    else:
        reference = _paddleseg(kind, depth, extra, classes)
        path = folder / f"{name}.pdparams"
        paddle.save(reference.state_dict(), str(path))
        _, native = _timed(paddle.load, str(path))
        with paddle.no_grad():
            expected, reference_time = _timed(lambda: reference(paddle.to_tensor((pixels - 127.5) / 127.5))[0].numpy())
    _, ours_read = _timed(read_weights, path)
    model, load_time = _timed(api.load_model, config, path)
    with paddle.no_grad():
        got, ours_time = _timed(lambda: model(paddle.to_tensor(pixels)).numpy())
    error = float(np.abs(got - expected).max() / np.abs(expected).max())
    agreement = float((got.argmax(1) == expected.argmax(1)).mean())
    return {"model": name, "MB": path.stat().st_size / 2**20, "read ours s": ours_read, "read native s": native,
            "load_model s": load_time, "forward ours s": ours_time, "forward reference s": reference_time,
            "max rel error": error, "argmax agreement": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512,1024", help="H,W of the full-size image")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    paddle.base.core.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split(","))
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(name, size, Path(folder)) for name in args.models]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
