"""Data parallel that fails loudly: a killed, raising or hung process ends the whole job quickly with
one line naming it, leaves nothing running and the lock free, and ``--resume`` continues exactly;
a run resumes with another process count (global batch kept); BatchNorm and SyncBatchNorm
checkpoints load into each other."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.engine.checkpoint import (portable_optimizer_state, read_metadata, restore_training_state,
                                                 save_checkpoint)
from semsegpaddle.core.engine.optim import build_optimizer
from semsegpaddle.core.engine.world_size import keep_global_batch, world_record
from semsegpaddle.api import create_model

from tests.helpers.cli import plugin_env
from tests.helpers.rank_faults import TINY_ARGS, install_fault_plugins, start_job, wait_all
from tests.helpers.tiny import TINY_CONFIG

ITERS = 12
#: generous: the measured times are ~2 s after a kill (benchmarks/README.md); the machine is shared
BOUND = 120
LINE = re.compile(r"^semseg train: (.*); every process of the job was stopped", re.M)


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory):
    return install_fault_plugins(tmp_path_factory.mktemp("rank-faults"))


def _args(out: Path, *extra: str) -> list[str]:
    return [*TINY_ARGS, "train.batch_size=2", f"train.iters={ITERS}", f"runtime.output_dir={out}", *extra]


def _job_processes(rank_dir: Path) -> list[int]:
    """Pids of every live process started for the job whose records go to ``rank_dir`` (the launcher,
    the ranks and anything they started inherit the supervisor's environment)."""
    marker = f"SEMSEG_RANK_DIR={rank_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_job_ended_cleanly(out: Path, jobs, errors) -> str:
    """Non-zero exit, one summary line, nothing left running, the lock free; the line."""
    assert [job.returncode for job in jobs] == [1], errors[0][-3000:]
    lines = LINE.findall(errors[0])
    assert len(lines) == 1, errors[0][-3000:]
    time.sleep(0.5)  # a zombie being reaped by init
    assert _job_processes(out / "launch_logs") == []
    with open(out / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a process still held it
        fcntl.flock(handle, fcntl.LOCK_UN)
    return lines[0]


def _wait_for_step(out: Path, job, step: int) -> None:
    log = out / "train_log.jsonl"
    while job.poll() is None and (not log.exists() or len(log.read_text().splitlines()) < step):
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_raising_and_hung_processes_end_the_job_and_resume_is_exact(fault_site, tmp_path):
    env = plugin_env(fault_site)
    reference = tmp_path / "reference"
    errors, _ = wait_all(start_job(env, _args(reference)), 600)
    assert (reference / "model_last.safetensors").exists(), errors[0][-3000:]

    out = tmp_path / "run"
    # SIGKILL of rank 0 (the lock holder) from outside
    jobs = start_job(env, _args(out))
    _wait_for_step(out, jobs[0], 3)
    victim = json.loads((out / "launch_logs" / "rank-0.json").read_text())["pid"]
    os.kill(victim, signal.SIGKILL)
    errors, took = wait_all(jobs, 600)
    line = _assert_job_ended_cleanly(out, jobs, errors)
    assert line == f"rank 0 (pid {victim}) was killed by SIGKILL", line
    assert took < BOUND
    killed_at = read_metadata(out / "model_last.safetensors")["step"]

    # a sample only rank 1 reads raises, two steps into the resumed run
    jobs = start_job({**env, "SEMSEG_TEST_FAULT": "raise:1:4"}, [*_args(out), "--resume"])
    errors, _ = wait_all(jobs, 600)
    line = _assert_job_ended_cleanly(out, jobs, errors)
    record = json.loads((out / "launch_logs" / "rank-1.end.json").read_text())
    assert re.fullmatch(rf"rank 1 \(pid \d+\) failed in step {killed_at + 3}: DataError: .*corrupt record in shard 7.*",
                        line), line
    assert time.time() - record["time"] < BOUND
    raised_at = read_metadata(out / "model_last.safetensors")["step"]
    assert raised_at == killed_at + 2

    # rank 1 never returns a sample: the others wait in the gradient all-reduce until the timeout
    jobs = start_job({**env, "SEMSEG_TEST_FAULT": "hang:1:4"}, [*_args(out, "runtime.collective_timeout=5"), "--resume"])
    errors, _ = wait_all(jobs, 600)
    line = _assert_job_ended_cleanly(out, jobs, errors)
    record = json.loads((out / "launch_logs" / "rank-1.end.json").read_text())
    assert re.fullmatch(rf"rank 1 \(pid \d+\): no progress for \d+ s while loading its batch in step {raised_at + 3} "
                        r"\(runtime.collective_timeout=5\)", line), line
    assert time.time() - record["time"] < BOUND
    assert read_metadata(out / "model_last.safetensors")["step"] == raised_at + 2

    errors, _ = wait_all(start_job(env, [*_args(out), "--resume"]), 600)
    assert read_metadata(out / "model_last.safetensors")["step"] == ITERS, errors[0][-3000:]
    expected, got = load_file(str(reference / "model_last.safetensors")), load_file(str(out / "model_last.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key


@pytest.mark.slow
def test_a_run_resumes_with_another_process_count_keeping_the_global_batch(fault_site, tmp_path):
    env = plugin_env(fault_site)
    out = tmp_path / "run"
    last = out / "model_last.safetensors"
    errors, _ = wait_all(start_job(env, _args(out, "train.iters=3")), 600)
    assert read_metadata(last)["step"] == 3, errors[0][-3000:]
    assert {k: read_metadata(last)[k] for k in ("world_size", "global_batch")} == {"world_size": 2, "global_batch": 4}

    # 2 → 1 process: batch_size 2 per process becomes 4
    errors, _ = wait_all(start_job(env, [*_args(out, "train.iters=5"), "--resume"], nproc=1), 600)
    worker_log = (out / "launch_logs" / "workerlog.0").read_text(errors="replace")  # rank 0's warnings
    assert "train.batch_size 2 → 4 per process keeps the global batch of 4" in worker_log, errors[0][-3000:]
    assert {k: read_metadata(last)[k] for k in ("step", "world_size", "global_batch")} == \
        {"step": 5, "world_size": 1, "global_batch": 4}
    assert read_metadata(last)["config"]["train"]["batch_size"] == 4

    # 1 → 2 processes, from a config giving the single-process batch
    errors, _ = wait_all(start_job(env, [*_args(out, "train.iters=7", "train.batch_size=4"), "--resume"]), 600)
    worker_log = (out / "launch_logs" / "workerlog.0").read_text(errors="replace")  # rank 0's warnings
    assert "train.batch_size 4 → 2 per process keeps the global batch of 4" in worker_log, errors[0][-3000:]
    assert {k: read_metadata(last)[k] for k in ("step", "world_size", "global_batch")} == \
        {"step": 7, "world_size": 2, "global_batch": 4}
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))


def _config(tmp_path, **train):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(train)
    data["runtime"]["output_dir"] = str(tmp_path)
    return config_from_dict(data)


def test_a_global_batch_that_cannot_be_kept_is_refused_naming_the_keys(tiny_plugins, tmp_path):
    config = _config(tmp_path, batch_size=3, accumulate=1)
    meta = world_record(config, 2)  # global batch 6
    assert keep_global_batch(config, meta, 2) is config
    with pytest.warns(UserWarning, match=r"train.batch_size 3 → 2 per process keeps the global batch of 6"):
        assert keep_global_batch(config, meta, 3)["train"]["batch_size"] == 2
    assert config["train"]["batch_size"] == 3  # the caller's config is left as it was
    with pytest.raises(SemsegError, match=r"global batch of 6 .*4 processes cannot keep it .*change "
                                          r"train.accumulate or the process count"):
        keep_global_batch(config, meta, 4)
    assert keep_global_batch(config, {}, 4) is config  # a checkpoint from before the record: as before


@pytest.mark.parametrize("saved_sync", [True, False], ids=["syncbn-to-bn", "bn-to-syncbn"])
def test_batch_norm_and_sync_batch_norm_checkpoints_load_into_each_other(tiny_plugins, tmp_path, saved_sync):
    config = _config(tmp_path)
    paddle.seed(1)
    model = create_model(config)
    optimizer, scheduler = build_optimizer(model, config)
    model.train()
    sum(o.mean() for o in model(paddle.rand([2, 3, 32, 32]) * 255)).backward()  # BN statistics and momenta
    optimizer.step()
    for name, tensor in model.state_dict().items():
        if name.endswith(("_mean", "_variance")):
            tensor.set_value(paddle.rand(tensor.shape) + 0.5)
    sync = paddle.nn.SyncBatchNorm.convert_sync_batchnorm  # builds on CPU (only its forward needs a GPU)
    saved = sync(model) if saved_sync else model
    assert any(isinstance(m, paddle.nn.SyncBatchNorm) for m in saved.sublayers()) == saved_sync
    save_checkpoint(tmp_path / "ckpt.safetensors", saved, config, optimizer=optimizer, scheduler=scheduler, step=1)

    paddle.seed(2)
    fresh = create_model(config)
    fresh = fresh if saved_sync else sync(fresh)
    assert any(isinstance(m, paddle.nn.SyncBatchNorm) for m in fresh.sublayers()) != saved_sync
    fresh_optimizer, fresh_scheduler = build_optimizer(fresh, config)
    restore_training_state(tmp_path / "ckpt.safetensors", fresh, fresh_optimizer, fresh_scheduler)
    expected = model.state_dict()
    assert fresh.state_dict().keys() == expected.keys()
    for name, tensor in fresh.state_dict().items():
        assert np.array_equal(tensor.numpy(), expected[name].numpy()), name
    momenta, _ = portable_optimizer_state(fresh_optimizer, fresh)
    original, _ = portable_optimizer_state(optimizer, model)
    assert momenta and momenta.keys() == original.keys()
    for name, value in original.items():
        assert np.array_equal(np.asarray(momenta[name]), np.asarray(value)), name
