"""The dataset contract, importable without paddle (``semseg check-data`` never loads a model)."""
from __future__ import annotations

import numpy as np


class SegDataset:
    """A sized, indexable collection of (image, label) pairs with a declared label space.

    ``dataset[i]`` returns ``(image, label)``: image uint8 H×W×3 RGB, label an integer H×W array
    whose values lie in ``[0, num_classes)`` or equal ``ignore_index``.
    """

    num_classes: int
    ignore_index: int = 255
    class_names: tuple[str, ...] = ()
    palette: np.ndarray  # num_classes × 3 uint8 RGB colours

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (a file path, a seed), for error messages."""
        return f"sample {index}"


def default_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map, extended to ``num_classes`` colours (uint8, num_classes × 3)."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        value, color = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                color[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = color
    return palette
