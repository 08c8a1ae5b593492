"""Training augmentation: random rescale, pad, random crop, horizontal flip (numpy + OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np


def rescale(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize by ``scale``: bilinear for the image, nearest for the label.

    INTER_NEAREST_EXACT, not INTER_NEAREST: the latter samples off the pixel centres that
    INTER_LINEAR uses, shifting labels against the image by up to a pixel.
    """
    h, w = label.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT)
    return image, label


def pad_to(image: np.ndarray, label: np.ndarray, height: int, width: int,
           fill: tuple[float, ...], ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least height×width; label padding is ``ignore_index``."""
    h, w = label.shape
    ph, pw = max(height - h, 0), max(width - w, 0)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=fill)
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore_index)
    return image, label


class TrainTransform:
    """Random rescale in ``scale_range``, pad + random crop to ``crop_size``, random h-flip."""

    def __init__(self, crop_size: list[int], scale_range: list[float], flip: bool,
                 mean: list[float], ignore_index: int) -> None:
        self.crop_h, self.crop_w = crop_size
        self.scale_range = scale_range
        self.flip = flip
        self.fill = tuple(float(m) for m in mean)
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        label = label.astype(np.int32)
        low, high = self.scale_range
        if (low, high) != (1.0, 1.0):
            image, label = rescale(image, label, float(rng.uniform(low, high)))
        image, label = pad_to(image, label, self.crop_h, self.crop_w, self.fill, self.ignore_index)
        h, w = label.shape
        top = int(rng.integers(0, h - self.crop_h + 1))
        left = int(rng.integers(0, w - self.crop_w + 1))
        image = image[top:top + self.crop_h, left:left + self.crop_w]
        label = label[top:top + self.crop_h, left:left + self.crop_w]
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label


def to_model_input(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 → float32 3×H×W in 0–255 (the model normalises)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
