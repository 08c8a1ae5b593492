"""Tiny multi-band TIFF folder datasets for the N-band tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def tiff_dataset(root: Path, bands: int, train: int = 4, val: int = 2, size: tuple[int, int] = (40, 48)) -> list[np.ndarray]:
    """A 16-bit TIFF folder dataset under ``root`` (images/{split}, masks/{split}): a bright square
    (class 1) or a dark one (class 2) in band 0 on noise. Returns the train images' raw pixels."""
    import tifffile

    rng = np.random.default_rng(bands)
    height, width = size
    written = []
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(20000, 40000, (height, width, bands), dtype=np.uint16)
            label = np.zeros((height, width), np.uint8)
            top, left = rng.integers(0, height // 2, size=2)
            cls = 1 + index % 2
            pixels[top:top + height // 2, left:left + width // 2, 0] = 60000 if cls == 1 else 2000
            label[top:top + height // 2, left:left + width // 2] = cls
            write_tiff(root / "images" / split / f"{index}.tif", pixels)
            Image.fromarray(label).save(root / "masks" / split / f"{index}.png")
            if split == "train":
                written.append(pixels)
    return written


def write_tiff(path: Path, pixels: np.ndarray) -> None:
    """``pixels`` (H×W×bands) as a TIFF: single-band as H×W, more bands interleaved."""
    import tifffile

    if pixels.shape[2] == 1:
        tifffile.imwrite(path, pixels[:, :, 0], photometric="minisblack")
    else:
        tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")
