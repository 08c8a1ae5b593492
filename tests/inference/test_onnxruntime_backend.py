"""The onnxruntime backend: the export's model.onnx gives the dynamic model's logits, metrics and masks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import paddle
import pytest
from PIL import Image

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.inference.backends import DynamicBackend, OnnxRuntimeBackend
from semsegpaddle.core.inference.export import export_model
from semsegpaddle.core.model.assembly import build_model

from tests.cli.test_cli import TINY
from tests.helpers.cli import invoke

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")

PALETTE = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)


def _model(bands: int):
    """A ResNet-18 DeepLabv3 taking ``bands`` bands, random weights and random BN statistics."""
    paddle.seed(0)
    config = config_from_dict({"model": {
        "backbone": {"name": "resnet", "depth": 18, "output_stride": 8},
        "decoder": {"name": "deeplabv3", "channels": 16}, "in_channels": bands,
        "mean": [120.0 + 3 * i for i in range(bands)], "std": [60.0 - i for i in range(bands)]}})
    model = build_model(config, 3, pretrained=False)
    rng = np.random.default_rng(0)
    for name, tensor in model.state_dict().items():
        if name.endswith("._mean"):
            tensor.set_value(rng.normal(0, 0.1, tensor.shape).astype(np.float32))
        elif name.endswith("._variance"):
            tensor.set_value(rng.uniform(0.5, 1.5, tensor.shape).astype(np.float32))
    model.eval()
    return model


@pytest.fixture(scope="module", params=[3, 4], ids=["rgb", "4-band"])
def exported(request, tmp_path_factory):
    """(bands, live model, export folder with model.onnx)."""
    bands = request.param
    model = _model(bands)
    folder = tmp_path_factory.mktemp(f"onnx{bands}") / "exported"
    export_model(model, folder, ["a", "b", "c"], PALETTE, check_sizes=((32, 48),), onnx=True)
    return bands, model, folder


def _batch(bands: int, n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, bands, height, width)).astype(np.float32)


def test_onnxruntime_logits_match_the_dynamic_model(exported):
    bands, model, folder = exported
    dynamic, runner = DynamicBackend(model), OnnxRuntimeBackend(folder, threads=2)
    assert runner.in_channels == bands and runner.num_classes == 3 and runner.precision == "fp32"
    assert runner.model_path.name == "model.onnx" and runner.class_names == ["a", "b", "c"]
    for x in (_batch(bands, 1, 40, 40), _batch(bands, 2, 33, 47, seed=1)):  # a square and an odd, oblong size
        expected, got = dynamic(x), runner(x)
        assert got.shape == expected.shape == (x.shape[0], 3, *x.shape[2:])
        assert float(np.abs(got - expected).max()) <= 1e-5 * float(np.abs(expected).max())


def test_onnxruntime_errors_are_one_line(exported, tmp_path):
    bands, _, folder = exported
    runner = OnnxRuntimeBackend(folder, threads=1)
    with pytest.raises(SemsegError, match=rf"takes {bands}-band images \(model.in_channels\), got a batch "
                                          rf"of shape \(1, {bands + 1}, 16, 16\)$"):
        runner(_batch(bands + 1, 1, 16, 16))
    with pytest.raises(SemsegError, match=r"--model-dir .*nowhere: no such folder"):
        OnnxRuntimeBackend(tmp_path / "nowhere")
    without = tmp_path / "paddle_only"
    shutil.copytree(folder, without)
    (without / "model.onnx").unlink()
    with pytest.raises(SemsegError, match=r"paddle_only: model.onnx missing: .*`semseg export --onnx --output DIR`$"):
        OnnxRuntimeBackend(without)


@pytest.fixture(scope="module")
def trained_and_exported(tmp_path_factory):
    """A tiny model trained briefly through the CLI and exported with --onnx."""
    import warnings

    from semsegpaddle.core.plugin import manager as plugin_module
    from tests.helpers.tiny import TinyPlugin

    tmp_path = tmp_path_factory.mktemp("ort_cli")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test")])
    plugin_module.reset_plugins(state)
    try:
        args = [*TINY, "train.iters=20", "train.lr=0.05", f"runtime.output_dir={tmp_path / 'run'}"]
        result = invoke("train", *args)
        assert result.exit_code == 0, result.output
        result = invoke("export", *args, "--output", str(tmp_path / "exported"), "--onnx")
        assert result.exit_code == 0, result.output
        yield args, tmp_path / "exported", tmp_path
    finally:
        plugin_module.reset_plugins(None)


def test_eval_and_predict_match_the_dynamic_backend(trained_and_exported):
    args, exported, tmp_path = trained_and_exported
    metrics = {}
    for backend, extra in (("dynamic", []), ("onnxruntime", ["--model-dir", str(exported)])):
        out = tmp_path / f"{backend}.json"
        result = invoke("eval", *args, "--backend", backend, *extra, "--out", str(out))
        assert result.exit_code == 0, result.output
        metrics[backend] = json.loads(out.read_text())
    dynamic, onnx = metrics["dynamic"], metrics["onnxruntime"]
    assert dynamic["pixels"] == onnx["pixels"] > 0
    for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU"):
        assert onnx[key] == pytest.approx(dynamic[key], abs=1e-6)

    path = tmp_path / "in.png"
    picture = np.full((37, 45, 3), 128, np.uint8)
    picture[5:20, 8:24], picture[22:, 25:] = 230, 20
    Image.fromarray(picture).save(path)
    config = [f"--config={a}" for a in args]
    result = invoke("predict", str(path), "--output", str(tmp_path / "dyn"), *config)
    assert result.exit_code == 0, result.output
    result = invoke("predict", str(path), "--output", str(tmp_path / "ort"), "--backend", "onnxruntime",
                    "--model-dir", str(exported))
    assert result.exit_code == 0, result.output
    a, b = np.asarray(Image.open(tmp_path / "dyn" / "in.png")), np.asarray(Image.open(tmp_path / "ort" / "in.png"))
    assert np.array_equal(a, b) and len(np.unique(a)) > 1


def test_backend_option_errors_name_onnxruntime(trained_and_exported):
    args, exported, _ = trained_and_exported
    result = invoke("eval", *args, "--backend", "onnxruntime")
    assert result.exit_code == 2 and "--backend onnxruntime needs --model-dir DIR" in result.output
    result = invoke("eval", *args, "--backend", "onnxruntime", "--model-dir", str(exported), "--weights", "w.st")
    assert result.exit_code == 2 and "--weights is for --backend dynamic; onnxruntime reads --model-dir" in result.output
    result = invoke("eval", *args, "--backend", "onnxruntime", "--model-dir", str(exported), "--precision", "bf16")
    assert result.exit_code == 1 and "eval.precision bf16 runs oneDNN's kernels: it needs --backend paddle-inference" \
        in result.output


def test_a_pspnet_pyramid_exports_to_onnx_and_both_backends_match(tmp_path):
    """Adaptive pooling to several bins of a size-free input is traced for ONNX as matrix
    products (paddle2onnx aborts on the pooling itself); Paddle Inference keeps its own program."""
    from semsegpaddle.core.inference.backends import PaddleInferenceBackend

    paddle.seed(0)
    model = build_model(config_from_dict({"model": {"backbone": {"name": "resnet", "depth": 18, "output_stride": 8},
                                                     "decoder": {"name": "pspnet", "channels": 16}}}), 3,
                        pretrained=False)
    model.eval()
    export_model(model, tmp_path / "psp", ["a", "b", "c"], PALETTE, check_sizes=((37, 53),), onnx=True)
    assert not list((tmp_path / "psp").glob("onnx_source*"))
    x = _batch(3, 2, 61, 77)  # bins that split rows and columns unevenly
    expected = DynamicBackend(model)(x)
    for runner in (OnnxRuntimeBackend(tmp_path / "psp", threads=2), PaddleInferenceBackend(tmp_path / "psp", threads=2)):
        assert float(np.abs(runner(x) - expected).max()) <= 1e-5 * float(np.abs(expected).max())


def test_a_resnet_vd_with_a_pooled_shortcut_in_a_dilated_stage_exports_to_onnx(tmp_path):
    """ResNet-vd at output stride 8 in timm's style averages 2×2 over a zero-padded edge on the
    shortcut of each dilated stage; onnxruntime must give the model's logits for it (its Pad +
    AveragePool form once came out at 1e12)."""
    model = build_model(config_from_dict({"model": {
        "backbone": {"name": "resnet", "depth": 18, "stem": "deep_avgdown", "output_stride": 8},
        "decoder": {"name": "fcn", "in_level": -1}}}), 3, pretrained=False)
    rng = np.random.default_rng(0)
    for name, tensor in model.state_dict().items():
        if name.endswith("._mean"):
            tensor.set_value(rng.normal(0, 0.1, tensor.shape).astype(np.float32))
    model.eval()
    export_model(model, tmp_path / "vd", ["a", "b", "c"], PALETTE, check_sizes=((32, 48),), onnx=True)
    x = _batch(3, 2, 45, 61)
    expected = DynamicBackend(model)(x)
    got = OnnxRuntimeBackend(tmp_path / "vd", threads=2)(x)
    assert float(np.abs(got - expected).max()) <= 1e-5 * float(np.abs(expected).max())
