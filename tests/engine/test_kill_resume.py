"""Exact resume survives SIGKILL at any moment, checkpoint writes included, with gradient
accumulation, numbered checkpoints (keep_last) and, where Paddle runs it on CPU, bf16 AMP."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle.core.engine.amp import autocast_works
from semsegpaddle.core.engine.checkpoint import read_metadata

from tests.helpers.cli import plugin_env, semseg

ITERS = 600
ARGS = ["model.backbone.name=tiny_cnn", "model.backbone.width=4", "model.decoder.name=simple_fcn",
        "model.decoder.channels=4", "dataset.name=rings", "dataset.size=32", "dataset.count=16",
        "train.crop_size=[32,32]", "train.scale_range=[0.75,1.25]", "train.batch_size=2", f"train.iters={ITERS}",
        "train.save_interval=1", "train.log_interval=1", "train.eval_interval=300", "eval.batch_size=8",
        "runtime.progress=false", "runtime.threads=1", "train.accumulate=2", "runtime.keep_last=3"]
# Paddle 3.3's autocast does nothing on CPU and the engine refuses bf16 there; a build that runs it gets it tested
if autocast_works("cpu", "bfloat16"):
    ARGS.append("train.amp=bf16")


def _mtime(path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_bitwise_the_same_run(plugin_site, tmp_path):
    reference = semseg(plugin_site, "train", *ARGS, f"runtime.output_dir={tmp_path / 'reference'}", timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    last = out / "model_last.safetensors"
    rng = random.Random(1234)
    kills = 0
    for attempt in range(60):
        command = [sys.executable, "-m", "semsegpaddle.cli", "train", *ARGS, f"runtime.output_dir={out}"]
        if last.exists():
            command.append("--resume")
        process = subprocess.Popen(command, env=plugin_env(plugin_site), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        before = _mtime(last)
        # 1 in 5 kills anywhere in start-up and loading, the others right around a checkpoint write
        anywhere = rng.random() < 0.2
        deadline = time.monotonic() + (rng.uniform(0.0, 2.5) if anywhere else 60)
        while _mtime(last) == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03 if anywhere else 0.12))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (0, -signal.SIGKILL), stderr[-3000:]
        if process.returncode == 0 or kills >= 12:
            break
    assert kills >= 10, f"only {kills} kills landed before the run finished"

    finish = semseg(plugin_site, "train", *ARGS, f"runtime.output_dir={out}", "--resume", timeout=600)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert read_metadata(last)["step"] == ITERS
    kept = sorted(p.name for p in out.glob("model_[0-9]*.safetensors"))
    assert kept == sorted(p.name for p in (tmp_path / "reference").glob("model_[0-9]*.safetensors"))
    assert kept == [f"model_{s}.safetensors" for s in (ITERS - 2, ITERS - 1, ITERS)]
    for name in ["model_last.safetensors", *kept]:
        expected = load_file(str(tmp_path / "reference" / name))
        got = load_file(str(out / name))
        assert expected.keys() == got.keys()
        for key in expected:
            assert np.array_equal(expected[key], got[key]), (name, key)
    assert (tmp_path / "reference" / "model_best.safetensors").read_bytes() != b""
    assert not list(out.glob(".*.tmp")), "temporaries of killed writers must be swept"
