"""The served model: loaded once per worker exactly as ``semseg predict`` loads it, and the steps
from an uploaded file to a mask that predict takes (the same readers, the same segmenter)."""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from semsegpaddle.core.common.errors import DataError, SemsegError
from semsegpaddle.core.data.image_io import read_bands, read_image
from semsegpaddle.core.inference.segmenter import InferenceMode, Segmenter

__all__ = ["ServedModel", "load_served_model", "decode_upload", "mask_png", "overlay_bytes"]


@dataclass
class ServedModel:
    """A backend with what the server tells about it: classes, palette, bands and the default
    inference mode (the config's ``eval`` section, as ``semseg predict`` uses)."""

    backend: Any
    class_names: list[str]
    palette: np.ndarray
    in_channels: int
    default_mode: InferenceMode
    backend_name: str
    config_name: str
    #: ``eval.crop_size`` / ``eval.stride`` of the config: the windows of ``mode=slide``
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    #: ``runtime.threads`` (0: every core), set again in the thread that runs the model
    threads: int = 0
    _segmenters: dict[InferenceMode, Segmenter] = field(default_factory=dict, repr=False)

    def masks(self, images: Sequence[np.ndarray], mode: InferenceMode) -> np.ndarray:
        """N×H×W class masks of same-size images in ``mode`` (called from one thread at a time)."""
        segmenter = self._segmenters.get(mode)
        if segmenter is None:
            segmenter = self._segmenters[mode] = Segmenter(self.backend, mode)
        return segmenter.masks(list(images))

    def prepare_thread(self) -> None:
        """Give the model's thread the CPU kernel threads the config asks for (as predict's thread has)."""
        if self.backend_name == "dynamic":
            from semsegpaddle.core.common.runtime import set_threads

            set_threads(self.threads)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers."""
        return {"config": self.config_name, "backend": self.backend_name, "input_channels": self.in_channels,
                "num_classes": len(self.class_names), "class_names": list(self.class_names),
                "palette": self.palette[: len(self.class_names)].tolist(), "default_mode": self.default_mode.describe()}


def load_served_model(config: dict[str, Any], weights: str | Path | None, *, backend: str = "dynamic",
                      model_dir: str | Path | None = None, config_name: str = "") -> ServedModel:
    """Restore the model the way :func:`semsegpaddle.api.predict` does: the runtime set up from the
    config, the checkpoint's (or export's) classes and palette, the config's inference mode."""
    from semsegpaddle.core.engine.restore import checkpoint_labels, load_backend
    from semsegpaddle.core.engine.trainer import setup_runtime

    mode = InferenceMode.from_config(config)
    setup_runtime(config)
    if backend == "dynamic" and model_dir is None:
        labels = checkpoint_labels(config, weights)
        runner = load_backend(config, weights, num_classes=labels["num_classes"])
        names, palette = labels["class_names"], labels["palette"]
    else:
        runner = load_backend(config, weights, backend=backend, model_dir=model_dir)
        names, palette = runner.class_names, runner.palette
    section = config["eval"]
    return ServedModel(runner, [str(n) for n in names], np.asarray(palette, dtype=np.uint8),
                       int(getattr(runner, "in_channels", 3)), mode, backend, config_name,
                       _pair(section.get("crop_size")), _pair(section.get("stride")), int(config["runtime"]["threads"]))


def _pair(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


#: file suffix the readers go by, per format the limits accept
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}


def decode_upload(data: bytes, image_format: str, bands: int, workdir: str | Path) -> np.ndarray:
    """The uploaded image as ``semseg predict`` reads a file of that format: the bytes are written to
    a private file under ``workdir`` (named by the server, never by the request) and read by the
    same readers; unreadable data and a band count other than the model's are a one-line DataError
    saying ``image: ...`` (no server path)."""
    handle, name = tempfile.mkstemp(suffix=SUFFIXES[image_format], dir=workdir)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            image = read_image(name) if bands == 3 else read_bands(name)
        except DataError as exc:
            raise DataError(str(exc).replace(name, "image")) from None
    finally:
        os.unlink(name)
    if image.shape[2] != bands:
        raise DataError(f"image: has {image.shape[2]} band{'s' if image.shape[2] != 1 else ''}, "
                        f"the model takes {bands}")
    return image


def mask_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    """A class-index mask as palette PNG bytes (pixel value = class id), as ``semseg predict`` writes."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette[:256]
    image.putpalette(flat.flatten().tolist())
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def overlay_bytes(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float, encoding: str,
                  bands: int) -> bytes:
    """The overlay ``semseg predict --overlay`` draws, as JPEG or PNG bytes."""
    from semsegpaddle.core.inference.prediction import blend, check_rgb_bands, overlay_picture

    picture = image if bands == 3 else overlay_picture(image, check_rgb_bands(None, bands))
    out = io.BytesIO()
    Image.fromarray(blend(picture, mask, palette, alpha)).save(out, format="JPEG" if encoding == "jpeg" else "PNG",
                                                              **({"quality": 90} if encoding == "jpeg" else {}))
    return out.getvalue()


def check_mode_pixels(height: int, width: int, mode: InferenceMode, max_pixels: int) -> None:
    """A SemsegError when a view of ``mode`` would exceed ``max_pixels`` (scales above 1 grow it)."""
    largest = max(mode.scales)
    if height * width * largest * largest > max_pixels:
        raise SemsegError(f"scale {largest:g} makes a {width}x{height} image larger than the server's "
                          f"--max-image-pixels {max_pixels}")
