"""N-band models in inference: export with an N-band input, both backends, predict with overlays."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest
from PIL import Image

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.inference.backends import DynamicBackend, PaddleInferenceBackend
from semsegpaddle.core.inference.export import export_model
from semsegpaddle.core.data.image_io import read_bands
from semsegpaddle.core.inference.prediction import PredictionError, blend, overlay_picture, predict_files
from semsegpaddle.core.model.assembly import build_model

from tests.helpers.cli import invoke

tifffile = pytest.importorskip("tifffile")

PALETTE = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)


def _model(bands: int):
    paddle.seed(0)
    config = config_from_dict({"model": {
        "backbone": {"name": "resnet", "depth": 18}, "decoder": {"name": "fcn", "channels": 16},
        "in_channels": bands, "mean": [120.0 + 3 * i for i in range(bands)], "std": [60.0 - i for i in range(bands)]}})
    model = build_model(config, 3, pretrained=False)
    model.eval()
    return model


@pytest.fixture(scope="module", params=[1, 4], ids=["1-band", "4-band"])
def exported(request, tmp_path_factory):
    """(bands, live model, export folder) of a ResNet-18 FCN taking ``bands`` bands."""
    bands = request.param
    model = _model(bands)
    folder = tmp_path_factory.mktemp(f"export{bands}") / "exported"
    export_model(model, folder, ["a", "b", "c"], PALETTE, check_sizes=((32, 48),))
    return bands, model, folder


def _batch(bands: int, n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, bands, height, width)).astype(np.float32)


def test_the_export_takes_n_bands_and_records_them(exported):
    bands, _, folder = exported
    info = json.loads((folder / "export_info.json").read_text())
    assert info["input"]["bands"] == bands and info["input"]["shape"] == ["N", bands, "H", "W"]


def test_both_backends_agree_on_n_band_batches(exported):
    bands, model, folder = exported
    dynamic, inference = DynamicBackend(model), PaddleInferenceBackend(folder, threads=2)
    assert dynamic.in_channels == inference.in_channels == bands
    x = _batch(bands, 2, 33, 47)
    expected, got = dynamic(x), inference(x)
    assert got.shape == expected.shape == (2, 3, 33, 47)
    assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_a_batch_of_another_band_count_is_a_one_line_error(exported):
    bands, model, folder = exported
    for backend in (DynamicBackend(model), PaddleInferenceBackend(folder, threads=2)):
        with pytest.raises(SemsegError, match=rf"takes {bands}-band images \(model.in_channels\), got a batch "
                                              rf"of shape \(1, 3, 16, 16\)$"):
            backend(_batch(3, 1, 16, 16))


def _tiffs(folder, bands: int, count: int = 2):
    """16-bit TIFFs of ``bands`` bands (band-interleaved; a single band as H×W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(bands)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 65536, (36, 44, bands), dtype=np.uint16)
        path = folder / f"tile{index}.tif"
        if bands == 1:
            tifffile.imwrite(path, pixels[:, :, 0], photometric="minisblack")
        else:
            tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")
        paths.append(path)
    return paths


def test_predict_reads_n_band_tiffs_and_both_backends_write_the_same_masks(exported, tmp_path):
    bands, model, folder = exported
    inputs = _tiffs(tmp_path / "in", bands)
    with pytest.raises(SemsegError, match=f"--rgb-bands 5,2,1: expected three band numbers from 1 to {bands} "):
        predict_files(model, inputs, tmp_path / "bad", PALETTE, overlay=True, progress=False, rgb_bands=(5, 2, 1))
    assert not (tmp_path / "bad").exists()  # refused before any image was read
    rgb = None if bands == 1 else "4,2,1"
    live = predict_files(model, inputs, tmp_path / "dynamic", PALETTE, overlay=True, progress=False, rgb_bands=rgb)
    runner = PaddleInferenceBackend(folder, threads=2)
    run = predict_files(runner, inputs, tmp_path / "inference", PALETTE, overlay=True, progress=False, rgb_bands=rgb)
    for a, b in zip(live, run):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    overlay = np.asarray(Image.open(tmp_path / "dynamic" / "tile0_overlay.png"))
    mask = np.asarray(Image.open(live[0]))
    shown = (1, 1, 1) if bands == 1 else (4, 2, 1)  # the default for one band: band 1 as gray
    assert np.array_equal(overlay, blend(overlay_picture(read_bands(inputs[0]), shown), mask, PALETTE))


def test_an_image_of_another_band_count_is_named(exported, tmp_path):
    bands, model, _ = exported
    wrong = _tiffs(tmp_path / "wrong", 3 if bands != 3 else 2, count=1)
    good = _tiffs(tmp_path / "good", bands, count=1)
    with pytest.raises(PredictionError) as caught:
        predict_files(model, [*wrong, *good], tmp_path / "out", PALETTE, progress=False)
    assert f"wrong/tile0.tif: has 3 bands, model.in_channels is {bands}" in str(caught.value)
    assert len(caught.value.written) == 1  # the image of the right band count was still segmented


def test_overlay_picture_shows_uint8_bands_as_they_are_and_stretches_others():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(overlay_picture(image, (4, 2, 1)), image[:, :, [3, 1, 0]])
    ramp = np.linspace(0, 1000, 101, dtype=np.float32).reshape(1, 101, 1)
    picture = overlay_picture(np.repeat(ramp, 2, axis=2), (2, 1, 1))
    assert picture.dtype == np.uint8 and picture[0, 0, 0] == 0 and picture[0, -1, 0] == 255
    assert picture[0, 50, 0] == pytest.approx(127, abs=1)


def test_cli_predict_draws_the_chosen_bands_with_the_exported_model(exported, tmp_path):
    bands, _, folder = exported
    inputs = _tiffs(tmp_path / "in", bands, count=1)
    choice = "1,1,1" if bands == 1 else "3,2,1"
    result = invoke("predict", str(inputs[0]), "--backend", "paddle-inference", "--model-dir", str(folder),
                    "--output", str(tmp_path / "out"), "--rgb-bands", choice)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tile0_overlay.png").is_file()
    result = invoke("predict", str(inputs[0]), "--backend", "paddle-inference", "--model-dir", str(folder),
                    "--output", str(tmp_path / "bad"), "--rgb-bands", "9,2,1")
    assert result.exit_code == 1
    assert f"--rgb-bands 9,2,1: expected three band numbers from 1 to {bands}" in result.output
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
