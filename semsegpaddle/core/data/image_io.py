"""Read image and label files of any common pixel mode into the arrays the datasets and predict use.

Images become uint8 H×W×3 RGB whatever their mode:

- 8-bit modes (``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``CMYK``, ``YCbCr``, ...)
  are converted by Pillow; alpha is dropped, palettes are looked up.
- 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``) keeps its top byte (``v >> 8``): the full
  16-bit range maps onto 0–255, as an 8-bit view of the same picture; nothing is clipped.
- 32-bit integers (``I``, e.g. 16-bit data read from TIFF) are taken on the same 16-bit scale and
  must lie in 0–65535; 32-bit floats (``F``) are taken as 0–1 intensities and must lie in [0, 1].

Labels become an integer H×W array of class ids (``L``, ``P`` (the index, not the colour), ``1``,
16-bit or 32-bit integer modes, or RGB whose three channels are equal). Float and colour label
files are refused: they do not hold one class id per pixel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from semsegpaddle.core.errors import DataError

#: Pillow modes holding 16-bit unsigned grayscale
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
#: Pillow modes whose pixel value is directly an integer class id
INTEGER_LABEL_MODES = ("1", "L", "P", "I", *SIXTEEN_BIT)


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and decode ``path`` fully (Pillow decodes lazily); any failure names the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Exception as exc:  # corrupt files raise OSError, SyntaxError, struct.error, ...
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read {what} ({reason})") from exc


def _as_uint16(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.uint16)  # I;16B arrives big-endian: make it native


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB (see the module docstring for each pixel mode).

    Unreadable files and pixel values outside their mode's range raise a one-line DataError
    naming the file.
    """
    image = _open(path, "image")
    mode = image.mode
    if mode in SIXTEEN_BIT:
        gray = (_as_uint16(image) >> 8).astype(np.uint8)
    elif mode == "I":
        values = np.asarray(image)
        low, high = int(values.min(initial=0)), int(values.max(initial=0))
        if low < 0 or high > 0xFFFF:
            raise DataError(f"{path}: 32-bit integer pixels must lie in 0-65535 (the 16-bit scale), "
                            f"found {low}..{high}")
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
    elif mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise DataError(f"{path}: floating-point pixels must lie in [0, 1], "
                            f"found {np.nanmin(values):.4g}..{np.nanmax(values):.4g}")
        gray = np.rint(values * 255.0).astype(np.uint8)
    else:
        try:
            return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except ValueError as exc:
            raise DataError(f"{path}: cannot convert pixel mode {mode} to RGB ({exc})") from exc
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def read_label(path: str | Path) -> np.ndarray:
    """A label file as an integer H×W array of class ids, in the file's integer type.

    ``P`` files give their palette indices. Float files, and colour files whose channels differ,
    raise a one-line DataError naming the file.
    """
    image = _open(path, "label")
    mode = image.mode
    if mode in SIXTEEN_BIT:
        return _as_uint16(image)
    if mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if mode in INTEGER_LABEL_MODES:
        return np.asarray(image)
    if mode == "F":
        raise DataError(f"{path}: label file holds floating-point pixels (mode F); "
                        f"labels must be integer class ids (mode L, P or 16-bit grayscale)")
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[:, :, :3]
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all():
            return np.ascontiguousarray(rgb[:, :, 0])
    raise DataError(f"{path}: label file holds colours or several channels (mode {mode}); labels must "
                    f"hold one class id per pixel (mode L, P or 16-bit grayscale)")
