"""Seconds to accumulate the confusion matrix of 500 label maps of 1024×2048 with 19 classes.

    python benchmarks/metrics_speed.py [--maps 500]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from semsegpaddle.core.inference.metrics import ConfusionMatrix, compute_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (1024, 2048)).astype(np.uint8)
    label[:16] = 255  # an ignored band, as Cityscapes' ego vehicle
    prediction = rng.integers(0, 19, (1024, 2048)).astype(np.int64)
    matrix = ConfusionMatrix(19, 255)
    tic = time.perf_counter()
    for _ in range(args.maps):
        matrix.update(prediction, label)
    metrics = compute_metrics(matrix.table(), None)
    print(f"{args.maps} maps of 1024×2048, 19 classes: {time.perf_counter() - tic:.2f} s (mIoU {metrics.miou:.4f})")


if __name__ == "__main__":
    main()
