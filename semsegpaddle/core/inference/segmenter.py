"""Inference modes over any backend: whole image, sliding window, multi-scale with flip.

A *view* of an image is the image at one scale, mirrored or not. Each view is segmented whole or
by sliding windows; in a window's overlaps the logits are averaged. With more than one view, each
view's logits become softmax probabilities, are resized to the input size (mirrored back), and
are averaged. Memory stays bounded by the image size: one C×H×W float32 accumulator, the current
view's map at its own scale, and one window; views are added in place, never stacked.

Windows are ``crop_size`` and ``stride`` apart; the last window of a row or column is placed flush
with the border (as MMSeg's and PaddleSeg's slide inference do), so no window reaches past the
image and nothing is padded. An image smaller than the window is one window of its own size.

This module needs numpy and OpenCV only: a backend is any callable from an N×3×H×W float32 batch
(RGB, 0-255) to N×C×H×W logits (see :mod:`semsegpaddle.core.inference.backends`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from semsegpaddle.core.common.errors import ConfigError, SemsegError
from semsegpaddle.core.inference.backends import Backend

MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferenceMode:
    """How images are segmented: ``mode`` whole or slide (windows of ``crop_size`` [h, w],
    ``stride`` [h, w] apart, default 2/3 of the window), at each of ``scales``, and mirrored too
    when ``flip``. Invalid combinations raise :class:`ConfigError` naming the ``eval.*`` key."""

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"eval.mode: expected whole or slide, got {self.mode!r}")
        if not self.scales or not all(isinstance(s, (int, float)) and s > 0 for s in self.scales):
            raise ConfigError(f"eval.scales: expected a non-empty list of numbers > 0, got {list(self.scales)}")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        for key in ("crop_size", "stride"):
            value = getattr(self, key)
            if value is not None:
                if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
                    raise ConfigError(f"eval.{key}: expected [height, width], both integers > 0, got {list(value)}")
                object.__setattr__(self, key, (int(value[0]), int(value[1])))
        if self.mode != "slide":
            return
        if self.crop_size is None:
            raise ConfigError("eval.crop_size: eval.mode slide needs the window size [height, width], got null")
        if self.stride is None:
            object.__setattr__(self, "stride", tuple(max(1, math.ceil(c * 2 / 3)) for c in self.crop_size))
        if any(s > c for s, c in zip(self.stride, self.crop_size)):
            raise ConfigError(f"eval.stride: {list(self.stride)} must not exceed eval.crop_size "
                              f"{list(self.crop_size)} (pixels between windows would get no prediction)")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "InferenceMode":
        """The mode of a validated config's ``eval`` section; errors name the file that set the key."""
        section = config["eval"]
        try:
            return cls(section["mode"], _pair(section["crop_size"]), _pair(section["stride"]),
                       tuple(section["scales"]), bool(section["flip"]))
        except ConfigError as exc:
            source_of = getattr(config, "source_of", None)  # a loaded Config knows its files
            if source_of is None:
                raise
            raise ConfigError(f"{source_of(str(exc).split(':', 1)[0])}: {exc}") from None

    @property
    def views(self) -> list[tuple[float, bool]]:
        """(scale, mirrored) of every view, in the order they are computed."""
        return [(scale, flip) for scale in self.scales for flip in ((False, True) if self.flip else (False,))]

    @property
    def single_pass(self) -> bool:
        """True when an image is one forward pass (whole, scale 1, no flip): images of one size
        can then be batched."""
        return self.mode == "whole" and self.scales == (1.0,) and not self.flip

    def describe(self) -> str:
        """A short account, e.g. ``slide 512x1024/341x683, scales 0.75,1,1.25, flip``."""
        text = self.mode
        if self.mode == "slide":
            text += f" {self.crop_size[0]}x{self.crop_size[1]}/{self.stride[0]}x{self.stride[1]}"
        if self.scales != (1.0,):
            text += ", scales " + ",".join(f"{s:g}" for s in self.scales)
        return text + (", flip" if self.flip else "")


def _pair(value: Any) -> tuple[int, int] | None:
    return None if value is None else tuple(value)  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------------
# windows
# -------------------------------------------------------------------------------------------------


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start of each window along one axis: ``stride`` apart, the last one flush with the end
    (``[0]`` when the axis is no longer than the window)."""
    if length <= crop:
        return [0]
    count = -(-(length - crop) // stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def window_boxes(height: int, width: int, crop_size: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of every window over a height×width image, row by row."""
    rows = [(top, min(top + crop_size[0], height)) for top in window_starts(height, crop_size[0], stride[0])]
    cols = [(left, min(left + crop_size[1], width)) for left in window_starts(width, crop_size[1], stride[1])]
    return [(top, left, bottom, right) for top, bottom in rows for left, right in cols]


def coverage(length: int, crop: int, stride: int) -> np.ndarray:
    """How many windows cover each position along one axis (a pixel's count is the product of
    its row's and its column's: the windows form a grid)."""
    counts = np.zeros(length, np.float32)
    for start in window_starts(length, crop, stride):
        counts[start:start + crop] += 1
    return counts


# -------------------------------------------------------------------------------------------------
# numeric helpers (in place where the arrays are image-sized)
# -------------------------------------------------------------------------------------------------


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) × ``scale``, rounded half up, at least 1."""
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres) of an H×W×B image to ``size`` = (height, width)."""
    if image.shape[:2] == tuple(size):
        return image
    resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(*resized.shape[:2], *image.shape[2:])  # OpenCV drops a single band's axis


def softmax_(scores: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 of a C×H×W float32 array, in place; returns it."""
    scores -= scores.max(axis=0)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=0)
    return scores


def add_resized_(total: np.ndarray, scores: np.ndarray, mirrored: bool) -> None:
    """``total`` (C×H×W) += ``scores`` (C×h×w) resized bilinearly to H×W, mirrored back if asked;
    one channel at a time, so the only temporary is one H×W plane."""
    height, width = total.shape[1:]
    for channel, plane in enumerate(scores):
        if plane.shape != (height, width):
            plane = cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
        total[channel] += plane[:, ::-1] if mirrored else plane


def to_batch(image: np.ndarray) -> np.ndarray:
    """H×W×B image (any numeric dtype; 0-255 for RGB) → 1×B×H×W float32."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


# -------------------------------------------------------------------------------------------------
# the segmenter
# -------------------------------------------------------------------------------------------------


class Segmenter:
    """A backend with an inference mode: class masks and class probabilities of images.

    ``backend(batch N×3×H×W float32, RGB 0-255) -> N×C×H×W logits`` (numpy in, numpy out).
    """

    def __init__(self, backend: Backend, mode: InferenceMode | None = None) -> None:
        self.backend = backend
        self.mode = mode or InferenceMode()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The backend's logits for a batch, checked to be N×C×H×W at the batch's size."""
        out = np.asarray(self.backend(batch))
        n, _, height, width = batch.shape
        if out.ndim != 4 or out.shape[0] != n or out.shape[2:] != (height, width):
            raise SemsegError(f"the inference backend returned an array of shape {tuple(out.shape)} for input "
                              f"{tuple(batch.shape)}; expected N×classes×{height}×{width} logits")
        if out.dtype != np.float32 or not out.flags.writeable:  # views are softmaxed in place
            out = out.astype(np.float32)
        return out

    def masks(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N×H×W int64 class masks of H×W×3 images of one size."""
        if self.mode.single_pass:
            return self.logits(np.concatenate([to_batch(image) for image in images])).argmax(axis=1)
        return np.stack([self.scores(image).argmax(axis=0) for image in images])

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """C×H×W softmax probabilities of an H×W×3 image, averaged over the mode's views."""
        return self.scores(image, probabilities=True)

    def scores(self, image: np.ndarray, probabilities: bool = False) -> np.ndarray:
        """C×H×W class scores whose argmax is the prediction: the averaged probabilities, or, for
        a single view at scale 1 without ``probabilities``, its logits (softmax would not change
        the argmax)."""
        views = self.mode.views
        if len(views) == 1 and views[0][0] == 1.0 and not probabilities:
            return self._view(image, *views[0], mirror_back=True)
        height, width = image.shape[:2]
        total: np.ndarray | None = None
        for scale, mirrored in views:
            view = softmax_(self._view(image, scale, mirrored, mirror_back=False))
            if total is None:
                total = np.zeros((view.shape[0], height, width), np.float32)
            add_resized_(total, view, mirrored)
            del view
        total /= len(views)
        return total

    def _view(self, image: np.ndarray, scale: float, mirrored: bool, mirror_back: bool) -> np.ndarray:
        """C×h×w logits of one view at its own scale (mirrored as its input unless ``mirror_back``)."""
        scaled = resize_image(image, scaled_size(*image.shape[:2], scale))
        if mirrored:
            scaled = scaled[:, ::-1]
        if self.mode.mode == "slide":
            logits = self._slide(scaled)
        else:
            logits = self.logits(to_batch(scaled))[0]
        if mirrored and mirror_back:
            logits = np.ascontiguousarray(logits[:, :, ::-1])
        return logits

    def _slide(self, image: np.ndarray) -> np.ndarray:
        """C×H×W logits of an image from overlapping windows, averaged where they overlap."""
        height, width = image.shape[:2]
        crop, stride = self.mode.crop_size, self.mode.stride
        total: np.ndarray | None = None
        for top, left, bottom, right in window_boxes(height, width, crop, stride):
            logits = self.logits(to_batch(image[top:bottom, left:right]))[0]
            if total is None:
                total = np.zeros((logits.shape[0], height, width), np.float32)
            total[:, top:bottom, left:right] += logits
        total /= coverage(height, crop[0], stride[0])[None, :, None]
        total /= coverage(width, crop[1], stride[1])[None, None, :]
        return total
