"""check-data on N-band TIFF datasets: band counts checked in the same pass, per-band statistics written."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semsegpaddle import api
from semsegpaddle.core.config.loader import load_yaml
from tests.helpers.bands import tiff_dataset, write_tiff
from tests.helpers.cli import invoke

pytest.importorskip("tifffile")


def _overrides(root, *extra: str) -> list[str]:
    return ["dataset.name=folder", f"dataset.root={root}", "dataset.num_classes=3", *extra]


def test_without_band_statistics_check_data_says_so_and_writes_them_from_the_train_split(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fixed.yaml"
    train_images = tiff_dataset(root, 4)
    overrides = _overrides(root, "model.in_channels=4")
    first = invoke("check-data", *overrides, "--write-config", out)
    assert first.exit_code == 1
    assert ("PROBLEM [config] model.mean and model.std are not set for model.in_channels=4 (their defaults "
            "are ImageNet's three RGB values)") in first.output
    assert "--write-config FILE writes them from the 'train' split" in first.output

    model = load_yaml(out.read_text())["model"]
    pixels = np.concatenate([image.reshape(-1, 4) for image in train_images]).astype(np.float64) / 257
    assert model["in_channels"] == 4
    np.testing.assert_allclose(model["mean"], pixels.mean(axis=0), atol=5e-4)
    np.testing.assert_allclose(model["std"], pixels.std(axis=0), atol=5e-4)
    assert "per-band (4 bands; 16-bit bands on the 0-255 scale) mean over the 4 'train' images" in out.read_text()

    again = invoke("check-data", out)
    assert again.exit_code == 0, again.output
    assert again.output.strip().endswith("check-data: OK, 6 samples in split(s) train, val, no problems")


def test_band_counts_sizes_and_unreadable_tiffs_are_found_in_one_pass(tmp_path):
    root = tmp_path / "data"
    tiff_dataset(root, 4)
    rng = np.random.default_rng(0)
    write_tiff(root / "images" / "train" / "1.tif", rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    (root / "images" / "train" / "2.tif").write_bytes(b"II*\x00 truncated")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "val" / "0.png")
    report = api.check_data(api.load_check_config(None, _overrides(
        root, "model.in_channels=4", f"model.mean={[100.0] * 4}", f"model.std={[50.0] * 4}")))
    problems = {problem.kind: problem for problem in report.problems}
    assert set(problems) == {"bands", "unreadable", "size"}
    bands = problems["bands"]
    assert bands.split == "train" and bands.files == [str(root / "images" / "train" / "1.tif")]
    assert bands.message == (f"1 image(s) have another band count than model.in_channels=4 (first: "
                             f"{root / 'images' / 'train' / '1.tif'} has 3 bands)")
    assert bands.fix.startswith("convert those images")  # the other images have 4 bands
    assert problems["unreadable"].files == [str(root / "images" / "train" / "2.tif")]
    assert problems["size"].split == "val" and problems["size"].message.endswith("(first: mask 20×20, image 48×40)")


@pytest.mark.parametrize("bands", [1, 4])
def test_an_rgb_config_on_n_band_tiffs_is_told_the_band_count(tmp_path, bands):
    root = tmp_path / "data"
    tiff_dataset(root, bands, train=2, val=1)
    result = invoke("check-data", *_overrides(root))
    assert result.exit_code == 1
    assert f"has {bands} band{'s' if bands > 1 else ''})" in result.output
    assert f"fix: model.in_channels={bands} with {bands} values in model.mean and model.std" in result.output


def test_a_dataset_of_rgb_images_only_is_a_problem_for_other_band_counts():
    report = api.check_data(api.load_check_config(None, ["model.in_channels=4"]))
    assert [(p.kind, p.message) for p in report.problems if p.kind == "dataset"] == [
        ("dataset", "model.in_channels is 4: dataset 'synthetic' gives RGB images only")] * 2
