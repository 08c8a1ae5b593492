"""Inference backends side by side: Paddle Inference + oneDNN against onnxruntime, same export.

Each model is built with random weights (seed 0), exported once by ``export_model`` with
``onnx=True`` (so both backends read files of the same export, checked against the model), and
run by ``PaddleInferenceBackend`` and ``OnnxRuntimeBackend`` at each ``--sizes`` (square, batch
``--batch``), ``--threads`` threads. The two backends alternate call by call after a warm-up, so
a change of load hits both; the figure is the median of ``--repeat`` calls. The largest
|onnxruntime − Paddle Inference| logit difference, relative to the largest |logit|, is printed too.

Models: PSPNet, DeepLabv3, GloRe and GINet on ResNet-50-vd at output stride 8 (19 classes, no
auxiliary head; PSPNet and DeepLabv3 as in ``compare_paddleseg.py``), and the quick start's model
(the default config: HRNet-W18-small DeepLabv3, 8 classes).

    .venv/bin/python benchmarks/backends.py                       # every model, 256² and 512²
    .venv/bin/python benchmarks/backends.py --models quickstart --sizes 256 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = 19
RESNET50_OS8 = {"name": "resnet", "depth": 50, "output_stride": 8}
#: model name -> (backbone, decoder) options; ``quickstart`` is the default config's model
MODELS: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {
    "pspnet": (RESNET50_OS8, {"name": "pspnet", "bins": [1, 2, 3, 6], "channels": 1024, "conv_bias": True}),
    "deeplabv3": (RESNET50_OS8, {"name": "deeplabv3", "channels": 256, "atrous_rates": [12, 24, 36],
                                 "conv_bias": True}),
    "glore": (RESNET50_OS8, {"name": "glore"}),
    "ginet": (RESNET50_OS8, {"name": "ginet"}),
    "quickstart": (None, None),
}


def model_config(name: str) -> Any:
    """The validated config of model ``name`` (the default config for ``quickstart``)."""
    import semsegpaddle as ss

    backbone, decoder = MODELS[name]
    if backbone is None:
        return ss.load_config(None)
    return ss.config_from_dict({"model": {"backbone": dict(backbone), "decoder": dict(decoder)}})


def export_random_model(name: str, folder: Path) -> Path:
    """``folder/name``: model ``name`` with random weights (seed 0) exported with ONNX (reused if there)."""
    import paddle

    import semsegpaddle as ss
    from semsegpaddle.core.inference.export import export_model

    target = folder / name
    if (target / "model.onnx").is_file():
        return target
    config = model_config(name)
    classes = 8 if MODELS[name][0] is None else CLASSES
    paddle.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ss.create_model(config, num_classes=classes)
    model.eval()
    names = [f"c{i}" for i in range(classes)]
    palette = np.zeros((classes, 3), np.uint8)
    export_model(model, target, names, palette, check_sizes=((64, 64),), onnx=True)
    return target


def interleaved(runners: dict[str, Callable[[], Any]], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each runner, the runners called in turn ``repeat`` times after ``warmup``."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(repeat):
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--sizes", default="256,512", help="square input sides")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "semseg_bench_backends"),
                        help="folder for the exports (kept and reused)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE.parent))
    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
    from semsegpaddle.core.common.runtime import available_cores
    from semsegpaddle.core.inference.backends import OnnxRuntimeBackend, PaddleInferenceBackend

    choose_mkl_code_path("auto")
    threads = args.threads or available_cores()
    rows = []
    print("| model | size | batch | Paddle Inference + oneDNN s | onnxruntime s | onnxruntime speed-up | "
          "max rel. logit diff |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        folder = export_random_model(name, Path(args.work))
        paddle_inference = PaddleInferenceBackend(folder, threads=threads)
        onnxruntime = OnnxRuntimeBackend(folder, threads=threads)
        for size in (int(s) for s in args.sizes.split(",")):
            x = np.random.default_rng(1).uniform(0, 255, (args.batch, onnxruntime.in_channels, size, size))
            x = x.astype(np.float32)
            reference = paddle_inference(x)
            difference = float(np.abs(onnxruntime(x) - reference).max() / max(1.0, np.abs(reference).max()))
            seconds = interleaved({"paddle-inference": lambda: paddle_inference(x),
                                   "onnxruntime": lambda: onnxruntime(x)}, args.repeat)
            row = {"model": name, "size": size, "batch": args.batch, "threads": threads, **seconds,
                   "speedup": seconds["paddle-inference"] / seconds["onnxruntime"], "max_rel_diff": difference}
            rows.append(row)
            print(f"| {name} | {size}² | {args.batch} | {seconds['paddle-inference']:.3f} | "
                  f"{seconds['onnxruntime']:.3f} | {row['speedup']:.2f}× | {difference:.1e} |", flush=True)
        del paddle_inference, onnxruntime
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
