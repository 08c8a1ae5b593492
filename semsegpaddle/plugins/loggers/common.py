"""Helpers shared by the built-in loggers (light: no tracker package imported here)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

PARAMS_TAG = "params"
ARTIFACT_TAG = "artifacts"


def params_markdown(params: dict[str, Any]) -> str:
    """The flattened config as a two-column Markdown table (what TensorBoard and VisualDL show as text)."""
    rows = [f"| {key} | {'null' if value is None else value} |" for key, value in params.items()]
    return "\n".join(["| key | value |", "| --- | --- |", *rows])


def image_array(path: Path) -> Any:
    """An image file as an H×W×3 uint8 array."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def is_image(path: Path) -> bool:
    """True for the picture files a logger shows as images."""
    return path.suffix.lower() in (".png", ".jpg", ".jpeg")
