"""Training augmentation: geometry keeps labels aligned and pads with ignore_index, photometric
distortion changes only the image and each property within its range, batches do not depend on workers."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data.transforms import PHOTOMETRIC_DEFAULTS, Photometric, TrainTransform

from tests.helpers.tiny import TINY_CONFIG, TwoSquares

MEAN = [123.675, 116.28, 103.53]
FILL = [round(m) for m in MEAN]  # the uint8 image's padding


def blocks(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A label of 8-px blocks of classes 0-3 and an image whose value encodes the class (40 + 50·class)."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 4, (height // 8 + 1, width // 8 + 1)), np.ones((8, 8), np.int64))[:height, :width]
    image = np.repeat((40 + 50 * label).astype(np.uint8)[..., None], 3, axis=2)
    return image, label


def geometry(seed: int, size: tuple[int, int], crop: tuple[int, int], scale_range) -> tuple[int, int, int, int, bool]:
    """The rescaled size, crop corner and flip that TrainTransform draws, in its documented order."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(*scale_range) if tuple(scale_range) != (1.0, 1.0) else 1.0
    height, width = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    top = int(rng.integers(0, max(height - crop[0], 0) + 1))
    left = int(rng.integers(0, max(width - crop[1], 0) + 1))
    return height, width, top, left, bool(rng.random() < 0.5)


def source_positions(out: int, offset: int, scaled: int, original: int) -> np.ndarray:
    """Where output pixels ``0..out-1`` (at ``offset`` in the rescaled image) sample the original (pixel centres)."""
    return (np.arange(out) + offset + 0.5) * original / scaled - 0.5


def expected_crop(image: np.ndarray, label: np.ndarray, scaled: tuple[int, int], corner: tuple[int, int],
                  out: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    """The crop computed from first principles: the nearest label (both candidates where an output
    pixel centre falls exactly between two source pixels) and the bilinear image (float)."""
    ys = source_positions(out[0], corner[0], scaled[0], label.shape[0])
    xs = source_positions(out[1], corner[1], scaled[1], label.shape[1])
    labels = []
    for y_shift, x_shift in [(0.5, 0.5), (0.5 - 1e-6, 0.5), (0.5, 0.5 - 1e-6), (0.5 - 1e-6, 0.5 - 1e-6)]:
        near_y = np.clip(np.floor(ys + y_shift).astype(int), 0, label.shape[0] - 1)  # at an exact tie
        near_x = np.clip(np.floor(xs + x_shift).astype(int), 0, label.shape[1] - 1)  # either neighbour is right
        labels.append(label[near_y][:, near_x])
    y0 = np.clip(np.floor(ys).astype(int), 0, label.shape[0] - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, label.shape[1] - 1)
    y1, x1 = np.minimum(y0 + 1, label.shape[0] - 1), np.minimum(x0 + 1, label.shape[1] - 1)
    fy = np.where(ys < 0, 0, ys - np.floor(ys))[:, None]  # clamped at the border, as OpenCV replicates it
    fx = np.where(xs < 0, 0, xs - np.floor(xs))[None]
    v = image[..., 0].astype(np.float64)
    top_row = (1 - fx) * v[y0][:, x0] + fx * v[y0][:, x1]
    bottom_row = (1 - fx) * v[y1][:, x0] + fx * v[y1][:, x1]
    bilinear = (1 - fy) * top_row + fy * bottom_row
    return labels, bilinear


@pytest.mark.parametrize("size", [(20, 24), (40, 40), (40, 12), (12, 40), (33, 37), (80, 96)])
@pytest.mark.parametrize("scale_range", [(1.0, 1.0), (0.25, 0.6), (0.5, 2.0), (1.5, 3.0)])
def test_scale_crop_flip_keep_labels_aligned_and_pad_with_ignore(size, scale_range):
    """Each output pixel against the source pixel it should come from: the label exactly (nearest), the
    image within 1 of bilinear interpolation; everything outside the rescaled image is padding."""
    image, label = blocks(*size)
    crop = (32, 36)
    transform = TrainTransform(list(crop), list(scale_range), True, MEAN, ignore_index=255)
    flips = set()
    for seed in range(12):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == (*crop, 3) and out_label.shape == crop and out_image.dtype == np.uint8
        height, width, top, left, flip = geometry(seed, size, crop, scale_range)
        flips.add(flip)
        if flip:
            out_image, out_label = out_image[:, ::-1], out_label[:, ::-1]
        valid = (min(crop[0], height), min(crop[1], width))
        pad = np.ones(crop, bool)
        pad[:valid[0], :valid[1]] = False
        assert (out_label[pad] == 255).all() and (out_image[pad] == FILL).all()
        want_labels, want_image = expected_crop(image, label, (height, width), (top, left), valid)
        got_label, got_image = out_label[:valid[0], :valid[1]], out_image[:valid[0], :valid[1], 0]
        assert np.logical_or.reduce([got_label == want for want in want_labels]).all()
        assert np.abs(got_image - want_image).max() <= 1.0
    assert flips == {True, False}


def test_flip_moves_image_and_label_together():
    image, label = blocks(32, 32)
    plain = TrainTransform([32, 32], [1.0, 1.0], False, MEAN, 255)
    flipping = TrainTransform([32, 32], [1.0, 1.0], True, MEAN, 255)
    outcomes = set()
    for seed in range(8):
        flipped_image, flipped_label = flipping(image, label, np.random.default_rng(seed))
        same = (flipped_label == label).all()
        outcomes.add(bool(same))
        if not same:
            assert (flipped_label == label[:, ::-1]).all() and (flipped_image == image[:, ::-1]).all()
        assert (plain(image, label, np.random.default_rng(seed))[1] == label).all()
    assert outcomes == {True, False}


@pytest.mark.parametrize("ignore_index, value", [(1000, 300), (70000, 5), (-1, 2)])
def test_labels_beyond_uint8_are_resized_and_padded_exactly(ignore_index, value):
    label = np.full((10, 10), value, np.int64)
    label[0, 0] = 0
    image = np.zeros((10, 10, 3), np.uint8)
    transform = TrainTransform([16, 12], [0.5, 1.5], False, MEAN, ignore_index=ignore_index)
    for seed in range(6):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        height, width, _, _, _ = geometry(seed, (10, 10), (16, 12), (0.5, 1.5))
        pad = np.ones((16, 12), bool)
        pad[:min(16, height), :min(12, width)] = False
        assert (out_label[pad] == ignore_index).all()
        assert value in out_label[~pad] and set(np.unique(out_label[~pad]).tolist()) <= {0, value}


def photometric(**settings) -> Photometric:
    return Photometric.from_config(settings)


def many(distortion: Photometric, image: np.ndarray, draws: int = 200) -> list[np.ndarray]:
    return [distortion(image, np.random.default_rng(seed)) for seed in range(draws)]


def test_photometric_changes_the_image_only_and_not_the_geometry():
    image, label = blocks(40, 48)
    plain = TrainTransform([24, 24], [0.5, 1.5], True, MEAN, 255)
    distorted = TrainTransform([24, 24], [0.5, 1.5], True, MEAN, 255, Photometric.from_config(True))
    changed = 0
    for seed in range(10):
        a_image, a_label = plain(image, label, np.random.default_rng(seed))
        b_image, b_label = distorted(image, label, np.random.default_rng(seed))
        assert (a_label == b_label).all()
        pad = a_label == 255
        assert (b_image[pad] == FILL).all()  # padding is added after the distortion
        changed += int((a_image != b_image).any())
    assert changed >= 5


def test_brightness_adds_a_value_within_the_range_half_the_time():
    grey = np.full((4, 4, 3), 100, np.uint8)
    values = [int(out[0, 0, 0]) for out in many(photometric(brightness=32), grey)]
    assert all(68 <= v <= 132 for v in values)
    assert 60 <= sum(v == 100 for v in values) <= 140  # probability 1/2 (plus rare zero deltas)
    assert min(values) < 75 and max(values) > 125
    bright = np.full((2, 2, 3), 250, np.uint8)
    assert max(int(out.max()) for out in many(photometric(brightness=32), bright)) == 255  # clipped, no wrap


def test_contrast_multiplies_within_the_range():
    grey = np.full((4, 4, 3), 100, np.uint8)
    values = [int(out[0, 0, 0]) for out in many(photometric(contrast=[0.5, 1.5]), grey)]
    assert all(50 <= v <= 150 for v in values)
    assert min(values) < 60 and max(values) > 140


def hsv(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int64)


def test_saturation_scales_the_hsv_saturation_within_the_range():
    colour = np.tile(np.array([200, 120, 80], np.uint8), (4, 4, 1))
    h0, s0, v0 = hsv(colour)[0, 0]
    outs = [hsv(out)[0, 0] for out in many(photometric(saturation=[0.5, 1.5]), colour)]
    ratios = [s / s0 for _, s, _ in outs]
    assert all(0.5 - 0.02 <= r <= 1.5 + 0.02 for r in ratios)
    assert min(ratios) < 0.6 and max(ratios) > 1.3
    assert all(abs(h - h0) <= 1 and abs(v - v0) <= 1 for h, _, v in outs)  # hue and value stay


def test_hue_shifts_within_the_range_and_wraps_round():
    colour = np.tile(np.array([60, 200, 90], np.uint8), (4, 4, 1))
    h0 = hsv(colour)[0, 0, 0]
    shifts = [(hsv(out)[0, 0, 0] - h0 + 90) % 180 - 90 for out in many(photometric(hue=18), colour)]
    assert all(abs(s) <= 18 + 1 for s in shifts)
    assert min(shifts) < -12 and max(shifts) > 12
    red = np.tile(np.array([255, 0, 0], np.uint8), (4, 4, 1))  # hue 0: a negative shift must wrap to 162-179
    outs = many(photometric(hue=18), red)
    hues = [int(hsv(out)[0, 0, 0]) for out in outs]
    assert any(h >= 162 for h in hues) and any(0 < h <= 18 for h in hues)
    assert all(h == 0 or h <= 19 or h >= 161 for h in hues)
    wrapped = outs[hues.index(max(hues))][0, 0]
    assert wrapped[0] == 255 and wrapped[2] > wrapped[1]  # a pinkish red, not red clipped at hue 0


@pytest.mark.parametrize("value, expected", [
    (None, None), (False, None),
    (True, Photometric(32.0, (0.5, 1.5), (0.5, 1.5), 18)),
    ({"hue": 10}, Photometric(None, None, None, 10)),
    ({"brightness": 16, "contrast": [0.8, 1.2], "saturation": None}, Photometric(16.0, (0.8, 1.2), None, None)),
])
def test_photometric_settings(value, expected):
    assert Photometric.from_config(value) == expected
    assert set(PHOTOMETRIC_DEFAULTS) == {"brightness", "contrast", "saturation", "hue"}


@pytest.mark.parametrize("value", ["{contrast: [1.5, 0.5]}", "{hue: 18.5}", "{gamma: 2}", "{brightness: -1}", "7"])
def test_bad_photometric_settings_are_refused_naming_the_key(value):
    from semsegpaddle.core.common.errors import ConfigError

    with pytest.raises(ConfigError, match="'train.photometric' expects"):
        config_from_dict({}, [f"train.photometric={value}"])


def test_batches_are_identical_with_any_number_of_workers(tiny_plugins):
    from semsegpaddle.core.data.datasets import train_loader

    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(iters=5, batch_size=3, scale_range=[0.5, 1.5], crop_size=[24, 40], photometric=True)
    dataset = TwoSquares("train", size=32, count=7)

    def batches(workers: int) -> list[tuple[np.ndarray, np.ndarray]]:
        config = config_from_dict({**data, "train": {**data["train"], "num_workers": workers}})
        return [(images.numpy(), labels.numpy()) for images, labels in train_loader(dataset, config, start=1)]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 4
    for (a_images, a_labels), (b_images, b_labels) in zip(serial, parallel, strict=True):
        assert a_images.tobytes() == b_images.tobytes() and a_labels.tobytes() == b_labels.tobytes()
    assert (serial[0][1] == 255).any()  # the 0.5 scale pads some crops


def test_workers_start_after_the_parent_used_opencv_threads():
    """OpenCV's thread pool, once used in the parent, must not hang forked workers (calling
    cv2.setNumThreads in a forked child did, after a cv2.remap in the parent)."""
    import subprocess
    import sys

    script = """
import cv2, numpy as np
from semsegpaddle.core.data.batches import iterate_batches
cv2.setNumThreads(2)
big = np.zeros((1024, 2048, 3), np.uint8)
grid = np.mgrid[0:1024, 0:2048].astype(np.float32)
cv2.remap(big, grid[1], grid[0], cv2.INTER_NEAREST)  # runs on OpenCV's threads in this process
load = lambda key: (cv2.resize(big, (1500, 1500))[:4, :4, 0] + key, np.array(cv2.getNumThreads()))
batches = list(iterate_batches(load, [[1, 2], [3, 4], [5, 6]], num_workers=2))
assert cv2.getNumThreads() == 2  # restored in this process; the workers ran OpenCV on one thread
assert all((threads == 1).all() for _, threads in batches)
print([int(images.sum()) for images, _ in batches])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[48, 112, 176]"


def test_rescaling_the_crop_window_gives_the_full_resizes_pixels():
    """The window is resized as the whole image would be: the same pixels as cv2.resize of the whole
    image, then cropped (at most an occasional ±1 from float rounding of the positions)."""
    from semsegpaddle.core.data.transforms import rescaled_window, scaled_size

    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = int(rng.integers(5, 200)), int(rng.integers(5, 200))
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        sh, sw = scaled_size(h, w, float(rng.uniform(0.25, 3.0)))
        ch, cw = int(rng.integers(1, sh + 1)), int(rng.integers(1, sw + 1))
        top, left = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        got, _ = rescaled_window(image, np.zeros((h, w), np.uint8), (sh, sw), top, left, ch, cw)
        want = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)[top:top + ch, left:left + cw]
        assert got.shape == want.shape
        difference = np.abs(got.astype(int) - want)
        assert difference.max() <= 1 and (difference == 0).mean() >= 0.999
