"""Seconds per training step of a config's model at a given input size (forward + backward + SGD).

Usage: python benchmarks/step_time.py [CONFIG] [key=value ...] [--size 256] [--batch 2] [--steps 5]
Compare with FACTS: paddle.vision resnet50, 256², batch 2, 2 threads: ~1.4 s.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import paddle

import semsegpaddle as ss
from semsegpaddle.core.engine.trainer import build_optimizer, setup_runtime
from semsegpaddle.core.model.losses import create_loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("args", nargs="*")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parsed = parser.parse_args()
    config_name = next((a for a in parsed.args if "=" not in a), None)
    config = ss.load_config(config_name, [a for a in parsed.args if "=" in a])
    setup_runtime(config)
    model = ss.create_model(config, num_classes=19)
    optimizer, _ = build_optimizer(model, config["train"])
    criterion = create_loss(config, model, 255)
    model.train()
    x = paddle.rand([parsed.batch, 3, parsed.size, parsed.size]) * 255
    y = paddle.randint(0, 19, [parsed.batch, parsed.size, parsed.size])
    times = []
    for _ in range(parsed.steps + 1):
        tic = time.perf_counter()
        loss, _ = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        times.append(time.perf_counter() - tic)
    print(f"{np.median(times[1:]):.3f} s/step (median of {parsed.steps}, first step {times[0]:.3f} s)")


if __name__ == "__main__":
    main()
