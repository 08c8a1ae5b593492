"""Soak: a long run of tiny training steps must not leak memory, file descriptors or disk.

Trains the example plugin's tiny model (``tiny_cnn`` + ``simple_fcn`` on ``rings``, 32×32, batch
2) for ``--steps`` steps through the real ``semseg train`` command, evaluating and checkpointing
every ``--eval-interval`` steps with ``runtime.keep_last``, one log record per step. While it
runs, this script samples the training process from outside (``/proc/<pid>/status`` for the
resident memory, ``/proc/<pid>/fd`` for open descriptors, the run folder's files and bytes) and
reads the step the run reached from its step log.

Checks (exit 1 when one fails, after printing every figure):
- RSS slope after the warm-up (least squares over the samples) ≤ ``--rss-limit`` kB per 1000 steps;
- open-descriptor slope after the warm-up ≤ ``--fd-limit`` per 1000 steps;
- the run folder stays bounded at every sample: at most ``keep_last + 1`` numbered checkpoints
  (a new one is written before the oldest is removed), a fixed set of other files and one
  temporary file; its bytes other than the two logs ≤ ``keep_last + 4`` checkpoints (the numbered
  ones, ``model_last`` counted apart though a hard link, ``model_best``, a temporary file);
- ``train_log.jsonl`` holds exactly one record per step 1..steps, ``eval_log.jsonl`` one per
  evaluation.

Usage: python benchmarks/soak.py [--steps 3000] [--eval-interval 100] [--keep-last 3]
       [--workers 0] [--interval 0.2] [--out DIR] [--json FILE]
Needs only the package and the example plugin (installed into a temporary folder here).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "semseg-example-plugin"
#: files a run folder holds besides the numbered checkpoints (and one temporary file at most)
FIXED_FILES = {"model_last.safetensors", "model_best.safetensors", "config.yaml", "train_log.jsonl",
               "eval_log.jsonl", "metrics.json", "versions.json", ".lock"}
LOGS = ("train_log.jsonl", "eval_log.jsonl")


def train_args(steps: int, eval_interval: int, keep_last: int, workers: int, out: Path) -> list[str]:
    """The ``semseg train`` arguments of the soak run."""
    return ["train", "model.backbone.name=tiny_cnn", "model.backbone.width=8", "model.decoder.name=simple_fcn",
            "model.decoder.channels=8", "dataset.name=rings", "dataset.size=32", "dataset.count=16",
            "train.crop_size=[32,32]", "train.scale_range=[0.75,1.25]", "train.batch_size=2",
            f"train.iters={steps}", "train.log_interval=1", f"train.eval_interval={eval_interval}",
            f"train.save_interval={eval_interval}", f"train.num_workers={workers}", "eval.batch_size=8",
            f"runtime.keep_last={keep_last}", "runtime.progress=false", "runtime.threads=1",
            f"runtime.output_dir={out}"]


def install_example(target: Path) -> Path:
    """pip-install the example plugin (no dependencies) into ``target``; return it."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return target


def rss_kb(pid: int) -> int | None:
    """Resident memory of ``pid`` in kB (VmRSS), None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    """Open file descriptors of ``pid``, None once it has gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def folder_usage(folder: Path) -> tuple[int, int, int, int]:
    """(files, bytes, numbered checkpoints, bytes other than the logs) of the run folder, recursively."""
    files = size = numbered = other = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                nbytes = os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # replaced between listing and stat
                continue
            files += 1
            size += nbytes
            numbered += name.startswith("model_") and name[6:-12].isdigit()
            other += 0 if name in LOGS else nbytes
    return files, size, numbered, other


class StepReader:
    """The last step of a growing JSON-lines log, reading only what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.step, self.pending = path, 0, 0, b""

    def read(self) -> int:
        """The step of the newest complete record."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.step
        self.offset += len(chunk)
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            if line.strip():
                self.step = int(json.loads(line)["step"])
        return self.step


def slope_per_1000(steps: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``steps``, per 1000 steps."""
    if len(steps) < 3 or np.ptp(steps) == 0:
        return float("nan")
    return float(np.polyfit(steps, values, 1)[0] * 1000)


def check_logs(out: Path, steps: int, eval_interval: int) -> tuple[int, int, list[str]]:
    """Records in the two logs and what is wrong with them (an empty list when nothing is)."""
    problems = []
    train = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines() if line]
    evals = [json.loads(line)["step"] for line in (out / "eval_log.jsonl").read_text().splitlines() if line]
    if train != list(range(1, steps + 1)):
        problems.append(f"train_log.jsonl: {len(train)} records, steps {train[:3]}..{train[-3:]}; "
                        f"expected exactly one per step 1..{steps}")
    expected_evals = sorted({*range(eval_interval, steps + 1, eval_interval), steps})
    if evals != expected_evals:
        problems.append(f"eval_log.jsonl: steps {evals[:3]}..{evals[-3:]}; expected {len(expected_evals)} "
                        f"evaluations every {eval_interval} steps")
    return len(train), len(evals), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--keep-last", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="train.num_workers")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the steps left out of the fits")
    parser.add_argument("--rss-limit", type=float, default=1024.0,
                        help="largest RSS slope accepted, kB per 1000 steps (a leak of 1 kB per step fails)")
    parser.add_argument("--fd-limit", type=float, default=0.5,
                        help="largest open-descriptor slope accepted, per 1000 steps")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures and samples here")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="semseg-soak-") as scratch:
        site = install_example(Path(scratch) / "site")
        out = options.out or Path(scratch) / "run"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "semsegpaddle.cli",
                   *train_args(options.steps, options.eval_interval, options.keep_last, options.workers, out)]
        if options.out is not None and (out / "model_last.safetensors").exists():
            command.append("--overwrite")
        began = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reader = StepReader(out / "train_log.jsonl")
        samples: list[tuple[float, int, int, int, int, int, int, int]] = []
        while process.poll() is None:
            rss, fds = rss_kb(process.pid), open_fds(process.pid)
            step = reader.read()
            if rss is not None and fds is not None and step > 0:
                samples.append((time.monotonic() - began, step, rss, fds, *folder_usage(out)))
            time.sleep(options.interval)
        stderr = process.stderr.read() if process.stderr else ""
        elapsed = time.monotonic() - began
        if process.returncode != 0:
            print(f"training failed (exit {process.returncode}):\n{stderr[-3000:]}", file=sys.stderr)
            return 1
        report, problems = summarise(samples, options, out, elapsed)
    for key, value in report.items():
        print(f"{key}: {value}")
    if options.json:
        options.json.write_text(json.dumps({"figures": report, "samples": samples}, indent=1))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("soak: " + ("FAILED" if problems else "passed"))
    return 1 if problems else 0


def summarise(samples: list[tuple], options: argparse.Namespace, out: Path,
              elapsed: float) -> tuple[dict[str, object], list[str]]:
    """The soak's figures and the checks that failed."""
    data = np.array(samples, dtype=float)
    records, evaluations, problems = check_logs(out, options.steps, options.eval_interval)
    # the fit covers the steady part: after the warm-up, before the last step (the loader is closed then)
    steady = data[(data[:, 1] >= options.warmup * options.steps) & (data[:, 1] < options.steps)]
    rss_slope = slope_per_1000(steady[:, 1], steady[:, 2])
    fd_slope = slope_per_1000(steady[:, 1], steady[:, 3])
    checkpoint = (out / "model_last.safetensors").stat().st_size
    most_files, most_numbered, most_other = int(data[:, 4].max()), int(data[:, 6].max()), int(data[:, 7].max())
    files, nbytes, numbered, other = folder_usage(out)
    report = {
        "steps": options.steps, "seconds": round(elapsed, 1), "samples": len(samples),
        "samples after warm-up": len(steady),
        "RSS first / last / max (MB)": f"{data[0, 2] / 1024:.1f} / {data[-1, 2] / 1024:.1f} / {data[:, 2].max() / 1024:.1f}",
        "RSS after warm-up min / max (MB)": f"{steady[:, 2].min() / 1024:.1f} / {steady[:, 2].max() / 1024:.1f}",
        "RSS slope (kB per 1000 steps)": round(rss_slope, 1),
        "open fds first / last / min / max": f"{int(data[0, 3])} / {int(data[-1, 3])} / {int(data[:, 3].min())} / {int(data[:, 3].max())}",
        "fd slope (per 1000 steps)": round(fd_slope, 3),
        "run folder at the end (files / bytes)": f"{files} / {nbytes}",
        "most files / numbered checkpoints seen": f"{most_files} / {most_numbered}",
        "most bytes other than the logs": most_other,
        "checkpoint bytes": checkpoint,
        "log bytes per step": round((nbytes - other) / options.steps, 1),
        "train_log records / eval_log records": f"{records} / {evaluations}",
    }
    if not rss_slope <= options.rss_limit:
        problems.append(f"RSS grows {rss_slope:.1f} kB per 1000 steps (limit {options.rss_limit})")
    if not fd_slope <= options.fd_limit:
        problems.append(f"open descriptors grow {fd_slope:.3f} per 1000 steps (limit {options.fd_limit})")
    if most_numbered > options.keep_last + 1 or most_files > len(FIXED_FILES) + options.keep_last + 2:
        problems.append(f"run folder not bounded: up to {most_files} files, {most_numbered} numbered checkpoints "
                        f"(keep_last {options.keep_last})")
    if most_other > (options.keep_last + 4) * checkpoint:
        problems.append(f"run folder not bounded: {most_other} bytes besides the logs, more than "
                        f"{options.keep_last + 4} checkpoints of {checkpoint} bytes")
    return report, problems


if __name__ == "__main__":
    sys.exit(main())
