"""The command line through click's test runner: listing, config, errors, train/eval/predict."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from semsegpaddle import __version__
from semsegpaddle.cli import split_config_args
from tests.helpers.cli import invoke




def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_list_shows_components_plugins_and_options():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for name in ("resnet", "deeplabv3", "synthetic"):
        assert f"  {name}  [plugin " in result.output
    assert "semsegpaddle" in result.output
    assert "output_stride: int = 32" in result.output


def test_list_json_and_kind_filter():
    result = invoke("list", "decoder", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {row["kind"] for row in rows} == {"decoder"}
    deeplab = next(row for row in rows if row["name"] == "deeplabv3")
    assert deeplab["distribution"] == "semsegpaddle"
    assert {o["name"] for o in deeplab["options"]} == {"channels", "atrous_rates", "dropout", "in_level", "conv_bias",
                                                       "refine_conv"}
    result = invoke("list", "backbone", "--json", "--pattern", "res*")
    assert [row["name"] for row in json.loads(result.output)] == ["resnet", "resnext"]


def test_plugins_command_lists_hooks():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)["plugins"]}
    assert rows["deeplabv3"]["hooks"] == ["semseg_register_decoders"]
    assert rows["synthetic"]["distribution"] == "semsegpaddle"


def test_config_prints_merged_config_with_overrides():
    result = invoke("config", "synthetic_deeplabv3", "train.iters=3")
    assert result.exit_code == 0, result.output
    assert "iters: 3" in result.output and "width: 18_small" in result.output
    assert "norm_eps: 1.0e-05" in result.output  # the backbone's defaults are filled in
    assert "synthetic_deeplabv3" in invoke("config", "--list").output


def test_bad_input_is_one_line_and_nonzero():
    result = invoke("config", "synthetic_deeplabv3", "train.itres=3")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: command line:") and "iters" in lines[0]
    result = invoke("config", "no_such_config")
    assert result.exit_code == 1 and "neither a file nor a packaged config" in result.output


def test_debug_flag_shows_the_traceback():
    result = invoke("--debug", "config", "synthetic_deeplabv3", "train.itres=3")
    assert result.exit_code == 1
    assert result.exception is not None and type(result.exception).__name__ == "ConfigError"


def test_split_config_args():
    assert split_config_args(["a.yaml", "x=1", "y.z=2"]) == ("a.yaml", ["x=1", "y.z=2"])
    assert split_config_args(["x=1"]) == (None, ["x=1"])


TINY = ["model.backbone.name=tiny", "model.decoder.channels=16", "dataset.name=two_squares",
        "train.crop_size=[32,32]", "train.scale_range=[1.0,1.0]", "train.batch_size=2",
        "eval.batch_size=2", "runtime.progress=false", "runtime.threads=2"]


def test_train_eval_predict_through_the_cli(tmp_path, tiny_plugins):
    out = tmp_path / "run"
    args = [*TINY, "train.iters=3", f"runtime.output_dir={out}"]
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    for name in ("model_last.safetensors", "model_best.safetensors",
                 "metrics.json", "config.yaml", "train_log.jsonl"):
        assert (out / name).is_file(), name

    result = invoke("eval", *args, "--out", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["per_class"]) == {"background", "bright", "dark"}
    assert metrics["mIoU"] == json.loads((out / "metrics.json").read_text())["mIoU"]

    image = tmp_path / "in.png"
    Image.fromarray(np.full((40, 36, 3), 200, np.uint8)).save(image)
    result = invoke("predict", str(image), "--output", str(tmp_path / "pred"), "--overlay",
                                 *[f"--config={a}" for a in args])
    assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "pred" / "in.png")
    assert mask.mode == "P" and mask.size == (36, 40)
    assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}
    assert (tmp_path / "pred" / "in_overlay.png").is_file()


def test_eval_with_missing_weights_is_a_clear_error(tmp_path, tiny_plugins):
    result = invoke("eval", *TINY, "--weights", str(tmp_path / "none.safetensors"))
    assert result.exit_code == 1 and "checkpoint not found" in result.output


def test_missing_paddle_names_the_install_command(monkeypatch):
    import importlib.util

    from semsegpaddle import cli as cli_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "paddle" else real(name, *a))
    with pytest.raises(SystemExit) as info:
        cli_module.main(["list"])
    assert "pip install 'semsegpaddle[cpu]'" in str(info.value) and "paddlepaddle-gpu" in str(info.value)


def test_list_still_works_with_a_broken_plugin():
    import warnings

    from semsegpaddle import hookimpl
    from semsegpaddle.core.plugin import manager as plugin_module

    class Broken:
        @hookimpl
        def semseg_register_datasets(self, register):
            raise RuntimeError("cannot find my data")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugin_module.reset_plugins(plugin_module.new_state(plugins=[(Broken(), "broken")]))
    try:
        listed = invoke("list", "--json")
        assert listed.exit_code == 0 and "synthetic" in listed.output
        shown = invoke("plugins")
        assert "broken  FAILED: RuntimeError: cannot find my data" in shown.output
    finally:
        plugin_module.reset_plugins(None)


def test_config_list_and_list_config_show_trained_models_with_published_miou():
    listed = invoke("config", "--list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("paddleseg_pspnet_resnet101_os8_cityscapes_1024x512_80k "))
    assert "published mIoU ss 80.48, flip 80.74, ms_flip 81.29" in lines[row + 1]
    assert "--weights https://bj.bcebos.com/paddleseg/dygraph/cityscapes/" in lines[row + 1]
    as_json = invoke("list", "config", "--pattern", "torchvision_*", "--json")
    assert as_json.exit_code == 0, as_json.output
    entries = {e["name"]: e for e in json.loads(as_json.output)}
    assert set(entries) == {"torchvision_base", "torchvision_deeplabv3_resnet50", "torchvision_deeplabv3_resnet101",
                            "torchvision_fcn_resnet50", "torchvision_fcn_resnet101"}
    assert entries["torchvision_fcn_resnet50"]["zoo"]["published_miou"] == {"ss": 60.5}
    assert entries["torchvision_base"]["zoo"] is None
