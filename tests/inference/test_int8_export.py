"""`semseg export --int8`: a quantized ONNX model checked against float32, refused below the floor."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from semsegpaddle import hookimpl
from semsegpaddle.core.inference.backends import OnnxRuntimeBackend

from tests.cli.test_cli import TINY
from tests.helpers.cli import invoke
from tests.helpers.tiny import TinyPlugin, TwoSquares

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")
pytest.importorskip("onnxruntime.quantization")


class SquaresWithBlank(TwoSquares):
    """The tiny dataset plus a ``blank`` split of uniform grey images: a calibration that sees no
    contrast, so the int8 activation ranges miss what real images produce."""

    def __init__(self, split: str, size: int = 32, count: int = 8) -> None:
        self.blank = split == "blank"
        super().__init__("val" if self.blank else split, size, count)

    def __getitem__(self, index: int):
        image, label = super().__getitem__(index)
        if self.blank:
            image[:] = 128
            label[:] = 0
        return image, label


class BlankPlugin:
    @hookimpl
    def semseg_register_datasets(self, register):
        register("squares_blank", SquaresWithBlank, options={"size": "image side", "count": "samples per split"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(CLI args, folder) of a tiny model trained on the squares through the CLI."""
    from semsegpaddle.core.plugin import manager as plugin_module

    tmp_path = tmp_path_factory.mktemp("int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test"), (BlankPlugin(), "blank-test")])
    plugin_module.reset_plugins(state)
    try:
        args = [*TINY, "dataset.name=squares_blank", "dataset.count=12", "train.iters=30", "train.lr=0.05",
                f"runtime.output_dir={tmp_path / 'run'}"]
        result = invoke("train", *args)
        assert result.exit_code == 0, result.output
        yield args, tmp_path
    finally:
        plugin_module.reset_plugins(None)


@pytest.fixture(scope="module")
def int8_export(trained):
    args, tmp_path = trained
    out = tmp_path / "int8"
    result = invoke("export", *args, "--output", str(out), "--int8", "--calib-images", "6")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_int8_export_agrees_with_float32_above_the_floor(int8_export):
    out, output = int8_export
    assert "int8 model model_int8.onnx: agrees with float32 on" in output
    info = json.loads((out / "export_info.json").read_text())
    figures = info["int8"]
    assert info["precision"] == "int8" and figures["method"] == "minmax" and figures["floor"] == 0.98
    assert figures["calibration_split"] == "train" and figures["calibration_images"] == 6
    assert figures["held_back_split"] == "val" and figures["held_back_images"] == 12
    assert figures["held_back_pixels"] == 12 * 32 * 32
    assert 0.98 <= figures["pixel_agreement"] <= 1.0 and 0.0 < figures["miou_vs_fp32"] <= 1.0
    assert figures["fp32_nodes_kept"]  # the classifier convolution stays float32
    # the held-back images are labelled: both models are scored against the labels too
    assert 0.5 < figures["labels_miou_fp32"] <= 1.0
    assert figures["labels_miou_int8"] == pytest.approx(figures["labels_miou_fp32"], abs=0.05)
    assert (f"on their labels mIoU int8 {100 * figures['labels_miou_int8']:.2f} vs float32 "
            f"{100 * figures['labels_miou_fp32']:.2f}") in output
    assert {p.name for p in out.iterdir()} == {"model.json", "model.pdiparams", "model.onnx", "model_int8.onnx",
                                               "export_info.json"}
    import onnx

    types = {node.op_type for node in onnx.load(str(out / "model_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= types


def test_the_onnxruntime_backend_runs_the_int8_model_through_eval_and_predict(trained, int8_export):
    args, tmp_path = trained
    out, _ = int8_export
    runner = OnnxRuntimeBackend(out, threads=2)
    assert runner.precision == "int8" and runner.model_path.name == "model_int8.onnx"
    metrics = {}
    for backend, extra in (("dynamic", []), ("onnxruntime", ["--model-dir", str(out)])):
        target = tmp_path / f"eval_{backend}.json"
        result = invoke("eval", *args, "--backend", backend, *extra, "--out", str(target))
        assert result.exit_code == 0, result.output
        metrics[backend] = json.loads(target.read_text())
    assert metrics["dynamic"]["mIoU"] > 0.5  # the model learnt something worth quantizing
    assert metrics["onnxruntime"]["mIoU"] == pytest.approx(metrics["dynamic"]["mIoU"], abs=0.05)

    image = tmp_path / "square.png"
    picture = np.full((32, 32, 3), 128, np.uint8)
    picture[8:24, 8:24] = 230
    Image.fromarray(picture).save(image)
    result = invoke("predict", str(image), "--output", str(tmp_path / "masks"), "--backend", "onnxruntime",
                    "--model-dir", str(out))
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(tmp_path / "masks" / "square.png"))
    assert mask.shape == (32, 32) and mask[16, 16] == 1 and mask[2, 2] == 0


def test_a_blank_calibration_is_refused_and_writes_nothing(trained):
    args, tmp_path = trained
    out = tmp_path / "refused"
    result = invoke("export", *args, "--output", str(out), "--int8", "--calib-split", "blank", "--calib-images", "1")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "int8 model refused: it agrees with float32 on" in lines[0]
    assert "below the floor 98.00% (--int8-floor); nothing written" in lines[0]
    assert "on their labels mIoU int8 " in lines[0]  # what the user weighs before --force-int8
    assert not out.exists() and not list(tmp_path.glob(".refused*"))

    result = invoke("export", *args, "--output", str(out), "--int8", "--calib-split", "blank", "--calib-images", "1",
                    "--force-int8")
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "export_info.json").read_text())["int8"]
    assert figures["forced"] is True and figures["pixel_agreement"] < 0.98
    assert "below the floor: written with --force-int8" in result.output


@pytest.mark.parametrize("options, message", [
    (["--calib-images", "4"], "--calib-images only apply with --int8"),
    (["--force-int8", "--int8-floor", "0.9"], "--int8-floor, --force-int8 only apply with --int8"),
    (["--int8", "--calib-images", "0"], "Invalid value for '--calib-images'"),
    (["--int8", "--int8-floor", "1.5"], "Invalid value for '--int8-floor'"),
    (["--int8", "--calib-method", "median"], "Invalid value for '--calib-method'"),
])
def test_int8_option_errors_are_usage_errors(trained, options, message):
    args, tmp_path = trained
    result = invoke("export", *args, "--output", str(tmp_path / "never"), *options)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "never").exists()


def _quantized_convs(path) -> set[str]:
    """Names of the convolutions of the ONNX file ``path`` whose weights come through a DequantizeLinear."""
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    return {node.name for node in graph.node if node.op_type == "Conv" and producers.get(node.input[1]) == "DequantizeLinear"}


def test_quantize_model_options_choose_the_nodes_and_reuse_the_calibration(int8_export, tmp_path):
    """The knobs the int8 benchmarks turn: nodes kept float32, one node alone, 16-bit activations,
    and a calibration cache that makes a second call ignore its images."""
    import onnx

    from semsegpaddle.core.inference import quantize

    out, _ = int8_export
    prepared = tmp_path / "prepared.onnx"
    quantize.prepare_for_quantization(out / "model.onnx", prepared, tmp_path)
    classifier = set(quantize._classifier_nodes(onnx.load(str(prepared))))
    convs = sorted(node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv")
    body = [name for name in convs if name not in classifier]
    assert len(body) >= 2 and classifier
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32) for _ in range(3)]
    settings = quantize.Int8Settings(images, [])

    quantize.quantize_model(out / "model.onnx", tmp_path / "default.onnx", settings, tmp_path)
    assert _quantized_convs(tmp_path / "default.onnx") == set(body)
    kept = quantize.quantize_model(out / "model.onnx", tmp_path / "keep.onnx", settings, tmp_path, keep_nodes=body[:1])
    assert set(kept) == classifier | {body[0]}
    assert _quantized_convs(tmp_path / "keep.onnx") == set(body[1:])
    quantize.quantize_model(out / "model.onnx", tmp_path / "one.onnx", settings, tmp_path, only_nodes=body[-1:])
    assert _quantized_convs(tmp_path / "one.onnx") == {body[-1]}
    quantize.quantize_model(out / "model.onnx", tmp_path / "u16.onnx", settings, tmp_path, activations="uint16")
    zero_points = [init for init in onnx.load(str(tmp_path / "u16.onnx")).graph.initializer
                   if init.name.endswith("_zero_point") and init.data_type == onnx.TensorProto.UINT16]
    assert zero_points

    cache = tmp_path / "ranges.json"
    quantize.quantize_model(out / "model.onnx", tmp_path / "first.onnx", settings, tmp_path, calibration_cache=cache)
    assert cache.is_file()
    grey = quantize.Int8Settings([np.full((1, 3, 32, 32), 128, np.float32)], [])
    quantize.quantize_model(out / "model.onnx", tmp_path / "cached.onnx", grey, tmp_path, calibration_cache=cache)
    quantize.quantize_model(out / "model.onnx", tmp_path / "grey.onnx", grey, tmp_path)
    first, cached, fresh = (onnx.load(str(tmp_path / f"{n}.onnx")) for n in ("first", "cached", "grey"))
    assert cached.graph.initializer == first.graph.initializer  # the ranges came from the cache, not the grey image
    assert fresh.graph.initializer != first.graph.initializer


def test_entropy_calibration_chooses_other_ranges_than_minmax(int8_export, tmp_path):
    """onnxruntime's own entropy settings leave the full range as the only candidate (minmax's
    ranges); the export's calibrator has room to clip, so the two models differ."""
    import onnx

    from semsegpaddle.core.inference import quantize

    out, _ = int8_export
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32) for _ in range(3)]
    scales = {}
    for method in ("minmax", "entropy"):
        quantize.quantize_model(out / "model.onnx", tmp_path / f"{method}.onnx",
                                quantize.Int8Settings(images, [], method=method), tmp_path)
        scales[method] = {init.name: onnx.numpy_helper.to_array(init) for init in
                          onnx.load(str(tmp_path / f"{method}.onnx")).graph.initializer
                          if init.name.endswith("_scale") and init.dims == []}
    assert scales["minmax"].keys() == scales["entropy"].keys()
    clipped = [name for name in scales["minmax"] if scales["entropy"][name] < scales["minmax"][name] * 0.999]
    assert clipped  # some activation range was narrowed
    assert not (tmp_path / "calibration_entropy.json").exists()  # its temporary ranges are gone
