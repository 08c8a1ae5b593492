"""Export for Paddle Inference: dynamic input size, self-check, nothing replaced on failure."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from semsegpaddle.api import load_model
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.export import export_model

from tests.cli.test_cli import TINY
from tests.helpers.cli import invoke


@pytest.fixture
def trained(tmp_path, tiny_plugins):
    args = [*TINY, "train.iters=2", f"runtime.output_dir={tmp_path / 'run'}"]
    assert invoke("train", *args).exit_code == 0
    return args


def test_export_runs_at_any_size_and_matches_the_model(trained, tmp_path):
    out = tmp_path / "exported"
    result = invoke("export", *trained, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "64x64" in result.output and "48x80" in result.output
    info = json.loads((out / "export_info.json").read_text())
    assert info["class_names"] == ["background", "bright", "dark"]
    assert max(info["verified_max_abs_error"].values()) <= 1e-4
    exported = paddle.jit.load(str(out / "model"))
    from semsegpaddle.api import load_config

    model = load_model(load_config(None, trained))
    x = paddle.to_tensor(np.random.default_rng(1).uniform(0, 255, (2, 3, 40, 56)).astype(np.float32))
    assert exported(x).shape == [2, 3, 40, 56]
    assert float(np.abs(exported(x).numpy() - model(x).numpy()).max()) <= 1e-4


def test_failed_check_keeps_the_previous_export(trained, tmp_path):
    from semsegpaddle.api import load_config

    out = tmp_path / "exported"
    assert invoke("export", *trained, "--output", str(out)).exit_code == 0
    before = (out / "model.pdiparams").read_bytes()
    model = load_model(load_config(None, trained))
    with pytest.raises(SemsegError, match="export check failed"):
        export_model(model, out, ["a", "b", "c"], np.zeros((3, 3), np.uint8), tolerance=-1.0)
    assert (out / "model.pdiparams").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".exported")] == []


def test_onnx_export_is_checked_with_onnxruntime(trained, tmp_path):
    pytest.importorskip("paddle2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "exported"
    result = invoke("export", *trained, "--output", str(out), "--onnx")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "export_info.json").read_text())
    assert {"onnx 64x64", "onnx 48x80"} <= set(info["verified_max_abs_error"])
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).uniform(0, 255, (1, 3, 36, 52)).astype(np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 3, 36, 52)


def test_onnx_without_its_packages_names_the_extra(trained, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name in ("paddle2onnx", "onnxruntime"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    result = invoke("export", *trained, "--output", str(tmp_path / "e"), "--onnx")
    assert result.exit_code == 1 and "pip install 'semsegpaddle[onnx]'" in result.output
    assert not (tmp_path / "e").exists()


def test_predict_and_export_need_no_dataset_on_disk(trained, tmp_path, monkeypatch):
    """The checkpoint records classes and palette, so a machine without the data can still serve."""
    from PIL import Image

    import semsegpaddle.api as api
    from semsegpaddle.core.engine.checkpoint import read_metadata
    from semsegpaddle.core.data.base import default_palette

    def no_data(*args, **kwargs):
        raise DataError("the dataset is not on this machine")

    from semsegpaddle.core.common.errors import DataError

    monkeypatch.setattr(api, "create_dataset", no_data)
    meta = read_metadata(tmp_path / "run" / "model_best.safetensors")
    assert meta["class_names"] == ["background", "bright", "dark"] and meta["num_classes"] == 3
    image = tmp_path / "in.png"
    Image.fromarray(np.full((20, 24, 3), 30, np.uint8)).save(image)
    result = invoke("predict", str(image), "--output", str(tmp_path / "pred"),
                                      *[f"--config={a}" for a in trained])
    assert result.exit_code == 0, result.output
    palette = np.array(Image.open(tmp_path / "pred" / "in.png").getpalette()[:9]).reshape(3, 3)
    assert (palette == default_palette(3)).all()
    result = invoke("export", *trained, "--output", str(tmp_path / "exp"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "exp" / "export_info.json").read_text())["class_names"][2] == "dark"
