"""train.compile: the compiled training forward gives the dynamic step's losses and weights, and resumes exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle.api import train
from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.engine.compiled import plan_compile
from tests.helpers.tiny import TINY_CONFIG
from tests.helpers.training import train_until


def tiny(tmp_path, compile_mode: str, **train_options):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(compile=compile_mode, **train_options)
    data["runtime"]["output_dir"] = str(tmp_path)
    return config_from_dict(data)


def weights(folder):
    return load_file(str(folder / "model_last.safetensors"))


def test_a_compiled_run_has_the_dynamic_runs_losses_and_weights_and_resumes_exactly(tmp_path, tiny_plugins, capsys):
    options = dict(iters=5, save_interval=2, scale_range=[0.75, 1.25])
    dynamic = train(tiny(tmp_path / "dynamic", "off", **options))
    assert "train.compile=on" not in capsys.readouterr().err
    compiled = train(tiny(tmp_path / "compiled", "on", **options))
    assert "train.compile=on: the training forward runs as one static program" in capsys.readouterr().err
    assert compiled.losses == dynamic.losses and len(compiled.losses) == 5
    first, second = weights(tmp_path / "dynamic"), weights(tmp_path / "compiled")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    assert compiled.metrics.miou == dynamic.metrics.miou

    train_until(tiny(tmp_path / "resumed", "on", **options), 3)  # checkpoint at step 2, step 3 lost
    train(tiny(tmp_path / "resumed", "on", **options), resume=True)
    resumed = weights(tmp_path / "resumed")
    assert all(np.array_equal(resumed[k], second[k]) for k in second)


@pytest.mark.parametrize("world_size, amp, message", [
    (2, "off", "train.compile=on: the compiled training step runs single-process fp32 only, this run has 2 "
               "processes (data parallel); set train.compile=off (or auto)"),
    (1, "bf16", "train.compile=on: the compiled training step runs single-process fp32 only, this run has "
                "train.amp=bf16; set train.compile=off (or auto)"),
])
def test_on_is_refused_where_the_compiled_step_does_not_apply(world_size, amp, message):
    with pytest.raises(ConfigError) as caught:
        plan_compile("on", world_size=world_size, amp=amp, device="cpu")
    assert str(caught.value) == message


def test_auto_stays_dynamic_and_says_why():
    assert plan_compile("auto", world_size=1, amp="off", device="cpu").reason == (
        "train.compile=auto: dynamic step (measured slower than the dynamic step on CPU)")
    assert not plan_compile("auto", world_size=1, amp="off", device="gpu").enabled
    assert not plan_compile("auto", world_size=2, amp="off", device="cpu").enabled
    assert plan_compile("on", world_size=1, amp="off", device="cpu").enabled


def test_the_option_is_checked_with_the_config():
    with pytest.raises(ConfigError, match="train.compile"):
        config_from_dict({"train": {"compile": "yes"}})
