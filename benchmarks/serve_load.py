"""`semseg serve` under load on loopback: throughput and latency percentiles against `semseg predict`.

A checkpoint of the quick start's model (the default config: HRNet-W18-small DeepLabv3, 8 classes;
random weights, seed 0) is written once, and exported for Paddle Inference. For each backend
(``dynamic``: the checkpoint; ``paddle-inference``: the export, oneDNN) and each batching setting
(``--max-batch 1``: off; ``--max-batch 8 --max-wait-ms 5``: on), one server process is started
(``--threads`` threads) and sent ``--requests`` PNG images of ``--size`` pixels (all the same size,
so they can be batched) by ``--concurrency`` clients at once, each sending its next image as soon
as its last answer arrived (closed loop, keep-alive, loopback). A case stops after ``--requests``
answers or ``--max-seconds``, whichever comes first; a warm-up of 4 requests is not counted.
Reported: answers per second, and the 50th/95th/99th percentile of the request latency.

``semseg predict`` is timed on the same images with the same backend and threads, twice: all
images, and one image; (all − one) / (n − 1) is its time per image once loaded, and its images
per second include nothing else. Its wall time for all images (start-up included) is shown too.

    .venv/bin/python benchmarks/serve_load.py                              # the table in README
    .venv/bin/python benchmarks/serve_load.py --size 512 --requests 64 --concurrency 1,4,16
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEMSEG = [sys.executable, "-m", "semsegpaddle.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_model(root: Path, threads: int) -> tuple[Path, Path]:
    """The quick start's model with random weights as a checkpoint, and its export folder."""
    import paddle

    from semsegpaddle import api
    from semsegpaddle.core.data.base import default_palette
    from semsegpaddle.core.engine.checkpoint import save_weights

    config = api.load_config(None, [f"runtime.threads={threads}", "runtime.progress=false"])
    paddle.seed(0)
    names = [f"class{i}" for i in range(8)]
    model = api.create_model(config, num_classes=len(names))
    model.eval()
    weights = root / "model.safetensors"
    save_weights(model, weights, dict(config), num_classes=len(names), class_names=names,
                 palette=np.asarray(default_palette(len(names))).tolist())
    api.export(config, root / "exported", weights)
    return weights, root / "exported"


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def model_args(backend: str, weights: Path, export: Path) -> list[str]:
    return ["--weights", str(weights)] if backend == "dynamic" else ["--backend", backend, "--model-dir", str(export)]


def start(backend: str, weights: Path, export: Path, batching: bool, threads: int, log: Path) -> tuple[subprocess.Popen, int]:
    import httpx

    port = free_port()
    batch = ["--max-batch", "8", "--max-wait-ms", "5"] if batching else ["--max-batch", "1"]
    with open(log, "wb") as sink:
        process = subprocess.Popen([*SEMSEG, "serve", *model_args(backend, weights, export), "--port", str(port),
                                    "--threads", str(threads), "--max-queue", "256", *batch],
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"semseg serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("semseg serve did not start")


async def load(port: int, bodies: list[bytes], concurrency: int, requests: int, max_seconds: float) -> dict:
    """Closed-loop load: ``concurrency`` clients, ``requests`` answers in all (or ``max_seconds``)."""
    import httpx

    url = f"http://127.0.0.1:{port}/predict"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        for body in bodies[:4]:  # warm-up
            await client.post(url, content=body, headers={"Content-Type": "image/png"})
        before = _batch_totals((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
        started = time.perf_counter()
        deadline = started + max_seconds

        async def client_loop() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                begin = time.perf_counter()
                answer = await client.post(url, content=body, headers={"Content-Type": "image/png"})
                latencies.append(time.perf_counter() - begin)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        after = _batch_totals((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
    batches, images = after[0] - before[0], after[1] - before[1]
    ms = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return {"answers": len(latencies), "statuses": statuses, "seconds": wall, "per_second": len(latencies) / wall,
            "p50": ms[0], "p95": ms[1], "p99": ms[2], "mean_batch": images / batches if batches else 0.0}


def _batch_totals(metrics: str) -> tuple[float, float]:
    """(batches run, images in them) from the server's metrics."""
    values = dict(line.split() for line in metrics.splitlines() if line.startswith("semseg_batch_size_"))
    return float(values["semseg_batch_size_count"]), float(values["semseg_batch_size_sum"])


def time_predict(backend: str, weights: Path, export: Path, images: list[Path], threads: int, out: Path) -> dict:
    def run(paths: list[Path]) -> float:
        begin = time.perf_counter()
        subprocess.run([*SEMSEG, "predict", *map(str, paths), *model_args(backend, weights, export),
                        "--output", str(out), "--config", f"runtime.threads={threads}"],
                       check=True, capture_output=True)
        return time.perf_counter() - begin

    one = run(images[:1])
    every = run(images)
    per_image = (every - one) / (len(images) - 1)
    return {"wall": every, "one": one, "per_image_ms": 1000 * per_image, "per_second": 1 / per_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side, pixels")
    parser.add_argument("--requests", type=int, default=48, help="answers per case")
    parser.add_argument("--images", type=int, default=48, help="distinct images (sent round robin; predict reads each)")
    parser.add_argument("--concurrency", default="1,4,16", help="clients at once, comma-separated")
    parser.add_argument("--backends", default="dynamic,paddle-inference")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the server and of predict")
    parser.add_argument("--max-seconds", type=float, default=60, help="time bound of one case")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows, predicted = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights, export = write_model(root, args.threads)
        images = write_images(root / "images", args.images, args.size)
        bodies = [p.read_bytes() for p in images]
        for backend in args.backends.split(","):
            predicted[backend] = time_predict(backend, weights, export, images, args.threads, root / "masks")
            for batching in (False, True):
                process, port = start(backend, weights, export, batching, args.threads, root / "serve.log")
                try:
                    for level in levels:
                        result = asyncio.run(load(port, bodies, level, args.requests, args.max_seconds))
                        rows.append({"backend": backend, "batching": batching, "concurrency": level, **result})
                        print(json.dumps(rows[-1]), file=sys.stderr)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(120)
    print(f"\n{args.size}×{args.size} PNG, {args.threads} threads, {args.requests} answers per case\n")
    print("| backend | batching | clients | answers/s | p50 ms | p95 ms | p99 ms | mean batch | statuses |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        print(f"| {r['backend']} | {'on (8, 5 ms)' if r['batching'] else 'off'} | {r['concurrency']} | "
              f"{r['per_second']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['mean_batch']:.2f} | "
              f"{statuses} |")
    print("\n| `semseg predict` | images | wall s (start-up included) | ms per image once loaded | images/s |")
    print("|---|---|---|---|---|")
    for backend, p in predicted.items():
        print(f"| {backend} | {args.images} | {p['wall']:.1f} | {p['per_image_ms']:.0f} | {p['per_second']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"serve": rows, "predict": predicted}, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
