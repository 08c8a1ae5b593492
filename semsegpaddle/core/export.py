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
                 tolerance: float = 1e-4, onnx: bool = False) -> ExportReport:
    """Save ``model`` with a dynamic N×3×H×W input (RGB 0–255 floats; normalisation is inside) and
    reload it to compare logits with the live model at each of ``check_sizes``; with ``onnx``,
    also convert to ``model.onnx`` and check it with onnxruntime the same way.

    Files (``model.json``, ``model.pdiparams``, [``model.onnx``,] ``export_info.json``) are written
    to a temporary folder beside ``output_dir`` and moved into place only after every check
    passed, so a failed export never leaves a half-written or wrong model where the old one was.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        paddle.jit.save(model, str(staging / MODEL_PREFIX),
                        input_spec=[InputSpec([None, 3, None, None], "float32", "x")])
        loaded = paddle.jit.load(str(staging / MODEL_PREFIX))
        runners = {"paddle": lambda x: loaded(x).numpy()}
        if onnx:
            runners["onnx"] = _export_onnx(staging)
        errors = {}
        rng = np.random.default_rng(0)
        for height, width in check_sizes:
            x = paddle.to_tensor(rng.uniform(0, 255, (1, 3, height, width)).astype(np.float32))
            expected = model(x).numpy()
            for kind, run in runners.items():
                got = run(x)
                if got.shape != expected.shape:
                    raise SemsegError(f"{kind} export check failed at {height}×{width}: "
                                      f"output {got.shape} vs {expected.shape}")
                key = f"{height}x{width}" if kind == "paddle" else f"{kind} {height}x{width}"
                errors[key] = float(np.abs(got - expected).max())
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


def _export_onnx(staging: Path):
    """Convert the saved Paddle model in ``staging`` to ``model.onnx``; return a function running it."""
    try:
        import onnxruntime
        import paddle2onnx
    except ImportError:
        raise SemsegError("ONNX export needs paddle2onnx and onnxruntime: pip install 'semsegpaddle[onnx]'") from None
    path = staging / f"{MODEL_PREFIX}.onnx"
    paddle2onnx.export(str(staging / f"{MODEL_PREFIX}.json"), str(staging / f"{MODEL_PREFIX}.pdiparams"), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]
