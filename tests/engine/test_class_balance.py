"""Class balance in training runs: ``class_weights: auto`` reaches the loss, the run folder and the
checkpoint; a resume keeps the checkpoint's weights (saying so when the data changed) and, with
rare-class sampling too, ends bitwise equal to an uninterrupted run, also after SIGKILL."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle.api import train
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data import class_stats
from semsegpaddle.core.data.class_balance import class_weights, rare_class_probabilities
from semsegpaddle.core.engine.checkpoint import read_metadata
from semsegpaddle.core.engine.class_balance import ClassBalanceWarning

from tests.helpers.cli import plugin_env, semseg
from tests.helpers.tiny import TINY_CONFIG, TwoSquares
from tests.helpers.training import train_until


def tiny(tmp_path, loss=None, dataset=None, **train_options):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(train_options)
    data["dataset"].update(dataset or {})
    data["runtime"]["output_dir"] = str(tmp_path)
    if loss is not None:
        data["loss"] = {"main": [loss], "aux": ["cross_entropy"]}
    return config_from_dict(data)


def hand_counts(count: int = 8) -> np.ndarray:
    """TwoSquares' per-image class pixels, counted here with NumPy alone."""
    dataset = TwoSquares("train", count=count)
    rows = []
    for index in range(count):
        label = dataset[index][1]
        rows.append([int((label == c).sum()) for c in range(3)])
    return np.array(rows)


def test_auto_weights_reach_the_loss_the_run_folder_and_the_checkpoint(tmp_path, tiny_plugins, capsys):
    auto = tiny(tmp_path / "auto", loss={"name": "cross_entropy", "class_weights": "auto",
                                         "class_weights_method": "median_frequency"}, iters=2, sampler="rare_class")
    result = train(auto)
    expected = class_weights(hand_counts(), "median_frequency").tolist()
    record = json.loads((tmp_path / "auto" / "class_balance.json").read_text())
    assert record["class_weights"]["loss.main.0"]["weights"] == pytest.approx(expected, rel=1e-12)
    assert record["class_weights"]["loss.main.0"]["method"] == "median_frequency"
    assert [row["pixels"] for row in record["classes"]] == hand_counts().sum(axis=0).tolist()
    probabilities = rare_class_probabilities(hand_counts(), 0.01).tolist()
    assert record["sampler"]["class_probabilities"] == pytest.approx(probabilities, rel=1e-12)
    saved = read_metadata(tmp_path / "auto" / "model_last.safetensors")["class_balance"]
    assert saved["class_weights"]["loss.main.0"]["weights"] == record["class_weights"]["loss.main.0"]["weights"]
    assert list((tmp_path / "auto").glob("class_stats-*.npz"))  # cached in the run folder (no train.cache_dir)
    table = capsys.readouterr().out
    assert "class balance of the training split (8 images, counted" in table
    header = next(line for line in table.splitlines() if line.startswith("class  "))
    assert header.split() == ["class", "pixels", "share", "images", "weight", "P(class)"]

    # the loss used exactly these weights: the same run with them written out gives the same losses
    listed = tiny(tmp_path / "listed", loss={"name": "cross_entropy", "class_weights": expected}, iters=2,
                  sampler="rare_class")
    assert train(listed).losses == result.losses
    plain = tiny(tmp_path / "plain", iters=2, sampler="rare_class")
    assert train(plain).losses[0] != result.losses[0]


def test_a_resume_with_both_features_is_bitwise_exact_and_counts_nothing_again(tmp_path, tiny_plugins, monkeypatch):
    options = dict(loss={"name": "cross_entropy", "class_weights": "auto", "class_weights_method": "enet"},
                   iters=6, save_interval=2, sampler="rare_class", sampler_temperature=0.1, num_workers=2,
                   scale_range=[0.75, 1.25])
    train(tiny(tmp_path / "full", **options))
    train_until(tiny(tmp_path / "part", **options), 3)  # checkpoint at step 2, steps 3.. lost

    def no_recount(*args, **kwargs):
        raise AssertionError("the class statistics were counted again")

    monkeypatch.setattr(class_stats, "count_classes", no_recount)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassBalanceWarning)  # nothing changed: nothing to say
        train(tiny(tmp_path / "part", **options), resume=True)
    full, part = (load_file(str(tmp_path / run / "model_last.safetensors")) for run in ("full", "part"))
    assert full.keys() == part.keys()
    assert all(np.array_equal(full[k], part[k]) for k in full)
    record = json.loads((tmp_path / "part" / "class_balance.json").read_text())
    assert record["class_weights"]["loss.main.0"]["source"] == "checkpoint"


def test_a_resume_keeps_the_checkpoints_weights_when_the_data_changed(tmp_path, tiny_plugins):
    loss = {"name": "cross_entropy", "class_weights": "auto"}
    train_until(tiny(tmp_path, loss=loss, iters=4, save_interval=2), 2)
    before = read_metadata(tmp_path / "model_last.safetensors")["class_balance"]["class_weights"]["loss.main.0"]
    changed = tiny(tmp_path, loss=loss, dataset={"count": 11}, iters=4, save_interval=2)
    with pytest.warns(ClassBalanceWarning, match="training data changed since the checkpoint.*keeps the class weights"):
        train(changed, resume=True)
    after = read_metadata(tmp_path / "model_last.safetensors")["class_balance"]["class_weights"]["loss.main.0"]
    assert after["weights"] == before["weights"] == pytest.approx(class_weights(hand_counts(8)).tolist())
    assert after["weights"] != pytest.approx(class_weights(hand_counts(11)).tolist())
    record = json.loads((tmp_path / "class_balance.json").read_text())
    assert record["class_weights"]["loss.main.0"]["weights"] == before["weights"]
    assert [row["pixels"] for row in record["classes"]] == hand_counts(11).sum(axis=0).tolist()


def test_bad_auto_weight_options_stop_before_anything_is_written(tmp_path, tiny_plugins):
    from semsegpaddle.core.common.errors import ConfigError

    config = tiny(tmp_path / "run", loss={"name": "cross_entropy", "class_weights": "auto", "class_weights_max": 0.5})
    with pytest.raises(ConfigError, match=r"loss.main.0.class_weights_max must be a number >= 1 .*, got 0.5"):
        train(config)
    assert not (tmp_path / "run").exists()


ITERS = 40
KILL_ARGS = ["model.backbone.name=tiny_cnn", "model.backbone.width=4", "model.decoder.name=simple_fcn",
             "model.decoder.channels=4", "dataset.name=rings", "dataset.size=32", "dataset.count=12",
             "train.crop_size=[24,24]", "train.batch_size=2", f"train.iters={ITERS}", "train.save_interval=1",
             "train.log_interval=1", "train.eval_interval=0", "eval.batch_size=12", "runtime.progress=false",
             "runtime.threads=1", "train.num_workers=2", "train.sampler=rare_class", "train.sampler_temperature=0.5",
             "loss.main=[{name: cross_entropy, class_weights: auto, class_weights_method: inverse_sqrt}]"]


@pytest.mark.slow
def test_sigkill_then_resume_with_both_features_gives_bitwise_the_same_run(plugin_site, tmp_path):
    reference = semseg(plugin_site, "train", *KILL_ARGS, f"runtime.output_dir={tmp_path / 'reference'}", timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    last = out / "model_last.safetensors"
    kills = 0
    for wait_for_step in (3, 15):
        command = [sys.executable, "-m", "semsegpaddle.cli", "train", *KILL_ARGS, f"runtime.output_dir={out}"]
        process = subprocess.Popen(command + (["--resume"] if last.exists() else []), env=plugin_env(plugin_site),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if last.exists() and _step(last) >= wait_for_step:
                break
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (0, -signal.SIGKILL), stderr[-3000:]
    assert kills == 2, "the run finished before it could be killed"
    finish = semseg(plugin_site, "train", *KILL_ARGS, f"runtime.output_dir={out}", "--resume", timeout=300)
    assert finish.returncode == 0, finish.stderr[-3000:]
    expected, got = load_file(str(tmp_path / "reference" / "model_last.safetensors")), load_file(str(last))
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)
    assert read_metadata(last)["class_balance"] == read_metadata(tmp_path / "reference" / "model_last.safetensors")[
        "class_balance"]


def _step(path) -> int:
    try:
        return int(read_metadata(path)["step"])
    except Exception:  # being replaced at this moment
        return -1


@pytest.mark.slow
def test_two_processes_share_the_draws_and_rank_0_alone_reports(plugin_site, tmp_path):
    import semsegpaddle.cli

    out = tmp_path / "run"
    args = [arg for arg in KILL_ARGS if not arg.startswith(("train.iters", "train.save_interval"))]
    result = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
         semsegpaddle.cli.__file__, "train", *args, "train.iters=3", f"runtime.output_dir={out}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=plugin_env(plugin_site))
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "log").glob("workerlog.*")}
    assert result.returncode == 0, (result.stderr[-2000:], {k: v[-2000:] for k, v in logs.items()})
    assert "class balance of the training split (12 images" in logs["workerlog.0"]
    assert "class balance" not in logs["workerlog.1"]
    record = json.loads((out / "class_balance.json").read_text())
    assert read_metadata(out / "model_last.safetensors")["class_balance"]["class_weights"]["loss.main.0"][
        "weights"] == record["class_weights"]["loss.main.0"]["weights"]
    assert len(list(out.glob("class_stats-*.npz"))) == 1
