"""The engine: learning really happens, checkpoints are atomic, resume continues exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle.api import evaluate, train
from semsegpaddle.core.common import atomic
from semsegpaddle.core.engine.checkpoint import read_metadata, save_weights
from semsegpaddle.core.config.loader import config_from_dict, load_config
from semsegpaddle.core.data.datasets import StepBatches

from tests.helpers.tiny import TINY_CONFIG


def tiny(tmp_path, **train):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(train)
    data["runtime"]["output_dir"] = str(tmp_path)
    return config_from_dict(data)


def test_synthetic_training_learns(tmp_path):
    """The quick start's model, 40% of its schedule: loss falls and mIoU beats chance widely."""
    config = load_config("synthetic_deeplabv3", [
        "train.iters=250", "dataset.num_val=32", "runtime.progress=false", "runtime.threads=2",
        f"runtime.output_dir={tmp_path}",
    ])
    result = train(config)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.6 * first, (first, last)
    # Chance: predicting the majority class everywhere gives mIoU = background IoU / classes ≤ 1/6.
    assert result.metrics.miou > 0.4, result.metrics.table()
    assert json.loads((tmp_path / "metrics.json").read_text())["mIoU"] == pytest.approx(result.metrics.miou, abs=1e-6)


def test_checkpoint_embeds_config_and_evaluates_identically(tmp_path, tiny_plugins):
    config = tiny(tmp_path, iters=3)
    result = train(config)
    meta = read_metadata(tmp_path / "model_best.safetensors")
    assert meta["format"] == "semsegpaddle-model" and meta["step"] == 3
    assert meta["config"]["model"]["backbone"]["name"] == "tiny"
    again = evaluate(config, tmp_path / "model_best.safetensors")
    assert again.miou == pytest.approx(result.metrics.miou)


def test_checkpoint_write_is_atomic(tmp_path, tiny_plugins, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temp file behind."""
    config = tiny(tmp_path, iters=2)
    train(config)
    path = tmp_path / "model_last.safetensors"
    before = {k: v.copy() for k, v in load_file(str(path)).items()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    from semsegpaddle.api import create_model

    model = create_model(config)
    with pytest.raises(OSError, match="disk full"):
        save_weights(model, path, config)
    after = load_file(str(path))
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_resume_continues_to_the_same_weights(tmp_path, tiny_plugins):
    full = tiny(tmp_path / "full", iters=6, save_interval=3)
    train(full)
    part = tiny(tmp_path / "part", iters=6, save_interval=3)
    part_first = config_from_dict({**part, "train": {**part["train"], "iters": 6}})
    # interrupt after step 3 by training a 6-step schedule for 3 steps, then resume
    _train_until(part_first, 3)
    train(part, resume=True)
    a = load_file(str(tmp_path / "full" / "model_last.safetensors"))
    b = load_file(str(tmp_path / "part" / "model_last.safetensors"))
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-6


def _train_until(config, stop_step):
    from semsegpaddle.core.engine import trainer as engine

    original = engine.train_loader

    def truncated(dataset, cfg, start, rank=0, world_size=1):
        loader = original(dataset, cfg, start, rank, world_size)
        return (batch for step, batch in zip(range(start, stop_step), loader))

    engine.train_loader = truncated
    try:
        train(config)
    finally:
        engine.train_loader = original


def test_resume_without_state_is_a_clear_error(tmp_path, tiny_plugins):
    from semsegpaddle.core.common.errors import SemsegError

    with pytest.raises(SemsegError, match="cannot resume"):
        train(tiny(tmp_path, iters=2), resume=True)


def test_step_batches_are_a_pure_function_of_the_step():
    whole = list(StepBatches(10, 4, seed=1, start=0, total=6))
    tail = list(StepBatches(10, 4, seed=1, start=3, total=6))
    assert whole[3:] == tail
    seen = [index for batch in whole[:5] for index, _ in batch][:10]
    assert sorted(seen) == list(range(10))  # the first epoch visits every sample once
    rank0 = list(StepBatches(10, 2, seed=1, start=0, total=2, rank=0, world_size=2))
    rank1 = list(StepBatches(10, 2, seed=1, start=0, total=2, rank=1, world_size=2))
    assert not set(rank0[0]) & set(rank1[0])


def test_a_new_run_never_replaces_an_earlier_one_by_accident(tmp_path, tiny_plugins):
    from semsegpaddle.core.common.errors import SemsegError

    config = tiny(tmp_path, iters=2)
    train(config)
    before = (tmp_path / "model_last.safetensors").read_bytes()
    with pytest.raises(SemsegError, match="already holds a training run.*--resume.*--overwrite"):
        train(config)
    assert (tmp_path / "model_last.safetensors").read_bytes() == before
    train(config, overwrite=True)  # asked for explicitly
