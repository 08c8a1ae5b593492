"""Inference backends: the dynamic model and the exported model in Paddle Inference (oneDNN) agree."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import paddle
import pytest
from paddle.static import InputSpec
from PIL import Image

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.backends import DynamicBackend, PaddleInferenceBackend, read_export_info
from semsegpaddle.core.inference.export import export_model
from semsegpaddle.core.model.assembly import build_model
from semsegpaddle.core.plugin.manager import list_components

from tests.cli.test_cli import TINY
from tests.helpers.cli import invoke

PALETTE = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)
#: the installed decoders on a ResNet-18, plus one backbone that resizes inside (HRNet)
CASES = [({"name": "resnet", "depth": 18, "output_stride": 8}, decoder)
         for decoder in sorted(c.name for c in list_components("decoder"))]
CASES.append(({"name": "hrnet", "width": "18_small"}, "deeplabv3"))


def build(backbone, decoder, num_classes=3):
    paddle.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GINet warns that its class embeddings are learnt
        model = build_model(config_from_dict({"model": {"backbone": backbone, "decoder": {"name": decoder}}}),
                             num_classes, pretrained=False)
    model.eval()
    return model


def batch(n, height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, height, width)).astype(np.float32)


@pytest.mark.parametrize("backbone, decoder", CASES, ids=[f"{b['name']}-{d}" for b, d in CASES])
def test_every_decoder_exports_a_model_paddle_inference_runs_with_onednn(backbone, decoder, tmp_path):
    model = build(backbone, decoder)
    export_model(model, tmp_path / "exported", ["a", "b", "c"], PALETTE, check_sizes=((32, 48),))
    exported = PaddleInferenceBackend(tmp_path / "exported", threads=2)
    assert exported.onednn and exported.num_classes == 3
    dynamic = DynamicBackend(model)
    for x in (batch(1, 40, 56), batch(2, 33, 47, seed=1)):  # odd sizes: every resize is fractional
        expected, got = dynamic(x), exported(x)
        assert got.shape == expected.shape == (x.shape[0], 3, *x.shape[2:])
        scale = max(1.0, float(np.abs(expected).max()))
        assert float(np.abs(got - expected).max()) <= 1e-4 * scale


def test_a_plain_jit_save_fails_under_onednn_and_the_error_says_to_export_again(tmp_path):
    """Paddle 3.3's oneDNN executor cannot run its interpolation operators: the reason the
    export traces resizing in another form. If Paddle fixes its executor, this test says so."""
    model = build({"name": "resnet", "depth": 18, "output_stride": 8}, "deeplabv3")
    folder = tmp_path / "plain"
    paddle.jit.save(model, str(folder / "model"), input_spec=[InputSpec([None, 3, None, None], "float32", "x")])
    (folder / "export_info.json").write_text(json.dumps({"class_names": ["a", "b", "c"], "palette": PALETTE.tolist()}))
    with pytest.raises(SemsegError, match=r"plain: Paddle Inference failed on a batch of shape \(1, 3, 32, 32\): "
                                          r".*ConvertPirAttribute2RuntimeAttribute.*run `semseg export` again"):
        PaddleInferenceBackend(folder, threads=2)(batch(1, 32, 32))
    without = PaddleInferenceBackend(folder, threads=2, onednn=False)(batch(1, 32, 32))
    assert without.shape == (1, 3, 32, 32)


@pytest.fixture
def trained_and_exported(tmp_path, tiny_plugins):
    args = [*TINY, "train.iters=20", "train.lr=0.05", f"runtime.output_dir={tmp_path / 'run'}"]
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output
    result = invoke("export", *args, "--output", str(tmp_path / "exported"))
    assert result.exit_code == 0, result.output
    return args, tmp_path / "exported"


SLIDE_MS_FLIP = ["--mode", "slide", "--crop-size", "24,24", "--stride", "16,16", "--scales", "0.75,1.25", "--flip"]


@pytest.mark.parametrize("options", [[], SLIDE_MS_FLIP], ids=["whole", "slide-ms-flip"])
def test_eval_and_predict_give_the_same_metrics_and_masks_on_both_backends(trained_and_exported, tmp_path, options):
    args, exported = trained_and_exported
    metrics = {}
    for backend, extra in (("dynamic", []), ("paddle-inference", ["--model-dir", str(exported)])):
        out = tmp_path / f"{backend}.json"
        result = invoke("eval", *args, *options, "--backend", backend, *extra, "--out", str(out))
        assert result.exit_code == 0, result.output
        metrics[backend] = json.loads(out.read_text())
    dynamic, inference = metrics["dynamic"], metrics["paddle-inference"]
    assert dynamic["pixels"] == inference["pixels"] > 0
    for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU"):
        assert inference[key] == pytest.approx(dynamic[key], abs=1e-6)
    for name, row in dynamic["per_class"].items():
        for key, value in row.items():
            assert (inference["per_class"][name][key] is None) == (value is None)
            if value is not None:
                assert inference["per_class"][name][key] == pytest.approx(value, abs=1e-6)

    rng = np.random.default_rng(5)
    images = []
    for index, (height, width) in enumerate(((40, 36), (29, 51))):
        path = tmp_path / f"in{index}.png"
        picture = np.full((height, width, 3), 128, np.uint8)
        picture[5:20, 8:24] = 230
        picture[18:, 20:] = 20
        Image.fromarray(np.clip(picture + rng.integers(-10, 10, picture.shape), 0, 255).astype(np.uint8)).save(path)
        images.append(str(path))
    config = [f"--config={a}" for a in args]
    result = invoke("predict", *images, "--output", str(tmp_path / "dyn"), *config, *options)
    assert result.exit_code == 0, result.output
    result = invoke("predict", *images, "--output", str(tmp_path / "inf"), *options,
                                 "--backend", "paddle-inference", "--model-dir", str(exported))
    assert result.exit_code == 0, result.output
    seen = set()
    for index in range(2):
        a, b = Image.open(tmp_path / "dyn" / f"in{index}.png"), Image.open(tmp_path / "inf" / f"in{index}.png")
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert a.getpalette()[:9] == b.getpalette()[:9]
        seen |= set(np.unique(np.asarray(a)).tolist())
    assert len(seen) > 1  # the model tells classes apart: equal masks are not both blank


def test_exported_logits_match_the_checkpoint_on_the_validation_images(trained_and_exported, tiny_plugins):
    from semsegpaddle.api import load_config, load_model

    args, exported = trained_and_exported
    dynamic = DynamicBackend(load_model(load_config(None, args)))
    inference = PaddleInferenceBackend(exported, threads=2)
    x = batch(2, 32, 32, seed=3)
    assert np.abs(inference(x) - dynamic(x)).max() <= 1e-4 * max(1.0, np.abs(dynamic(x)).max())
    assert inference.class_names == ["background", "bright", "dark"]


def test_backend_option_errors(trained_and_exported, tmp_path):
    args, exported = trained_and_exported
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = invoke("eval", *args, "--backend", "paddle-inference")
    assert result.exit_code == 2 and "--backend paddle-inference needs --model-dir DIR" in result.output
    result = invoke("predict", str(image), "--output", str(tmp_path / "o"), "--model-dir", str(exported))
    assert result.exit_code == 2 and "--model-dir is read by --backend paddle-inference" in result.output
    result = invoke("predict", str(image), "--output", str(tmp_path / "o"), "--backend",
                                 "paddle-inference", "--model-dir", str(exported), "--weights", "w.safetensors")
    assert result.exit_code == 2 and "--weights is for --backend dynamic" in result.output

    other = tmp_path / "four"
    shutil.copytree(exported, other)
    info = json.loads((other / "export_info.json").read_text())
    info["class_names"].append("extra")
    info["palette"].append([1, 2, 3])
    (other / "export_info.json").write_text(json.dumps(info))
    result = invoke("eval", *args, "--backend", "paddle-inference", "--model-dir", str(other))
    assert result.exit_code == 1
    assert "the export predicts 4 classes (background, bright, dark, extra), the dataset has 3" in result.output


def test_export_info_problems_are_named(tmp_path):
    folder = tmp_path / "exp"
    with pytest.raises(SemsegError, match=r"--model-dir .*exp: no such folder"):
        read_export_info(folder)
    folder.mkdir()
    (folder / "model.json").write_text("{}")
    with pytest.raises(SemsegError, match=r"not an export folder: model.pdiparams, export_info.json missing"):
        read_export_info(folder)
    (folder / "model.pdiparams").write_bytes(b"")
    (folder / "export_info.json").write_text("{not json")
    with pytest.raises(SemsegError, match=r"export_info.json: not readable JSON"):
        read_export_info(folder)
    (folder / "export_info.json").write_text(json.dumps({"class_names": ["a", "b"], "palette": [[0, 0, 0]]}))
    with pytest.raises(SemsegError, match=r"expected 'palette', one \[R, G, B\] \(0-255\) per class \(2 classes\)"):
        read_export_info(folder)
    (folder / "export_info.json").write_text(json.dumps({"class_names": [], "palette": []}))
    with pytest.raises(SemsegError, match=r"expected 'class_names', a non-empty list, got \[\]"):
        read_export_info(folder)
    (folder / "export_info.json").write_text(json.dumps({"class_names": ["a"], "palette": [[0, 0, 0]]}))
    with pytest.raises(SemsegError, match=r"exp: Paddle Inference cannot load the model"):
        PaddleInferenceBackend(folder, threads=2)


def test_the_real_cli_names_a_folder_that_is_no_export(tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "predict", str(image), "--output",
                           str(tmp_path / "o"), "--backend", "paddle-inference", "--model-dir", str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {tmp_path / 'empty'}: not an export folder: model.json, model.pdiparams, "
                      f"export_info.json missing (expected model.json, model.pdiparams, export_info.json, "
                      f"written by `semseg export`)"]
    assert not (tmp_path / "o").exists()


# -- bfloat16 under oneDNN -----------------------------------------------------------------------------

def _has_avx512_bf16() -> bool:
    from semsegpaddle.core.common.mkl_path import read_cpu

    return "avx512_bf16" in read_cpu()[1]


@pytest.mark.skipif(not _has_avx512_bf16(), reason="the CPU has no AVX512_BF16 (bf16 is refused there: tested below)")
def test_bf16_gives_the_float32_masks_within_bfloat16_rounding(trained_and_exported, tmp_path):
    args, exported = trained_and_exported
    fp32 = PaddleInferenceBackend(exported, threads=2)
    bf16 = PaddleInferenceBackend(exported, threads=2, precision="bf16")
    x = batch(2, 32, 32, seed=3)
    a, b = fp32(x), bf16(x)
    scale = max(1.0, float(np.abs(a).max()))
    assert 0 < np.abs(a - b).max() <= 0.05 * scale  # bfloat16 really ran (8-bit mantissa), and closely
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97
    metrics = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        result = invoke("eval", *args, "--backend", "paddle-inference", "--model-dir",
                                          str(exported), "--precision", precision, "--out", str(out))
        assert result.exit_code == 0, result.output
        metrics[precision] = json.loads(out.read_text())["mIoU"]
    assert metrics["bf16"] == pytest.approx(metrics["fp32"], abs=0.02)


def test_bf16_is_refused_where_it_cannot_run(trained_and_exported, monkeypatch):
    args, exported = trained_and_exported
    result = invoke("eval", *args, "--precision", "bf16")
    assert result.exit_code == 1 and "eval.precision bf16 needs the paddle-inference backend" in result.output
    with pytest.raises(SemsegError, match="needs the paddle-inference backend on CPU with oneDNN"):
        PaddleInferenceBackend(exported, onednn=False, precision="bf16")
    from semsegpaddle.core.common import mkl_path

    monkeypatch.setattr(mkl_path, "read_cpu", lambda: ("AuthenticAMD", frozenset({"avx2", "avx512f"})))
    with pytest.raises(SemsegError, match=r"needs a CPU with AVX512_BF16 instructions \(this one has none\); use fp32"):
        PaddleInferenceBackend(exported, precision="bf16")
