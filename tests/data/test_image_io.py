"""Reading image and label files: OpenCV decodes the common 8-bit JPEG/PNG files into exactly
Pillow's pixels, every other file (and every incomplete one) goes through Pillow."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.data import image_io
from semsegpaddle.core.data.image_io import read_image, read_label
from semsegpaddle.core.common.errors import DataError


def photo(height: int = 37, width: int = 53) -> np.ndarray:
    """A smooth random RGB picture (JPEG-friendly, with real chroma)."""
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (0, 0), 1.5)


def pillow_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def decoders(monkeypatch):
    """Counts the files OpenCV decoded."""
    calls = []
    original = image_io._opencv_decode

    def counting(path, image, colour):
        pixels = original(path, image, colour)
        calls.append(pixels is not None)
        return pixels

    monkeypatch.setattr(image_io, "_opencv_decode", counting)
    return calls


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name, options", [
    ("420.jpg", {"quality": 90}), ("444.jpg", {"quality": 95, "subsampling": 0}),
    ("progressive.jpg", {"progressive": True}), ("plain.png", {}), ("interlaced.png", {"interlace": 1}),
])
def test_opencv_gives_pillows_pixels(tmp_path, decoders, mode, name, options):
    path = tmp_path / name
    Image.fromarray(photo()).convert(mode).save(path, **options)
    pixels = read_image(path)
    assert decoders == [True]
    assert pixels.dtype == np.uint8 and pixels.shape == (37, 53, 3) and pixels.flags.writeable
    assert np.array_equal(pixels, pillow_rgb(path))


def test_grayscale_png_label_through_opencv(tmp_path, decoders):
    label = np.random.default_rng(1).integers(0, 20, (31, 45)).astype(np.uint8)
    label[0] = 255
    Image.fromarray(label).save(tmp_path / "mask.png")
    out = read_label(tmp_path / "mask.png")
    assert decoders == [True] and out.dtype == np.uint8 and np.array_equal(out, label)


def test_palette_label_gives_indices_not_colours(tmp_path, decoders):
    label = np.random.default_rng(2).integers(0, 5, (12, 14)).astype(np.uint8)
    image = Image.fromarray(label, mode="L").convert("P")
    image.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    image.save(tmp_path / "voc.png")
    assert np.array_equal(read_label(tmp_path / "voc.png"), label)
    assert decoders == [False]  # Pillow: OpenCV would expand the palette


def test_sixteen_bit_rgb_png_goes_through_pillow(tmp_path, decoders):
    """16-bit samples keep their top byte (Pillow's reading), which OpenCV would round instead."""
    rgb16 = (photo(9, 11).astype(np.uint16) << 8) | 0xFF  # low bytes that would round up
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), rgb16[..., ::-1])
    pixels = read_image(path)
    assert decoders == [False] and np.array_equal(pixels, photo(9, 11))


def test_cmyk_jpeg_goes_through_pillow(tmp_path, decoders):
    path = tmp_path / "print.jpg"
    Image.fromarray(photo()).convert("CMYK").save(path)
    assert np.array_equal(read_image(path), pillow_rgb(path))
    assert decoders == [False]


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_file_is_a_one_line_error_naming_it(tmp_path, decoders, suffix):
    path = tmp_path / f"cut.{suffix}"
    Image.fromarray(photo(64, 64)).save(path)
    path.write_bytes(path.read_bytes()[:-200])  # OpenCV would fill the missing part silently
    with pytest.raises(DataError, match=rf"^{path}: cannot read image \(") as error:
        read_image(path)
    assert "\n" not in str(error.value) and decoders == [False]


def test_exif_orientation_is_not_applied(tmp_path):
    """Images stay as stored, like their masks: rotating one would misalign it with its mask."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(photo(20, 50)).save(path, exif=exif.tobytes(), quality=95)
    assert read_image(path).shape == (20, 50, 3)
    assert np.array_equal(read_image(path), pillow_rgb(path))


def test_bytes_after_the_end_marker_are_left_to_pillow(tmp_path, decoders):
    path = tmp_path / "padded.png"
    Image.fromarray(photo()).save(path)
    path.write_bytes(path.read_bytes() + b"trailing junk")
    assert np.array_equal(read_image(path), photo()) and decoders == [False]
