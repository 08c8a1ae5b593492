"""N-band folder datasets end to end: train, evaluate, export, predict with both backends."""
from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.data.image_io import read_bands
from semsegpaddle.core.inference.prediction import overlay_picture

from tests.helpers.bands import tiff_dataset
from tests.helpers.cli import invoke

tifffile = pytest.importorskip("tifffile")


def _config(tmp_path, bands: int):
    path = tmp_path / "bands.yaml"
    path.write_text(json.dumps({
        "model": {"backbone": {"name": "resnet", "depth": 18}, "decoder": {"name": "fcn", "channels": 16},
                  "in_channels": bands, "mean": [117.0] * bands, "std": [40.0] * bands},
        "dataset": {"name": "folder", "root": str(tmp_path / "data"), "num_classes": 3},
        "train": {"iters": 3, "batch_size": 2, "crop_size": [32, 32], "scale_range": [0.75, 1.25], "lr": 0.01},
        "eval": {"batch_size": 2},
        "runtime": {"progress": False, "threads": 2, "output_dir": str(tmp_path / "run")},
    }))
    return path


@pytest.mark.parametrize("bands", [1, 4])
def test_an_n_band_tiff_dataset_trains_evaluates_exports_and_predicts(tmp_path, bands):
    tiff_dataset(tmp_path / "data", bands)
    config = _config(tmp_path, bands)
    result = invoke("train", str(config))
    assert result.exit_code == 0, result.output
    weights = tmp_path / "run" / "model_final.safetensors"
    if not weights.is_file():
        weights = next((tmp_path / "run").glob("*.safetensors"))
    result = invoke("eval", str(config), "--weights", str(weights))
    assert result.exit_code == 0, result.output
    assert "miou" in result.output.lower()
    _report_shows_the_chosen_bands(tmp_path / "run", bands)
    result = invoke("export", str(config), "--weights", str(weights), "--output", str(tmp_path / "exported"))
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "exported" / "export_info.json").read_text())
    assert info["input"]["bands"] == bands
    images = sorted((tmp_path / "data" / "images" / "val").glob("*.tif"))
    result = invoke("predict", *map(str, images), "--weights", str(weights), "--output", str(tmp_path / "dyn"),
                    "--overlay")
    assert result.exit_code == 0, result.output
    result = invoke("predict", *map(str, images), "--backend", "paddle-inference", "--model-dir",
                    str(tmp_path / "exported"), "--output", str(tmp_path / "inf"),
                    "--rgb-bands", "1,1,1" if bands == 1 else "4,2,1")
    assert result.exit_code == 0, result.output
    for image in images:
        dynamic = np.asarray(Image.open(tmp_path / "dyn" / f"{image.stem}.png"))
        exported = np.asarray(Image.open(tmp_path / "inf" / f"{image.stem}.png"))
        assert dynamic.shape == (40, 48) and (dynamic == exported).mean() > 0.999
        assert (tmp_path / "inf" / f"{image.stem}_overlay.png").is_file()


def test_an_image_of_another_band_count_stops_training_naming_it(tmp_path):
    tiff_dataset(tmp_path / "data", 4)
    tifffile.imwrite(tmp_path / "data" / "images" / "train" / "1.tif",
                     np.zeros((40, 48, 3), np.uint16), photometric="minisblack", planarconfig="contig")
    result = invoke("train", str(_config(tmp_path, 4)))
    assert result.exit_code == 1
    assert "train/1.tif: has 3 bands, model.in_channels is 4" in result.output
    assert not (tmp_path / "run").exists()  # refused from the file headers, before any step


def test_a_dataset_of_rgb_images_only_is_refused_for_other_band_counts(tmp_path):
    config = tmp_path / "synthetic.yaml"
    config.write_text(json.dumps({"model": {"in_channels": 4, "mean": [0.0] * 4, "std": [1.0] * 4},
                                  "dataset": {"name": "synthetic"}, "train": {"iters": 1},
                                  "runtime": {"output_dir": str(tmp_path / "run"), "progress": False}}))
    result = invoke("train", str(config))
    assert result.exit_code == 1
    assert "model.in_channels is 4: dataset 'synthetic' gives RGB images only" in result.output


def _report_shows_the_chosen_bands(run, bands: int) -> None:
    """``semseg report --rgb-bands``: each input picture is the chosen bands, stretched as overlays are."""
    shown = "1,1,1" if bands == 1 else "4,2,1"
    result = invoke("report", str(run), "--rgb-bands", shown, "--worst", "2")
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    inputs = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="input \(bands ' + shown +
                        r'\) of ([^"]+?) \(label', html)
    assert len(inputs) == 2
    for encoded, image_path in inputs:
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        expected = overlay_picture(read_bands(image_path), [int(b) for b in shown.split(",")])
        np.testing.assert_array_equal(picture, expected)
