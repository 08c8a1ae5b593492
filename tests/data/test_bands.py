"""Reading multi-band, 16-bit and float TIFF images: every band kept, on a stated scale."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.common.errors import DataError
from semsegpaddle.core.data.image_io import read_bands

tifffile = pytest.importorskip("tifffile")


def _write(path, pixels, **layout):
    """Write ``pixels`` (H×W×N band-interleaved unless ``layout`` says otherwise) as a TIFF."""
    tifffile.imwrite(path, pixels, **{"photometric": "minisblack", "planarconfig": "contig", **layout})


def _pixels(dtype, bands=4, shape=(5, 7), seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is None:
        return rng.uniform(-3, 3000, (*shape, bands)).astype(dtype)
    return rng.integers(info.min, info.max, (*shape, bands), endpoint=True, dtype=dtype)


def test_sixteen_bit_bands_become_floats_on_the_eight_bit_scale(tmp_path):
    pixels = _pixels(np.uint16)
    pixels[0, 0] = [0, 65535, 257, 128]
    _write(tmp_path / "a.tif", pixels)
    image = read_bands(tmp_path / "a.tif")
    assert image.dtype == np.float32 and image.shape == (5, 7, 4)
    np.testing.assert_allclose(image, pixels.astype(np.float64) / 257, rtol=1e-6)
    assert image[0, 0].tolist() == pytest.approx([0.0, 255.0, 1.0, 128 / 257])


def test_eight_bit_bands_stay_uint8(tmp_path):
    pixels = _pixels(np.uint8, bands=5)
    _write(tmp_path / "a.tiff", pixels)
    image = read_bands(tmp_path / "a.tiff")
    assert image.dtype == np.uint8 and np.array_equal(image, pixels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_float_and_other_integer_bands_keep_the_files_units(tmp_path, dtype):
    pixels = _pixels(dtype, bands=3)
    _write(tmp_path / "a.tif", pixels)
    image = read_bands(tmp_path / "a.tif")
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pixels.astype(np.float32))


def test_single_band_and_band_sequential_layouts_become_bands_last(tmp_path):
    single = _pixels(np.uint16, bands=1)[:, :, 0]
    _write(tmp_path / "one.tif", single, planarconfig=None)
    assert read_bands(tmp_path / "one.tif").shape == (5, 7, 1)
    planar = _pixels(np.uint8, bands=6)
    _write(tmp_path / "planar.tif", np.moveaxis(planar, -1, 0), planarconfig="separate")
    assert np.array_equal(read_bands(tmp_path / "planar.tif"), planar)


def test_other_formats_are_read_as_rgb(tmp_path):
    rgb = _pixels(np.uint8, bands=3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(read_bands(tmp_path / "a.png"), rgb)


def test_unreadable_and_non_finite_tiffs_are_one_line_errors(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"broken.tif: cannot read image \(") as caught:
        read_bands(tmp_path / "broken.tif")
    assert "\n" not in str(caught.value)
    pixels = _pixels(np.float32, bands=2)
    pixels[1, 1, 0] = np.nan
    _write(tmp_path / "nan.tif", pixels)
    with pytest.raises(DataError, match=r"nan.tif: image holds non-finite values"):
        read_bands(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 3, 5, 7, 2), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match=r"stack.tif: cannot read image \(expected one H×W×bands picture"):
        read_bands(tmp_path / "stack.tif")


# -------------------------------------------------------------------------------------------------
# augmentation and the folder dataset with N bands
# -------------------------------------------------------------------------------------------------

from semsegpaddle.core.common.errors import ConfigError  # noqa: E402
from semsegpaddle.core.config.loader import config_from_dict  # noqa: E402
from semsegpaddle.core.data.transforms import Photometric, TrainTransform, to_planes  # noqa: E402
from semsegpaddle.plugins.datasets.folder_impl import FolderDataset  # noqa: E402

MEAN3 = [10.0, 20.0, 30.0]


def _augment(image, label, mean, seed):
    transform = TrainTransform([40, 52], [0.6, 1.7], True, mean, 255)
    return transform(image, label, np.random.default_rng(seed))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_each_band_is_augmented_as_the_bands_of_an_rgb_image(dtype, seed):
    rng = np.random.default_rng(seed)
    rgb = (rng.uniform(0, 255, (31, 45, 3))).astype(dtype)
    label = rng.integers(0, 4, (31, 45)).astype(np.uint8)
    expected, expected_label = _augment(rgb, label, MEAN3, seed)
    for bands in ([0], [0, 1, 2, 0, 1, 2], [2, 0, 1, 1, 0]):  # 1 band, 6 bands (past OpenCV's 4), 5 bands
        image, out_label = _augment(np.ascontiguousarray(rgb[:, :, bands]), label, [MEAN3[b] for b in bands], seed)
        assert image.dtype == dtype and image.shape == (40, 52, len(bands))
        if dtype == np.uint8:
            np.testing.assert_array_equal(image, expected[:, :, bands])
        else:  # OpenCV's float kernels round differently per band count, by float32 rounding only
            np.testing.assert_allclose(image, expected[:, :, bands], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(out_label, expected_label)
        planes = to_planes(image)
        assert planes.dtype == dtype and planes.shape == (len(bands), 40, 52)
        np.testing.assert_array_equal(planes, image.transpose(2, 0, 1))


def test_padding_fills_each_band_with_its_mean():
    image = np.zeros((10, 12, 5), np.float32)
    mean = [1.5, 2.0, 3.0, 4.0, 5.0]
    out, label = TrainTransform([16, 16], [1.0, 1.0], False, mean, 255)(image, np.zeros((10, 12), np.uint8),
                                                                         np.random.default_rng(0))
    assert out[15, 15].tolist() == mean and out[0, 0].tolist() == [0.0] * 5 and label[15, 15] == 255


def test_photometric_distortion_is_refused_for_other_than_three_bands():
    with pytest.raises(ValueError, match=r"^train.photometric: photometric distortion works on 3-band RGB images "
                                         r"only, model.in_channels is 4; set train.photometric: false$"):
        TrainTransform([8, 8], [1.0, 1.0], False, [0.0] * 4, 255, Photometric.from_config(True))
    with pytest.raises(ConfigError, match=r"run.yaml: 'train.photometric' distorts RGB colours: it needs 3-band "
                                          r"images, model.in_channels is 4; set train.photometric: false$"):
        config_from_dict({"model": {"in_channels": 4, "mean": [0.0] * 4, "std": [1.0] * 4},
                          "train": {"photometric": True}}, source="run.yaml")


def _folder(root, bands: int, count: int = 2):
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    rng = np.random.default_rng(bands)
    for index in range(count):
        pixels = rng.integers(0, 65536, (12, 16, bands), dtype=np.uint16)
        _write(root / "images" / "train" / f"{index}.tif", pixels[:, :, 0] if bands == 1 else pixels,
               planarconfig=None if bands == 1 else "contig")
        Image.fromarray(rng.integers(0, 3, (12, 16), dtype=np.uint8)).save(root / "masks" / "train" / f"{index}.png")


@pytest.mark.parametrize("bands", [1, 4])
def test_a_folder_dataset_reads_every_band_for_the_models_band_count(tmp_path, bands):
    _folder(tmp_path, bands)
    dataset = FolderDataset("train", root=tmp_path, num_classes=3)
    if bands == 1:  # in_channels 3: read as before (a 16-bit gray TIFF as gray RGB)
        rgb_image, _ = dataset[0]
        assert rgb_image.dtype == np.uint8 and rgb_image.shape == (12, 16, 3)
    dataset.in_channels = bands
    image, label = dataset[0]
    assert image.dtype == np.float32 and image.shape == (12, 16, bands) and label.shape == (12, 16)
    np.testing.assert_allclose(image, read_bands(tmp_path / "images" / "train" / "0.tif"))
    dataset.in_channels = 5
    with pytest.raises(DataError, match=rf"0.tif: has {bands} bands?, model.in_channels is 5$"):
        dataset[0]


def test_band_counts_come_from_the_headers_and_differing_images_are_named_at_once(tmp_path):
    from semsegpaddle.core.data.image_io import count_bands

    _folder(tmp_path, 4, count=5)
    dataset = FolderDataset("train", root=tmp_path, num_classes=3)
    assert [count_bands(path) for path, _ in dataset.pairs] == [4] * 5
    dataset.in_channels = 4
    dataset.check_input_bands()  # all agree: nothing raised
    dataset.in_channels = 3
    dataset.check_input_bands()  # RGB: the files are read as before, not checked here
    dataset.in_channels = 2
    with pytest.raises(DataError) as caught:
        dataset.check_input_bands()
    message = str(caught.value)
    assert message.endswith("0.tif: has 4 bands; " + str(tmp_path / "images/train/1.tif") + ": has 4 bands; "
                            + str(tmp_path / "images/train/2.tif") + ": has 4 bands (and 2 more images), "
                            "model.in_channels is 2")
    _write(tmp_path / "single.tif", np.zeros((3, 4), np.uint16), planarconfig=None)
    _write(tmp_path / "planar.tif", np.zeros((6, 3, 4), np.uint8), planarconfig="separate")
    assert count_bands(tmp_path / "single.tif") == 1 and count_bands(tmp_path / "planar.tif") == 6
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"broken.tif: cannot read image \("):
        count_bands(tmp_path / "broken.tif")
