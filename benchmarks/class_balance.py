"""Class balance on an imbalanced synthetic dataset: rare-class IoU and mIoU with no balancing,
``class_weights: auto``, ``train.sampler: rare_class``, and both — same model, steps and seed.

The data: the embedded ``synthetic`` dataset with rings drawn rarely (``class_draw_weights`` [1, 1,
1, 0.1, 1]: rings are ~0.6 % of the labelled pixels of both splits, in 22 of the 256 training
images). The model and recipe: the quick start's (``synthetic_deeplabv3``: DeepLabv3 on
HRNetV2-W18-Small at 64×64). Each variant trains in its own process, one after the other.

Usage: python benchmarks/class_balance.py [--iters 600] [--ring-weight 0.1] [--num-val 256]
       [--method inverse_frequency] [--temperature 0.01] [--threads 0] [--out runs/class_balance] [--json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "none": [],
    "auto weights": ["class_weights"],
    "rare-class sampling": ["sampler"],
    "both": ["class_weights", "sampler"],
}
RARE_CLASS = "ring"


def overrides(args: argparse.Namespace, features: list[str], output_dir: Path) -> list[str]:
    """The ``key=value`` overrides of one variant."""
    weights = [1, 1, 1, args.ring_weight, 1]
    out = [f"train.iters={args.iters}", f"dataset.num_train={args.num_train}", f"dataset.num_val={args.num_val}",
           f"dataset.class_draw_weights={weights}", f"runtime.seed={args.seed}", f"runtime.threads={args.threads}",
           "runtime.progress=false", f"runtime.output_dir={output_dir}"]
    if "class_weights" in features:
        loss = f"{{name: cross_entropy, class_weights: auto, class_weights_method: {args.method}}}"
        out.append(f"loss.main=[{loss}]")  # the quick start's model has no auxiliary output
    if "sampler" in features:
        out += ["train.sampler=rare_class", f"train.sampler_temperature={args.temperature}"]
    return out


def run_variant(args: argparse.Namespace, name: str) -> dict:
    """Train one variant in a fresh process; its val metrics and wall time."""
    output_dir = Path(args.out) / name.replace(" ", "_")
    code = ("import json, sys; import semsegpaddle as ss; "
            "config = ss.load_config('synthetic_deeplabv3', sys.argv[1:]); "
            "result = ss.train(config, overwrite=True); print('METRICS', json.dumps(result.metrics.to_json()))")
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *overrides(args, VARIANTS[name], output_dir)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("METRICS "))[8:])
    return {"variant": name, "rare_iou": metrics["per_class"][RARE_CLASS]["IoU"], "miou": metrics["mIoU"],
            "per_class_iou": {k: v["IoU"] for k, v in metrics["per_class"].items()}, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--ring-weight", type=float, default=0.1, help="class_draw_weights entry of rings")
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--num-val", type=int, default=256)
    parser.add_argument("--method", default="inverse_frequency", help="class_weights_method")
    parser.add_argument("--temperature", type=float, default=0.01, help="train.sampler_temperature")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--out", default="runs/class_balance")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_variant(args, name.strip()) for name in args.variants.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"| variant | {RARE_CLASS} IoU | mIoU | seconds |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['variant']} | {100 * row['rare_iou']:.2f} | {100 * row['miou']:.2f} | {row['seconds']} |")


if __name__ == "__main__":
    main()
