"""Export a trained model for Paddle Inference, with any input size, and verify the export."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import paddle
from paddle.static import InputSpec

from semsegpaddle.core.errors import SemsegError

MODEL_PREFIX = "model"


@dataclass
class ExportReport:
    """Where the export went and how closely it reproduced the model at each checked size."""

    output_dir: Path
    max_abs_error: dict[str, float]


def export_model(model: paddle.nn.Layer, output_dir: str | Path, class_names: Sequence[str],
                 palette: np.ndarray, check_sizes: Sequence[tuple[int, int]] = ((64, 64), (48, 80)),
                 tolerance: float = 1e-4) -> ExportReport:
    """Save ``model`` with a dynamic N×3×H×W input (RGB 0–255 floats; normalisation is inside) and
    reload it to compare logits with the live model at each of ``check_sizes``.

    Files (``model.json``, ``model.pdiparams``, ``export_info.json``) are written to a temporary
    folder beside ``output_dir`` and moved into place only after the check passed, so a failed
    export never leaves a half-written or wrong model where the old one was.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        paddle.jit.save(model, str(staging / MODEL_PREFIX),
                        input_spec=[InputSpec([None, 3, None, None], "float32", "x")])
        loaded = paddle.jit.load(str(staging / MODEL_PREFIX))
        errors = {}
        rng = np.random.default_rng(0)
        for height, width in check_sizes:
            x = paddle.to_tensor(rng.uniform(0, 255, (1, 3, height, width)).astype(np.float32))
            expected, got = model(x).numpy(), loaded(x).numpy()
            if got.shape != expected.shape:
                raise SemsegError(f"export check failed at {height}×{width}: output {got.shape} vs {expected.shape}")
            errors[f"{height}x{width}"] = float(np.abs(got - expected).max())
        worst = max(errors.values())
        if worst > tolerance:
            raise SemsegError(f"export check failed: max |exported - model| = {worst:.3g} > {tolerance} ({errors})")
        info = {"input": {"name": "x", "shape": ["N", 3, "H", "W"], "dtype": "float32",
                          "meaning": "RGB, 0-255 (normalisation is inside the model)"},
                "output": {"shape": ["N", len(class_names), "H", "W"], "meaning": "logits; argmax over axis 1"},
                "class_names": list(class_names), "palette": np.asarray(palette).tolist(),
                "verified_max_abs_error": errors}
        (staging / "export_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output_dir.rename(old)
            staging.rename(output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(output_dir, errors)
