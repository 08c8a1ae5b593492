"""Read image and label files of any common pixel mode into the arrays the datasets and predict use.

Images become uint8 H×W×3 RGB whatever their mode:

- 8-bit modes (``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``CMYK``, ``YCbCr``, ...)
  are converted by Pillow; alpha is dropped, palettes are looked up.
- 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``) keeps its top byte (``v >> 8``): the full
  16-bit range maps onto 0–255, as an 8-bit view of the same picture; nothing is clipped.
- 32-bit integers (``I``, e.g. 16-bit data read from TIFF) are taken on the same 16-bit scale and
  must lie in 0–65535; 32-bit floats (``F``) are taken as 0–1 intensities and must lie in [0, 1].

:func:`read_bands` keeps every band of a TIFF (multispectral, 16-bit, float) as H×W×N, uint8 or
float32 on a stated scale; other formats it reads as :func:`read_image` does.

Labels become an integer H×W array of class ids (``L``, ``P`` (the index, not the colour), ``1``,
16-bit or 32-bit integer modes, or RGB whose three channels are equal). Float and colour label
files are refused: they do not hold one class id per pixel.

Speed: 8-bit RGB or grayscale JPEG and PNG files (the photographs and masks of every common
dataset) are decoded by OpenCV, which is faster than Pillow, into the same pixels; every other
file, and any file not complete on disk (no JPEG end marker or PNG ``IEND`` chunk), goes through
Pillow, so unreadable and truncated files raise the same one-line errors whichever decoder would
have been used. Neither decoder applies EXIF orientation: images stay aligned with their masks.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from semsegpaddle.core.common.errors import DataError

#: Pillow modes holding 16-bit unsigned grayscale
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
#: Pillow modes whose pixel value is directly an integer class id
INTEGER_LABEL_MODES = ("1", "L", "P", "I", *SIXTEEN_BIT)

_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def _unreadable(path: str | Path, what: str, exc: BaseException) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{path}: cannot read {what} ({reason})")


@contextmanager
def _opened(path: str | Path, what: str) -> Iterator[Image.Image]:
    """The file opened by Pillow (its header parsed, pixels not decoded yet); failures name the file."""
    try:
        image = Image.open(path)
    except Exception as exc:  # missing or corrupt files raise OSError, SyntaxError, struct.error, ...
        raise _unreadable(path, what, exc) from exc
    with image:
        yield image


def _decoded(image: Image.Image, path: str | Path, what: str) -> Image.Image:
    """``image`` with its pixels decoded by Pillow; failures (e.g. a truncated file) name the file."""
    try:
        image.load()
    except Exception as exc:
        raise _unreadable(path, what, exc) from exc
    return image


def _eight_bit(image: Image.Image, mode: str) -> bool:
    """True when the file stores 8-bit samples of ``mode`` (not 1/2/4/16-bit ones Pillow widens or narrows)."""
    if image.mode != mode:
        return False
    if image.format == "JPEG":
        return True
    if image.format != "PNG" or len(image.tile) != 1:
        return False
    return image.tile[0][3] == mode  # the PNG decoder's raw mode: "RGB", or e.g. "RGB;16B" for 16-bit


def _opencv_decode(path: str | Path, image: Image.Image, colour: bool) -> np.ndarray | None:
    """The pixels decoded by OpenCV (uint8 H×W×3 RGB, or H×W gray) when the file is one it decodes
    exactly as Pillow does and it is complete on disk; else None (Pillow decodes it)."""
    modes = ("RGB", "L") if colour else ("L",)
    if not any(_eight_bit(image, mode) for mode in modes):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None  # Pillow reports it
    if not data.rstrip(b"\0").endswith(_JPEG_END if image.format == "JPEG" else _PNG_END):
        return None  # truncated (or trailing bytes): Pillow decides and names the problem
    import cv2  # here, not at the top: the commands that read no pixels never import OpenCV

    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
    flags = (rgb_flag or cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    width, height = image.size
    if pixels is None or pixels.shape[:2] != (height, width) or pixels.dtype != np.uint8:
        return None
    if colour and rgb_flag is None:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels


def _as_uint16(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.uint16)  # I;16B arrives big-endian: make it native


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB (see the module docstring for each pixel mode).

    Unreadable files and pixel values outside their mode's range raise a one-line DataError
    naming the file.
    """
    return _read(path, "image", colour=True, from_pillow=_pillow_rgb)


def _read(path: str | Path, what: str, colour: bool,
          from_pillow: Callable[[Image.Image, str | Path], np.ndarray]) -> np.ndarray:
    """The file's pixels from OpenCV where it decodes them as Pillow would, else ``from_pillow``
    of the image Pillow decoded."""
    with _opened(path, what) as image:
        fast = _opencv_decode(path, image, colour)
        return fast if fast is not None else from_pillow(_decoded(image, path, what), path)


def _pillow_rgb(image: Image.Image, path: str | Path) -> np.ndarray:
    """A decoded Pillow image of any mode as uint8 H×W×3 RGB."""
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
    elif mode == "RGB":
        return np.array(image, dtype=np.uint8)  # one copy, writable
    else:
        try:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        except ValueError as exc:
            raise DataError(f"{path}: cannot convert pixel mode {mode} to RGB ({exc})") from exc
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


#: extensions :func:`read_bands` reads band by band through tifffile
TIFF_EXTENSIONS = (".tif", ".tiff")
#: 16-bit samples are divided by this to land on the 0-255 scale (65535 / 257 = 255 exactly)
SIXTEEN_BIT_SCALE = 257.0


def read_bands(path: str | Path) -> np.ndarray:
    """An image of any band count as an H×W×N array: uint8, or float32 on a stated scale.

    ``.tif``/``.tiff`` files are read by tifffile, every band kept (single-band, band-interleaved
    or band-sequential/planar layouts): 8-bit samples stay uint8; 16-bit unsigned samples become
    float32 divided by 257, the 0-255 scale of 8-bit images (no precision is lost, nothing is
    clipped); every other type (float, signed or 32-bit integers) becomes float32 in the file's own
    units, so ``model.mean``/``model.std`` must be given in those units. Other formats are read by
    :func:`read_image` (uint8 H×W×3 RGB). Unreadable files, more than one image in a file, and
    non-finite values raise a one-line DataError naming the file.
    """
    if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
        return read_image(path)
    import tifffile  # here: only multi-band reading needs it

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, pixels = series.axes, series.asarray()
    except Exception as exc:  # missing, not a TIFF, truncated, unsupported compression, ...
        raise _unreadable(path, "image", exc) from exc
    return _bands_last(pixels, axes, path)


def count_bands(path: str | Path) -> int:
    """The bands :func:`read_bands` would give for ``path``, from the file's header only (no pixels
    decoded): a TIFF's samples or planes, 3 for other formats. Unreadable or multi-image TIFFs raise
    the one-line DataError :func:`read_bands` would."""
    if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
        return 3
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, tuple(series.shape)
    except Exception as exc:
        raise _unreadable(path, "image", exc) from exc
    if len(shape) == 2:
        return 1
    if len(shape) == 3 and axes[1:] == "YX":
        return shape[0]
    if len(shape) == 3 and axes[:2] == "YX":
        return shape[2]
    raise DataError(f"{path}: cannot read image (expected one H×W×bands picture, the TIFF holds axes "
                    f"{axes} of shape {shape})")


def _bands_last(pixels: np.ndarray, axes: str, path: str | Path) -> np.ndarray:
    """A TIFF series' pixels as H×W×N, scaled as :func:`read_bands` states."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif pixels.ndim == 3 and axes[1:] == "YX":  # band-sequential: N×H×W
        pixels = np.moveaxis(pixels, 0, -1)
    elif pixels.ndim != 3 or axes[:2] != "YX":
        raise DataError(f"{path}: cannot read image (expected one H×W×bands picture, the TIFF holds axes "
                        f"{axes} of shape {pixels.shape})")
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        return np.ascontiguousarray(pixels, dtype=np.float32) / np.float32(SIXTEEN_BIT_SCALE)
    if pixels.dtype == np.bool_ or not (np.issubdtype(pixels.dtype, np.number)):
        raise DataError(f"{path}: cannot read image (samples of type {pixels.dtype}; expected 8/16-bit "
                        f"integers or floats)")
    values = np.ascontiguousarray(pixels, dtype=np.float32)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: image holds non-finite values (NaN or infinity); fill them before training")
    return values


def read_label(path: str | Path) -> np.ndarray:
    """A label file as an integer H×W array of class ids, in the file's integer type.

    ``P`` files give their palette indices. Float files, and colour files whose channels differ,
    raise a one-line DataError naming the file.
    """
    return _read(path, "label", colour=False, from_pillow=_pillow_label)


def _pillow_label(image: Image.Image, path: str | Path) -> np.ndarray:
    """A decoded Pillow image as an integer H×W array of class ids."""
    mode = image.mode
    if mode in SIXTEEN_BIT:
        return _as_uint16(image)
    if mode == "1":
        return np.array(image, dtype=np.uint8)
    if mode in INTEGER_LABEL_MODES:
        return np.array(image)
    if mode == "F":
        raise DataError(f"{path}: label file holds floating-point pixels (mode F); "
                        f"labels must be integer class ids (mode L, P or 16-bit grayscale)")
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[:, :, :3]
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all():
            return np.ascontiguousarray(rgb[:, :, 0])
    raise DataError(f"{path}: label file holds colours or several channels (mode {mode}); labels must "
                    f"hold one class id per pixel (mode L, P or 16-bit grayscale)")
