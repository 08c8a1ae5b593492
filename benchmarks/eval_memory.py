"""Peak memory and time of inference modes on one large image, dynamic model vs Paddle Inference.

Usage: python benchmarks/eval_memory.py [--height 2048] [--width 4096] [--depth 50] [--output-stride 8]
           [--crop 512,1024] [--scales 0.5,1] [--threads 2] [--cases dynamic:whole,...] [--json FILE]

A DeepLabv3 on a ResNet (random weights, seed 0, 19 classes) segments one random image in each
mode — whole, slide (windows of --crop, stride 2/3 of it) and ms-flip (the same windows over the
image at each of --scales, mirrored too: 2 × len(scales) views, probabilities averaged) — with
each backend:
``dynamic`` (the paddle model) and ``paddle-inference`` (the model exported by ``export_model``,
oneDNN on). Every case runs in a fresh process, so its peak resident set (``VmHWM`` of
/proc/self/status; ``ru_maxrss`` where there is no /proc) is its own: the table shows the resident
set after the backend is loaded, the peak, and their difference (what inference itself added).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [f"{backend}:{mode}" for backend in ("dynamic", "paddle-inference") for mode in ("whole", "slide", "ms-flip")]
NUM_CLASSES = 19


def memory_mb(field: str) -> float:
    """A VmRSS/VmHWM figure of this process in MB (peak from getrusage when /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(args: argparse.Namespace):
    """The benchmark's model: DeepLabv3 on ResNet-``depth``, random weights (seed 0), eval mode."""
    import paddle

    import semsegpaddle as ss

    paddle.seed(0)
    config = ss.config_from_dict({"model": {"backbone": {"name": "resnet", "depth": args.depth,
                                                         "output_stride": args.output_stride},
                                            "decoder": {"name": "deeplabv3"}}})
    model = ss.create_model(config, num_classes=NUM_CLASSES)
    model.eval()
    return model


def export(args: argparse.Namespace, folder: Path) -> None:
    """Export the model for the paddle-inference cases (checked at one small size)."""
    import numpy as np

    from semsegpaddle.core.data.base import default_palette
    from semsegpaddle.core.inference.export import export_model

    export_model(build_model(args), folder, [f"c{i}" for i in range(NUM_CLASSES)], np.asarray(default_palette(NUM_CLASSES)),
                 check_sizes=((64, 128),))


def run_case(args: argparse.Namespace) -> dict:
    """Load the backend, segment the image once in the mode; figures of this process."""
    import numpy as np
    import paddle

    from semsegpaddle.core.inference.backends import DynamicBackend, PaddleInferenceBackend
    from semsegpaddle.core.inference.segmenter import InferenceMode, Segmenter, scaled_size, window_boxes

    backend_name, mode_name = args.case.split(":")
    paddle.base.core.set_num_threads(args.threads)
    if backend_name == "dynamic":
        backend = DynamicBackend(build_model(args))
    else:
        backend = PaddleInferenceBackend(args.model_dir, threads=args.threads)
    crop = tuple(int(v) for v in args.crop.split(","))
    scales = tuple(float(v) for v in args.scales.split(","))
    mode = {"whole": InferenceMode(), "slide": InferenceMode("slide", crop),
            "ms-flip": InferenceMode("slide", crop, scales=scales, flip=True)}[mode_name]
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    loaded = memory_mb("VmRSS")
    tic = time.perf_counter()
    mask = Segmenter(backend, mode).masks([image])[0]
    seconds = time.perf_counter() - tic
    peak = memory_mb("VmHWM")
    passes = sum(len(window_boxes(*scaled_size(args.height, args.width, scale), mode.crop_size, mode.stride))
                 if mode.mode == "slide" else 1 for scale, _ in mode.views)
    return {"case": args.case, "mode": mode.describe(), "passes": passes, "seconds": round(seconds, 1),
            "rss_loaded_mb": round(loaded), "rss_peak_mb": round(peak), "inference_mb": round(peak - loaded),
            "mask": list(mask.shape), "classes_seen": int(len(np.unique(mask)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--output-stride", type=int, default=8)
    parser.add_argument("--crop", default="512,1024")
    parser.add_argument("--scales", default="0.5,1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", default=None, help="Also write the rows to this file.")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--export-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_to:
        export(args, Path(args.export_to))
        return
    if args.case:
        print(json.dumps(run_case(args)))
        return

    common = [f"--height={args.height}", f"--width={args.width}", f"--depth={args.depth}",
              f"--output-stride={args.output_stride}", f"--crop={args.crop}", f"--scales={args.scales}",
              f"--threads={args.threads}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cases = args.cases.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "exported"
        if any(case.startswith("paddle-inference") for case in cases):
            subprocess.run([sys.executable, __file__, *common, f"--export-to={folder}"], check=True, env=env)
        print("| backend:mode | mode | passes | seconds | RSS loaded MB | peak RSS MB | added by inference MB |")
        print("|---|---|---|---|---|---|---|")
        for case in cases:
            done = subprocess.run([sys.executable, __file__, *common, f"--case={case}", f"--model-dir={folder}"],
                                  check=True, env=env, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"| {row['case']} | {row['mode']} | {row['passes']} | {row['seconds']} | {row['rss_loaded_mb']} | "
                  f"{row['rss_peak_mb']} | {row['inference_mb']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
