"""Training options for real runs: schedules, parameter groups, Nesterov, clipping, gradient
accumulation, AMP choices, SyncBatchNorm on the GPU path, numbered checkpoints, versions,
VisualDL scalars, the progress bar, and the `--nproc` hand-over."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import paddle
import pytest
from paddle import nn
from safetensors.numpy import load_file

from semsegpaddle import __version__, hookimpl
from semsegpaddle.api import create_model, train
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.common import runtime
from semsegpaddle.core.engine.amp import autocast_works, check_amp, make_amp_plan
from semsegpaddle.core.engine.checkpoint import read_metadata
from semsegpaddle.core.engine.launch import LaunchPlan, check_plan, launcher_command
from semsegpaddle.core.engine.optim import build_optimizer, build_schedule
from semsegpaddle.core.common.errors import ConfigError, SemsegError
from semsegpaddle.core.model.interfaces import Decoder
from semsegpaddle.core.plugin import manager as plugin_module

from tests.helpers.tiny import TINY_CONFIG, TinyPlugin
from tests.helpers.cli import SEMSEG, invoke, semseg



class GroupNormHead(Decoder):
    """3×3 conv + GroupNorm + ReLU + 1×1 classifier on the last level: a decoder without BatchNorm."""

    def __init__(self, feature_info, num_classes: int, *, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2D(feature_info.channels[-1], channels, 3, padding=1)
        self.norm = nn.GroupNorm(2, channels)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features):
        return self.classifier(nn.functional.relu(self.norm(self.conv(features[-1]))))


class GroupNormPlugin:
    """In-memory plugin adding the GroupNorm decoder."""

    @hookimpl
    def semseg_register_decoders(self, register):
        register("gn_head", GroupNormHead, options={"channels": "hidden channels"})


@pytest.fixture
def plugins():
    """The installed plugins plus the tiny backbone/dataset and the GroupNorm decoder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test"), (GroupNormPlugin(), "gn-test")])
    plugin_module.reset_plugins(state)
    try:
        yield state
    finally:
        plugin_module.reset_plugins(None)


def tiny(out, decoder=None, runtime_options=None, **train_options):
    data = json.loads(json.dumps(TINY_CONFIG))
    if decoder:
        data["model"]["decoder"] = decoder
    data["train"].update(train_options)
    data["runtime"].update(runtime_options or {})
    data["runtime"]["output_dir"] = str(out)
    return config_from_dict(data)


def tensors(path):
    return load_file(str(path))


# --- schedules ------------------------------------------------------------------------------------


def lr_curve(config, steps):
    scheduler = build_schedule(config)
    out = []
    for _ in range(steps):
        out.append(scheduler())
        scheduler.step()
    return out


def test_poly_cosine_and_step_schedules_follow_their_formulas_after_a_linear_warm_up(tmp_path, plugins):
    base = {"iters": 20, "lr": 0.1, "warmup_iters": 4}
    poly = lr_curve(tiny(tmp_path, **base, schedule="poly", power=0.9, end_lr=0.001), 20)
    cosine = lr_curve(tiny(tmp_path, **base, schedule="cosine", end_lr=0.001), 20)
    step = lr_curve(tiny(tmp_path, **base, schedule="step", lr_steps=[10, 15], lr_gamma=0.5), 20)
    for curve in (poly, cosine, step):  # step s uses the rate of epoch s-1: 0, lr/4, lr/2, 3lr/4, then lr
        assert curve[:5] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    for s in range(4, 20):
        t = (s - 4) / 16
        assert poly[s] == pytest.approx((0.1 - 0.001) * (1 - t) ** 0.9 + 0.001)
        assert cosine[s] == pytest.approx(0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t)) / 2)
    # lr_steps are absolute steps: the rate drops after step 10 and after step 15
    assert step[9] == pytest.approx(0.1) and step[10] == pytest.approx(0.05)
    assert step[14] == pytest.approx(0.05) and step[15] == pytest.approx(0.025)


@pytest.mark.parametrize("options, message", [
    ({"schedule": "step"}, r"'train.lr_steps' is empty"),
    ({"schedule": "step", "lr_steps": [3, 30], "warmup_iters": 4}, r"'train.lr_steps' expects steps between"),
    ({"schedule": "step", "lr_steps": [5, 20]}, r"'train.lr_steps' expects steps between"),
])
def test_a_step_schedule_that_cannot_work_is_a_one_line_config_error(tmp_path, plugins, options, message):
    with pytest.raises(ConfigError, match=message):
        build_schedule(tiny(tmp_path, iters=20, **options))


def test_lr_steps_must_increase(tmp_path, plugins):
    with pytest.raises(ConfigError, match=r"'train.lr_steps' expects a list of increasing step numbers"):
        tiny(tmp_path, lr_steps=[10, 5])


# --- parameter groups, Nesterov, clipping ---------------------------------------------------------


def _one_step(config, gradient_scale=0.0, seed=0):
    """Build the config's model and optimizer, apply one step, return (before, after, model)."""
    paddle.seed(seed)
    model = create_model(config)
    optimizer, _ = build_optimizer(model, config)
    model.train()
    before = {n: p.numpy().copy() for n, p in model.named_parameters() if not p.stop_gradient}
    outputs = model(paddle.rand([2, 3, 32, 32]) * 255)
    loss = sum(o.mean() for o in (outputs if isinstance(outputs, list) else [outputs])) * gradient_scale
    loss.backward()
    optimizer.step()
    after = {n: p.numpy().copy() for n, p in model.named_parameters() if not p.stop_gradient}
    return before, after


def test_norm_and_bias_parameters_get_no_decay_when_switched_off(tmp_path, plugins):
    """With zero gradients only weight decay moves a parameter: p ← p − lr·wd·p."""
    options = dict(lr=0.1, weight_decay=0.5, warmup_iters=0)
    decoder = {"name": "gn_head", "channels": 8}
    before, after = _one_step(tiny(tmp_path, decoder, decay_norm_bias=False, **options))
    for name in before:
        expected = before[name] * (1 - 0.1 * 0.5) if before[name].ndim > 1 else before[name]
        np.testing.assert_allclose(after[name], expected, rtol=1e-5, atol=1e-7, err_msg=name)
    assert any(before[n].ndim == 1 and np.abs(before[n]).max() > 0 for n in before), "GroupNorm weights are ones"
    before, after = _one_step(tiny(tmp_path, decoder, decay_norm_bias=True, **options))
    norm = "decoder.norm.weight"
    np.testing.assert_allclose(after[norm], before[norm] * (1 - 0.05), rtol=1e-6)


def test_backbone_lr_mult_scales_the_backbones_steps_only(tmp_path, plugins):
    options = dict(lr=0.05, weight_decay=0.0, warmup_iters=0, momentum=0.0)
    decoder = {"name": "gn_head"}
    before, one = _one_step(tiny(tmp_path, decoder, **options), gradient_scale=1.0)
    _, tenth = _one_step(tiny(tmp_path, decoder, backbone_lr_mult=0.1, **options), gradient_scale=1.0)
    moved = 0
    for name in before:
        full, scaled = one[name] - before[name], tenth[name] - before[name]
        factor = 0.1 if name.startswith("backbone.") else 1.0
        np.testing.assert_allclose(scaled, factor * full, rtol=1e-4, atol=3e-7, err_msg=name)
        moved += name.startswith("backbone.") and np.abs(full).max() > 0
    assert moved, "the backbone received gradients"


def test_nesterov_first_step_is_one_plus_momentum_times_plain_sgd(tmp_path, plugins):
    options = dict(lr=0.05, weight_decay=0.0, warmup_iters=0, momentum=0.9)
    before, plain = _one_step(tiny(tmp_path, **options), gradient_scale=1.0)
    _, nesterov = _one_step(tiny(tmp_path, nesterov=True, **options), gradient_scale=1.0)
    for name in before:
        np.testing.assert_allclose(nesterov[name] - before[name], 1.9 * (plain[name] - before[name]),
                                   rtol=1e-4, atol=3e-7, err_msg=name)


def test_gradients_are_clipped_to_the_global_norm(tmp_path, plugins):
    options = dict(lr=1.0, weight_decay=0.0, warmup_iters=0, momentum=0.0)
    before, free = _one_step(tiny(tmp_path, **options), gradient_scale=1000.0)
    _, clipped = _one_step(tiny(tmp_path, clip_grad_norm=0.5, **options), gradient_scale=1000.0)

    def norm(state):
        return math.sqrt(sum(float(((state[n] - before[n]).astype(np.float64) ** 2).sum()) for n in before))

    assert norm(free) > 5.0  # the unclipped step: lr × the gradient's norm
    assert norm(clipped) == pytest.approx(0.5, rel=1e-4)


# --- gradient accumulation ------------------------------------------------------------------------


def test_accumulating_4_micro_batches_of_2_equals_a_batch_of_8(tmp_path, plugins):
    """A model without BatchNorm (GroupNorm), every image with the same number of labelled pixels:
    after 3 steps the weights agree to 1e-6 (3e-8 seen: float32 sums in another order)."""
    decoder = {"name": "gn_head", "channels": 8}
    common = dict(iters=3, lr=0.05, warmup_iters=0, flip=True, scale_range=[1.0, 1.0])
    train(tiny(tmp_path / "b8", decoder, batch_size=8, **common))
    train(tiny(tmp_path / "b2x4", decoder, batch_size=2, accumulate=4, **common))
    train(tiny(tmp_path / "b2", decoder, batch_size=2, **common))
    big, accumulated, small = (tensors(tmp_path / d / "model_last.safetensors") for d in ("b8", "b2x4", "b2"))
    trainable = read_metadata(tmp_path / "b8" / "model_last.safetensors")["trainable"]
    worst = max(float(np.abs(big[k] - accumulated[k]).max()) for k in trainable)
    assert worst < 1e-6, worst
    # the comparison can fail: a plain batch of 2 lands elsewhere
    assert max(float(np.abs(big[k] - small[k]).max()) for k in trainable) > 1e-3
    log = [json.loads(line) for line in (tmp_path / "b2x4" / "train_log.jsonl").read_text().splitlines()]
    big_log = [json.loads(line) for line in (tmp_path / "b8" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] == pytest.approx(big_log[-1]["loss"], rel=1e-5)


# --- mixed precision ------------------------------------------------------------------------------


def test_amp_choices_follow_what_the_device_can_do(monkeypatch):
    check_amp("off", "cpu")
    with pytest.raises(ConfigError, match=r"^train.amp=fp16 needs a GPU .* set train.amp=off$"):
        check_amp("fp16", "cpu")
    # the GPU path, with the device probe mocked: fp16 gets a loss scaler, bf16 none
    monkeypatch.setattr("semsegpaddle.core.engine.amp.autocast_works", lambda device, dtype: device == "gpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Paddle: a scaler is only active on CUDA places
        fp16 = make_amp_plan("fp16", "gpu")
    assert fp16.mode == "fp16" and isinstance(fp16.scaler, paddle.amp.GradScaler)
    bf16 = make_amp_plan("bf16", "gpu")
    assert bf16.mode == "bf16" and bf16.scaler is None
    assert make_amp_plan(False, "cpu").mode == "off"  # YAML reads a bare `off` as false
    with pytest.raises(ConfigError, match=r"train.amp=bf16: Paddle .* cannot train in bfloat16 on cpu"):
        make_amp_plan("bf16", "cpu")


@pytest.mark.parametrize("mode", ["fp16", "bf16"])
def test_amp_that_cannot_run_on_this_cpu_is_one_line_and_changes_nothing(tmp_path, mode):
    out = tmp_path / "run"
    result = semseg(None, "train", f"train.amp={mode}", "runtime.device=cpu", f"runtime.output_dir={out}",
                    timeout=120)
    if mode == "bf16" and autocast_works("cpu", "bfloat16"):  # a Paddle that does train in bf16 on CPU
        pytest.skip("this Paddle runs bfloat16 on CPU; the training tests cover it")
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: train.amp={mode}") and last.endswith("set train.amp=off"), last
    assert "Traceback" not in result.stderr
    assert not out.exists()


# --- SyncBatchNorm on the GPU path ----------------------------------------------------------------


def test_multi_gpu_jobs_convert_every_batch_norm_to_sync_batch_norm(monkeypatch, plugins, tmp_path):
    monkeypatch.setattr(runtime, "gpu_available", lambda: True)
    device = runtime.choose_device("auto")
    assert device == "gpu"
    config = tiny(tmp_path)  # deeplabv3: ASPP and projection with BatchNorm
    model = create_model(config)
    count = sum(isinstance(m, nn.BatchNorm2D) for m in model.sublayers())
    assert count > 0
    one_gpu = runtime.convert_batch_norm(model, device, 1)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in one_gpu.sublayers())
    converted = runtime.convert_batch_norm(create_model(config), device, 2)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.sublayers()) == count
    assert not any(type(m) is nn.BatchNorm2D for m in converted.sublayers())
    monkeypatch.setattr(runtime, "gpu_available", lambda: False)
    assert runtime.choose_device("auto") == "cpu"
    with pytest.raises(ValueError, match="runtime.device is 'gpu' but this Paddle build sees no GPU"):
        runtime.choose_device("gpu")


# --- checkpoints: keep_last, fsync, newest complete -----------------------------------------------


def numbered(folder):
    return sorted(int(p.name[6:-12]) for p in folder.glob("model_[0-9]*.safetensors"))


def test_keep_last_keeps_the_newest_numbered_checkpoints_each_fsynced_before_its_rename(
        tmp_path, plugins, monkeypatch):
    from semsegpaddle.core.common import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(src), os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "run"
    train(tiny(out, iters=6, save_interval=1, runtime_options={"keep_last": 2}))
    assert numbered(out) == [5, 6]
    assert (out / "model_last.safetensors").read_bytes() == (out / "model_6.safetensors").read_bytes()
    assert read_metadata(out / "model_5.safetensors")["step"] == 5
    for name in ("model_3.safetensors", "model_6.safetensors", "model_last.safetensors"):
        renames = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == name]
        assert renames, name
        for i in renames:
            assert ("fsync", events[i][1]) in events[:i], f"{name} renamed before its data was fsynced"


def test_resume_starts_from_the_newest_complete_checkpoint(tmp_path, plugins):
    from tests.engine.test_run_folder import train_until

    keep = {"keep_last": 3}
    reference = tmp_path / "reference"
    train(tiny(reference, iters=6, save_interval=1, runtime_options=keep))
    out = tmp_path / "run"
    train_until(tiny(out, iters=6, save_interval=1, runtime_options=keep), 4)  # killed after step 4
    # the last checkpoint is damaged (torn by a disk error) and model_4 too: model_3 is the newest complete one
    (out / "model_last.safetensors").write_bytes(b"\0" * 100)
    (out / "model_4.safetensors").write_bytes((out / "model_4.safetensors").read_bytes()[:5000])
    with pytest.warns(UserWarning, match="passed over an unusable checkpoint"):
        result = train(tiny(out, iters=6, save_interval=1, runtime_options=keep), resume=True)
    assert result.steps == 6 and result.losses and len(result.losses) == 3
    assert numbered(out) == [4, 5, 6]
    for name in ("model_last.safetensors", "model_5.safetensors", "model_6.safetensors"):
        got, expected = tensors(out / name), tensors(reference / name)
        assert got.keys() == expected.keys()
        assert all(np.array_equal(got[k], expected[k]) for k in got), name  # bitwise
        assert read_metadata(out / name)["step"] == read_metadata(reference / name)["step"]
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # every step logged once


def test_an_older_last_checkpoint_loses_to_a_newer_numbered_one(tmp_path, plugins):
    out = tmp_path / "run"
    train(tiny(out, iters=4, save_interval=1, runtime_options={"keep_last": 2}))
    # a kill between writing model_4 and publishing it as the last checkpoint
    (out / "model_last.safetensors").unlink()
    os.link(out / "model_3.safetensors", out / "model_last.safetensors")
    result = train(tiny(out, iters=4, save_interval=1, runtime_options={"keep_last": 2}), resume=True)
    assert result.already_complete and result.steps == 4


def test_overwrite_removes_numbered_checkpoints_and_versions(tmp_path, plugins):
    out = tmp_path / "run"
    train(tiny(out, iters=3, save_interval=1, runtime_options={"keep_last": 5}))
    assert numbered(out) == [1, 2, 3]
    train(tiny(out, iters=2), overwrite=True)
    assert numbered(out) == []
    assert len(json.loads((out / "versions.json").read_text())) == 1


def test_a_folder_holding_only_numbered_checkpoints_holds_a_run(tmp_path, plugins):
    out = tmp_path / "run"
    train(tiny(out, iters=2, save_interval=1, runtime_options={"keep_last": 1}))
    (out / "model_last.safetensors").unlink()
    with pytest.raises(SemsegError, match="already holds a training run"):
        train(tiny(out, iters=2))


# --- versions, logs, VisualDL, progress ------------------------------------------------------------


def test_versions_json_records_paddle_the_package_and_every_plugin_per_session(tmp_path, plugins):
    from tests.engine.test_run_folder import train_until

    out = tmp_path / "run"
    config = tiny(out, iters=4, save_interval=2)
    train_until(config, 3)
    train(config, resume=True)
    sessions = json.loads((out / "versions.json").read_text())
    assert [s["start_step"] for s in sessions] == [0, 2]
    record = sessions[-1]
    assert record["paddle"]["version"] == paddle.__version__ and record["semsegpaddle"] == __version__
    assert record["plugins"]["tiny-test"] == {"distribution": "-", "version": "-"}
    assert record["plugins"]["resnet"] == {"distribution": "semsegpaddle", "version": __version__}
    assert set(record["plugins"]) >= {"gn-test", "deeplabv3", "synthetic", "losses"}


def test_visualdl_scalars_read_back_with_visualdl_and_survive_a_resume(tmp_path, plugins):
    from semsegpaddle.plugins.loggers.visualdl_impl import read_scalars, record_files
    from tests.engine.test_run_folder import train_until

    out = tmp_path / "run"
    config = tiny(out, iters=4, save_interval=2, log_interval=1, eval_interval=2, runtime_options={"visualdl": True})
    train_until(config, 3)  # killed after step 3; the checkpoint holds step 2
    train(config, resume=True)
    files = record_files(out / "visualdl")
    assert len(files) == 1  # VisualDL shows the newest file of a folder: it holds the whole run
    scalars = read_scalars(files[0])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s for s, _, _ in scalars["train/loss"]] == [1, 2, 3, 4]  # step 3 replayed, recorded once
    assert [v for _, v, _ in scalars["train/loss"]] == pytest.approx([r["loss"] for r in log], rel=1e-6)
    assert [v for _, v, _ in scalars["train/lr"]] == pytest.approx([r["lr"] for r in log], rel=1e-6)
    assert {"train/loss_main", "train/step_time", "train/data_time", "eval/mIoU"} <= set(scalars)
    evals = [json.loads(line) for line in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [s for s, _, _ in scalars["eval/mIoU"]] == [2, 4]
    assert scalars["eval/mIoU"][-1][1] == pytest.approx(evals[-1]["mIoU"], abs=1e-6)
    for name in ("background", "bright", "dark"):
        assert scalars[f"eval/IoU/{name}"][-1][1] == pytest.approx(evals[-1]["per_class"][name]["IoU"], abs=1e-6)


def test_visualdl_requested_without_visualdl_installed_is_a_one_line_error(tmp_path, plugins, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"runtime.visualdl is true but VisualDL is not installed: pip install"):
        train(tiny(tmp_path / "run", runtime_options={"visualdl": True}))
    assert not (tmp_path / "run").exists()


def test_progress_bar_shows_loss_lr_rate_eta_and_data_wait_and_the_log_times_steps(tmp_path, plugins, capsys):
    train(tiny(tmp_path, iters=3, log_interval=1, runtime_options={"progress": True}))
    err = capsys.readouterr().err
    bar = [line for line in re.split(r"[\r\n]", err) if line.startswith("train:")][-1]
    assert re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(it/s|s/it), loss=[\d.]+, lr=[\d.e+-]+, data=[\d.]+s\]", bar), bar
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert all(r["step_time"] > 0 and 0 <= r["data_time"] <= r["step_time"] for r in log), log


def test_config_shows_every_engine_option_with_its_default():
    result = invoke("config")
    assert result.exit_code == 0, result.output
    for line in ["  nesterov: false", "  schedule: poly", "  end_lr: 0.0", "  lr_steps: []", "  lr_gamma: 0.1",
                 "  backbone_lr_mult: 1.0", "  decay_norm_bias: true", "  accumulate: 1", "  clip_grad_norm: 0.0",
                 "  amp: 'off'", "  keep_last: 0", "  visualdl: false"]:
        assert line in result.output.splitlines(), line


# --- the launcher hand-over -------------------------------------------------------------------------


def test_launcher_command_hands_everything_to_paddles_launcher(tmp_path):
    command = launcher_command(LaunchPlan(2), ["cfg.yaml", "train.iters=5", "--resume"], tmp_path)
    assert command[:3] == [sys.executable, "-m", "paddle.distributed.launch"]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[command.index("--log_dir") + 1] == str(tmp_path / "launch_logs")
    assert "--nnodes" not in command and "--master" not in command
    tail = command[command.index("--log_dir") + 2:]
    assert tail == [sys.executable, "-u", "-m", "semsegpaddle.cli", "train", "cfg.yaml", "train.iters=5", "--resume"]
    multi = launcher_command(LaunchPlan(1, 2, "10.0.0.1:6000", 1), [], tmp_path, debug=True)
    assert multi[multi.index("--nnodes") + 1] == "2" and multi[multi.index("--master") + 1] == "10.0.0.1:6000"
    assert multi[multi.index("--rank") + 1] == "1" and multi[multi.index("--log_dir") + 1] == str(
        tmp_path / "launch_logs" / "node1")
    assert multi[-3:] == ["semsegpaddle.cli", "--debug", "train"]


@pytest.mark.parametrize("plan, message", [
    (LaunchPlan(0), "--nproc expects a number ≥ 1"),
    (LaunchPlan(1, 2), "--nnodes > 1 needs --master HOST:PORT"),
    (LaunchPlan(1, 2, "localhost"), "--master expects HOST:PORT"),
    (LaunchPlan(1, 2, "127.0.0.1:6000", 2), r"--rank expects a node rank in 0..1"),
])
def test_launch_options_that_cannot_work_are_refused(plan, message):
    with pytest.raises(SemsegError, match=message):
        check_plan(plan)


def test_launch_options_inside_a_launched_job_are_refused(monkeypatch):
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    with pytest.raises(SemsegError, match="already started"):
        check_plan(LaunchPlan(2))


def test_nproc_refuses_a_folder_holding_a_run_before_starting_anything(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_last.safetensors").write_bytes(b"x")
    result = semseg(None, "train", f"runtime.output_dir={out}", "--nproc", "2", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {out} already holds a training run")
    assert not (out / "launch_logs").exists()


@pytest.mark.slow
def test_nproc_2_trains_data_parallel_and_both_processes_end_with_the_saved_weights(tmp_path):
    from semsegpaddle.core.engine.agreement import weights_digest

    out = tmp_path / "run"
    args = ["train", "model.backbone.output_stride=32", "train.iters=3", "train.batch_size=2", "train.accumulate=2",
            "train.crop_size=[48,48]", "dataset.image_size=48", "dataset.num_train=8", "dataset.num_val=4",
            "eval.batch_size=2", "runtime.progress=false", f"runtime.output_dir={out}", "--nproc", "2"]
    result = semseg(None, *args, timeout=600, cwd=tmp_path)
    logs = {p.name: p.read_text(errors="replace") for p in (out / "launch_logs").glob("workerlog.*")}
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:], logs)
    assert "outputs in" in result.stdout  # the launcher shows rank 0's output
    digests = [re.search(r"rank (\d)/2: trained weights sha256 (\w+)", logs[f"workerlog.{r}"]).groups()
               for r in (0, 1)]
    last = out / "model_last.safetensors"
    saved = weights_digest(load_file(str(last)), read_metadata(last)["trainable"])
    assert digests == [("0", saved), ("1", saved)]
    assert json.loads((out / "versions.json").read_text())[0]["world_size"] == 2


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_every_process_after_the_same_step_then_resume(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    args = ["model.backbone.output_stride=32", "train.batch_size=2", "train.crop_size=[48,48]", "dataset.image_size=48",
            "dataset.num_train=8", "dataset.num_val=4", "eval.batch_size=2", "train.save_interval=3",
            "runtime.progress=false", f"runtime.output_dir={out}"]
    launcher = subprocess.Popen([*SEMSEG, "train", *args, "train.iters=100000",
                                 "--nproc", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "model_last.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        launcher.send_signal(signal.SIGTERM)  # the process became the launcher: it forwards SIGTERM
        launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == signal.SIGTERM  # Paddle's launcher exits with the signal's number
    stops = [re.search(r"stopped by SIGTERM after step (\d+)", (out / "launch_logs" / f"workerlog.{r}").read_text())
             for r in (0, 1)]
    assert all(stops), [(out / "launch_logs" / f"workerlog.{r}").read_text()[-1500:] for r in (0, 1)]
    step = int(stops[0].group(1))
    assert int(stops[1].group(1)) == step
    assert read_metadata(out / "model_last.safetensors")["step"] == step
    resumed = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "train", *args, f"train.iters={step + 2}",
                              "--resume", "--nproc", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert read_metadata(out / "model_last.safetensors")["step"] == step + 2
    assert [s["start_step"] for s in json.loads((out / "versions.json").read_text())] == [0, step]
