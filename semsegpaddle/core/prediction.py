"""Predict image files: palette masks (PNG, class index per pixel) and colour overlays."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from semsegpaddle.core.atomic import atomic_path
from semsegpaddle.core.errors import DataError
from semsegpaddle.core.evaluation import predict_batch


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB; unreadable files raise DataError naming them."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def save_mask(mask: np.ndarray, palette: np.ndarray, path: str | Path) -> None:
    """Write a class-index mask as a palette PNG (values are class ids, colours from ``palette``)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette[:256]
    image.putpalette(flat.flatten().tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the mask's colours blended in (uint8 H×W×3)."""
    colours = palette[np.clip(mask, 0, len(palette) - 1)]
    return (image * (1 - alpha) + colours * alpha).astype(np.uint8)


def predict_files(model, inputs: Sequence[str | Path], output_dir: str | Path, palette: np.ndarray,
                  overlay: bool = False, progress: bool = True) -> list[Path]:
    """Segment each input file into ``output_dir/<stem>.png`` (+ ``<stem>_overlay.png``)."""
    output_dir = Path(output_dir)
    written = []
    for path in tqdm(list(inputs), desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        image = read_image(path)
        mask = predict_batch(model, [image])[0]
        target = output_dir / f"{Path(path).stem}.png"
        save_mask(mask, palette, target)
        written.append(target)
        if overlay:
            with atomic_path(output_dir / f"{Path(path).stem}_overlay.png") as tmp:
                Image.fromarray(blend(image, mask, palette)).save(tmp, format="PNG")
    return written
