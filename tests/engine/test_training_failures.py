"""Training under failure, as a user meets it: a real installed plugin, a real process, real signals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from semsegpaddle.core.engine.checkpoint import read_metadata

from tests.helpers.cli import plugin_env, semseg

TINY = ["model.backbone.name=tiny_cnn", "model.backbone.width=8", "model.decoder.name=simple_fcn",
        "model.decoder.channels=8", "train.crop_size=[32,32]", "train.scale_range=[1.0,1.0]",
        "train.batch_size=2", "eval.batch_size=4", "runtime.progress=false", "runtime.threads=1"]


@pytest.fixture
def site(plugin_site):
    return plugin_site


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("failure, expected", [
    ("raise", "flaky/train/0003.png: cannot load (RuntimeError: corrupt record in shard 7)"),
    ("label", "flaky/train/0003.png: label values [9] are neither classes 0..2 nor ignore_index 255"),
    ("float", "flaky/train/0003.png: label must be an integer array (class ids), got float32"),
])
def test_a_bad_sample_stops_training_with_one_line_naming_it(site, tmp_path, workers, failure, expected):
    result = semseg(site, "train", *TINY, "dataset.name=flaky", f"dataset.failure={failure}",
                    "train.iters=20", f"train.num_workers={workers}", f"runtime.output_dir={tmp_path / 'run'}",
                    timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"Error: {expected}", result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) <= 3, result.stderr[-3000:]
    assert not (tmp_path / "run" / "model_last.safetensors").exists()


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_after_a_checkpoint_and_a_second_trainer_is_refused(site, tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "dataset.name=rings", "dataset.size=32", "train.iters=100000", "train.save_interval=1",
            "train.log_interval=1", f"runtime.output_dir={out}"]
    first = subprocess.Popen([sys.executable, "-m", "semsegpaddle.cli", "train", *args], env=plugin_env(site),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: (out / "model_last.safetensors").exists()), "no checkpoint appeared"
        second = semseg(site, "train", *args, "--resume", timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"Error: {out} is in use by another training process (pid {first.pid}); "
            f"wait for it or choose another runtime.output_dir")
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("stopped by SIGTERM after step ") and "continue with --resume" in last_line
    assert "Traceback" not in stderr and "C++" not in stderr and "SIGTERM" in stderr
    step = int(last_line.split("after step ")[1].split(";")[0])
    assert read_metadata(out / "model_last.safetensors")["step"] == step
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, step + 1))
    # the lock died with its process: the run resumes and finishes
    resumed = semseg(site, "train", *args[:-4], f"train.iters={step + 2}", "train.save_interval=1",
                     "train.log_interval=1", f"runtime.output_dir={out}", "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "state_dict" not in resumed.stderr and "Warning" not in resumed.stderr, resumed.stderr[-3000:]
    assert read_metadata(out / "model_last.safetensors")["step"] == step + 2
