"""The run folder holds exactly one run: locks, clean logs, resume that touches nothing until it works."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file, save_file

from semsegpaddle.api import evaluate, train
from semsegpaddle.core.engine import trainer as engine
from semsegpaddle.core.engine.checkpoint import NonFiniteWeightsError, read_metadata, save_checkpoint
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.common.errors import SemsegError

from tests.helpers.tiny import TINY_CONFIG


def tiny(out, **train_options):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(train_options)
    data["runtime"]["output_dir"] = str(out)
    return config_from_dict(data)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def log_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def train_until(config, stop_step):
    """Train ``config``'s schedule but stop after ``stop_step`` steps, as a killed process would."""
    original = engine.train_loader

    def truncated(dataset, cfg, start, rank=0, world_size=1):
        loader = original(dataset, cfg, start, rank, world_size)
        for _, batch in zip(range(start, stop_step), loader):
            yield batch

    engine.train_loader = truncated
    try:
        return train(config)
    finally:
        engine.train_loader = original


def test_overwrite_leaves_only_the_new_runs_records(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=3, log_interval=1, eval_interval=1))
    assert log_steps(tmp_path / "train_log.jsonl") == [1, 2, 3]
    train(tiny(tmp_path, iters=2, log_interval=1), overwrite=True)
    assert log_steps(tmp_path / "train_log.jsonl") == [1, 2]
    assert log_steps(tmp_path / "eval_log.jsonl") == [2]
    assert read_metadata(tmp_path / "model_best.safetensors")["step"] == 2


def test_resume_logs_every_step_once(tmp_path, tiny_plugins):
    config = tiny(tmp_path, iters=6, save_interval=3, log_interval=1)
    train_until(config, 5)  # "killed" after step 5; the checkpoint holds step 3
    assert log_steps(tmp_path / "train_log.jsonl") == [1, 2, 3, 4, 5]
    assert read_metadata(tmp_path / "model_last.safetensors")["step"] == 3
    train(config, resume=True)
    assert log_steps(tmp_path / "train_log.jsonl") == [1, 2, 3, 4, 5, 6]


def test_a_resume_that_cannot_work_changes_nothing(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=3))
    before = snapshot(tmp_path)
    with pytest.raises(SemsegError, match="optimizer Momentum.*AdamW"):
        train(tiny(tmp_path, iters=6, optimizer="adamw"), resume=True)
    assert snapshot(tmp_path) == before


def test_a_finished_run_resumes_as_a_no_op(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=3))
    before = snapshot(tmp_path)
    result = train(tiny(tmp_path, iters=3, log_interval=1), resume=True)
    assert result.already_complete and result.steps == 3
    assert snapshot(tmp_path) == before


def test_resume_refuses_a_weights_only_or_damaged_checkpoint(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=2))
    last = tmp_path / "model_last.safetensors"
    last.write_bytes((tmp_path / "model_best.safetensors").read_bytes())
    before = snapshot(tmp_path)
    with pytest.raises(SemsegError, match="weights only, no training state"):
        train(tiny(tmp_path, iters=4), resume=True)
    last.write_bytes(before["model_last.safetensors"][:1000])  # torn by a disk error
    with pytest.raises(SemsegError, match="model_last.safetensors: not a semsegpaddle safetensors checkpoint"):
        train(tiny(tmp_path, iters=4), resume=True)
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "model_last.safetensors"} == \
        {k: v for k, v in before.items() if k != "model_last.safetensors"}


def test_output_dir_that_is_a_file_is_refused(tmp_path, tiny_plugins):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(SemsegError, match="notes.txt is a file, not a folder"):
        train(tiny(target, iters=2))
    assert target.read_text() == "mine"


def test_non_finite_weights_are_never_written(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=2, save_interval=1))
    with pytest.raises(SemsegError, match=r"NaN/Inf .* not saved|loss became") as info:
        train(tiny(tmp_path, iters=40, save_interval=1, lr=1e38, warmup_iters=0), resume=True)
    state = load_file(str(tmp_path / "model_last.safetensors"))
    assert all(np.isfinite(v).all() for v in state.values())
    saved_step = read_metadata(tmp_path / "model_last.safetensors")["step"]
    assert f"step {saved_step}" in str(info.value) or "not saved" in str(info.value)
    # the weights diverged while the loss was still finite: caught at the save, not at the loss
    assert "not saved" in str(info.value)


def test_non_finite_checkpoints_are_neither_saved_nor_loaded(tmp_path, tiny_plugins):
    config = tiny(tmp_path / "run", iters=2)
    train(config)
    from semsegpaddle.api import create_model

    model = create_model(config)
    first = next(p for p in model.parameters() if not p.stop_gradient)
    first.set_value(paddle.full_like(first, float("nan")))
    with pytest.raises(NonFiniteWeightsError, match="not saved"):
        save_checkpoint(tmp_path / "bad.safetensors", model, config, step=1)
    assert not (tmp_path / "bad.safetensors").exists()
    best = tmp_path / "run" / "model_best.safetensors"
    state = load_file(str(best))
    key = next(iter(state))
    state[key] = np.full_like(state[key], np.inf)
    poisoned = tmp_path / "poisoned.safetensors"
    from safetensors import safe_open

    with safe_open(str(best), framework="numpy") as handle:
        save_file(state, str(poisoned), metadata=handle.metadata())
    with pytest.raises(NonFiniteWeightsError, match="poisoned.safetensors: 1 tensors hold NaN/Inf"):
        evaluate(config, poisoned)


def test_identical_runs_write_identical_files(tmp_path, tiny_plugins):
    train(tiny(tmp_path, iters=3))
    first = snapshot(tmp_path)
    train(tiny(tmp_path, iters=3), overwrite=True)
    again = snapshot(tmp_path)
    for name in ("model_last.safetensors", "model_best.safetensors", "config.yaml", "metrics.json"):
        assert again[name] == first[name], name
