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


class WriterLogger:
    """What the VisualDL and TensorBoard loggers share: a writer with ``add_scalar``, ``flush`` and
    ``close`` opened by the subclass's ``start``, and the step of the last scalars (artefacts are
    logged at it)."""

    def __init__(self, *, flush_secs: int = 30) -> None:
        self.flush_secs = flush_secs
        self.writer: Any = None
        self.last_step = 0

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One value per tag at ``step``."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.last_step = step

    def flush(self) -> None:
        """Write buffered records."""
        self.writer.flush()

    def finish(self, status: str) -> None:
        """Close the writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
