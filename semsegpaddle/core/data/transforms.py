"""Training augmentation: random rescale, random crop (padded where the image is too small),
horizontal flip and photometric distortion — OpenCV and vectorised numpy, no per-pixel Python.

Images are H×W×N, uint8 or float32, any band count N (``model.in_channels``); photometric
distortion, defined on RGB colours, takes 3-band uint8 images only.

Every random choice is drawn from the ``rng`` passed in, so a sample's augmentation is a function
of that generator's seed alone (the loader seeds it with (seed, slot)), whatever process runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Any

import cv2
import numpy as np

#: ``train.photometric: true`` means these settings (MMSeg's PhotoMetricDistortion defaults)
PHOTOMETRIC_DEFAULTS: dict[str, Any] = {"brightness": 32, "contrast": [0.5, 1.5], "saturation": [0.5, 1.5], "hue": 18}

_VALUES = np.arange(256, dtype=np.float32)


def _with_band_axis(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV returns a single-band H×W×1 image as H×W: give it its band axis back."""
    return result[:, :, None] if result.ndim == like.ndim - 1 else result


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The (height, width) an image of height×width has after rescaling by ``scale``."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def _aligned_start(needed: int, size: int, scaled: int) -> tuple[int, int]:
    """The last source index ≤ ``needed`` that falls on a whole pixel of the rescaled grid, and that pixel.

    A resize of a window starting there samples exactly the positions the full resize samples.
    """
    step = size // gcd(size, scaled)
    start = needed // step * step
    return start, start * scaled // size


def rescaled_window(image: np.ndarray, label: np.ndarray, scaled: tuple[int, int], top: int, left: int,
                    height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``top``.. and columns ``left``.. (``height``×``width``) of the image and label resized
    to ``scaled`` (bilinear image, nearest label, both sampling at pixel centres), computed from
    the source window they need rather than the whole image.

    The image window is resized by OpenCV at the full resize's exact factors, starting on a
    source pixel whose rescaled position is whole, so every kept pixel is interpolated from the
    same neighbours with the same weights as ``cv2.resize`` of the whole image (cropping first is
    up to ~8× cheaper at scale 2). The label's nearest pixels are looked up directly by the
    pixel-centre rule (INTER_NEAREST_EXACT's; not INTER_NEAREST, which samples off the centres
    INTER_LINEAR uses and would shift labels against the image by up to a pixel).
    """
    h, w = label.shape
    sh, sw = scaled
    if (sh, sw) == (h, w):
        return image[top:top + height, left:left + width], label[top:top + height, left:left + width]
    rows = np.minimum(((np.arange(top, top + height) + 0.5) * (h / sh)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(left, left + width) + 0.5) * (w / sw)).astype(np.int64), w - 1)
    label = np.take(np.take(label, rows, axis=0), cols, axis=1)
    y0, first_row = _aligned_start(max(0, int((top + 0.5) * h / sh - 0.5)), h, sh)
    x0, first_col = _aligned_start(max(0, int((left + 0.5) * w / sw - 0.5)), w, sw)
    y1 = min(h, int((top + height) * h / sh) + 2)  # + the bilinear neighbour below the last kept row
    x1 = min(w, int((left + width) * w / sw) + 2)
    window = _with_band_axis(cv2.resize(image[y0:y1, x0:x1], None, fx=sw / w, fy=sh / h,
                                        interpolation=cv2.INTER_LINEAR), image)
    image = window[top - first_row:top - first_row + height, left - first_col:left - first_col + width]
    return image, label


def pad_to(image: np.ndarray, label: np.ndarray, height: int, width: int,
           fill: tuple[float, ...], ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least height×width; image padding is ``fill`` (one value per band),
    label padding is ``ignore_index``."""
    h, w = label.shape
    ph, pw = max(height - h, 0), max(width - w, 0)
    if ph or pw:
        if image.ndim == 3 and image.shape[2] > 4:  # OpenCV's border value holds at most 4 bands
            padded = np.empty((h + ph, w + pw, image.shape[2]), image.dtype)
            padded[...] = np.asarray(fill, np.float64).round() if image.dtype == np.uint8 else fill
            padded[:h, :w] = image
            image = padded
        else:
            image = _with_band_axis(cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=fill), image)
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore_index)
    return image, label


def compact_label(label: np.ndarray, ignore_index: int) -> np.ndarray:
    """``label`` in the smallest type holding its values and ``ignore_index`` (uint8 for most
    datasets): OpenCV resizes and pads uint8 several times faster than int32."""
    if label.dtype == np.uint8 and 0 <= ignore_index <= 255:
        return label
    low = min(int(label.min(initial=0)), ignore_index)
    high = max(int(label.max(initial=0)), ignore_index)
    for dtype in (np.uint8, np.uint16):
        if low >= 0 and high <= np.iinfo(dtype).max:
            return label.astype(dtype, copy=False)
    return label.astype(np.int32, copy=False)


def _table(alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """Lookup table of ``v·alpha + beta`` clipped to 0–255 and truncated to uint8 (MMSeg's rounding)."""
    return np.clip(_VALUES * np.float32(alpha) + np.float32(beta), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Photometric:
    """Photometric distortion as MMSeg's PhotoMetricDistortion defines it, on uint8 RGB images.

    In order, each step applied with probability 1/2: brightness (add a value drawn from
    [-brightness, brightness]), contrast (multiply by a factor drawn from ``contrast``) either here
    or last (an even draw), saturation (HSV saturation × a factor drawn from ``saturation``), hue
    (HSV hue, OpenCV's 0–179 scale, shifted by an integer in [-hue, hue], wrapping round), and
    contrast if not done before. Every step clips to 0–255 and truncates, as MMSeg does. Each step
    is a 256-entry lookup table; saturation and hue share one HSV round trip (MMSeg converts to
    HSV and back once per step, which differs only by that extra rounding). A step whose setting
    is None is never applied (and draws nothing).
    """

    brightness: float | None = None
    contrast: tuple[float, float] | None = None
    saturation: tuple[float, float] | None = None
    hue: int | None = None

    @classmethod
    def from_config(cls, value: Any) -> "Photometric | None":
        """From ``train.photometric``: null/false → None (off), true → MMSeg's defaults, a mapping
        → the steps it names (an absent or null entry is a step not applied)."""
        if value is None or value is False:
            return None
        settings = PHOTOMETRIC_DEFAULTS if value is True else value
        pair = lambda v: None if v is None else (float(v[0]), float(v[1]))  # noqa: E731
        return cls(brightness=None if settings.get("brightness") is None else float(settings["brightness"]),
                   contrast=pair(settings.get("contrast")), saturation=pair(settings.get("saturation")),
                   hue=None if settings.get("hue") is None else int(settings["hue"]))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The distorted copy of a uint8 H×W×3 RGB image."""
        before = _table()
        if self.brightness is not None and rng.random() < 0.5:
            before = _table(beta=rng.uniform(-self.brightness, self.brightness))
        contrast_first = self.contrast is not None and rng.random() < 0.5
        after = None
        if self.contrast is not None and rng.random() < 0.5:
            step = _table(alpha=rng.uniform(*self.contrast))
            if contrast_first:
                before = step[before]  # truncating steps compose exactly as tables
            else:
                after = step
        hsv = np.stack([np.arange(256), np.arange(256), np.arange(256)], axis=-1).astype(np.uint8)
        change_hsv = False
        if self.saturation is not None and rng.random() < 0.5:
            hsv[:, 1] = _table(alpha=rng.uniform(*self.saturation))
            change_hsv = True
        if self.hue is not None and rng.random() < 0.5:
            shift = int(rng.integers(-self.hue, self.hue, endpoint=True))
            hsv[:180, 0] = (np.arange(180) + shift) % 180
            change_hsv = True
        out = cv2.LUT(image, before)
        if change_hsv:
            out = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            out = cv2.cvtColor(cv2.LUT(out, hsv[None]), cv2.COLOR_HSV2RGB)
        if after is not None:
            out = cv2.LUT(out, after)
        return out


class TrainTransform:
    """Random rescale in ``scale_range``, random crop to ``crop_size`` (bottom/right padding where
    the rescaled image is smaller: ``mean`` in the image, ``ignore_index`` in the label), random
    h-flip, and optional photometric distortion of the image (never of the padding or the label).

    The draws, in order: scale, crop top, crop left, flip, then the photometric ones; so turning
    photometric distortion on or off leaves the geometry of every sample unchanged.
    """

    def __init__(self, crop_size: list[int], scale_range: list[float], flip: bool,
                 mean: list[float], ignore_index: int, photometric: Photometric | None = None) -> None:
        self.crop_h, self.crop_w = crop_size
        self.scale_range = scale_range
        self.flip = flip
        self.fill = tuple(float(m) for m in mean)
        self.ignore_index = ignore_index
        if photometric is not None and len(mean) != 3:
            raise ValueError(f"train.photometric: photometric distortion works on 3-band RGB images only, "
                             f"model.in_channels is {len(mean)}; set train.photometric: false")
        self.photometric = photometric

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one H×W×N image (uint8 or float32) and its H×W label; returns crop-sized arrays."""
        label = compact_label(label, self.ignore_index)
        low, high = self.scale_range
        h, w = label.shape
        if (low, high) != (1.0, 1.0):
            h, w = scaled_size(h, w, float(rng.uniform(low, high)))
        top = int(rng.integers(0, max(h - self.crop_h, 0) + 1))
        left = int(rng.integers(0, max(w - self.crop_w, 0) + 1))
        image, label = rescaled_window(image, label, (h, w), top, left, min(self.crop_h, h - top),
                                       min(self.crop_w, w - left))
        flip = self.flip and rng.random() < 0.5
        if self.photometric is not None:
            image = self.photometric(image, rng)
        image, label = pad_to(image, label, self.crop_h, self.crop_w, self.fill, self.ignore_index)
        if flip:
            image, label = _with_band_axis(cv2.flip(image, 1), image), cv2.flip(label, 1)
        return image, label


def to_planes(image: np.ndarray) -> np.ndarray:
    """H×W×N → contiguous N×H×W of the same type (cv2.split: several times faster than a numpy
    transpose copy)."""
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    return np.stack(cv2.split(image))


def to_model_input(image: np.ndarray) -> np.ndarray:
    """H×W×N → float32 N×H×W in the image's units (0–255 for RGB; the model normalises)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
