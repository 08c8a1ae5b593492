"""Export a trained model for Paddle Inference, with any input size, and verify the export.

The model is traced with :func:`~semsegpaddle.core.inference.export_ops.inference_friendly_ops`:
a few operators are written in a form Paddle Inference runs with oneDNN and its default passes.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import paddle
from paddle.static import InputSpec

from semsegpaddle.core.common.atomic import staging_dir
from semsegpaddle.core.common.capture import Captured, captured_output
from semsegpaddle.core.inference.export_ops import inference_friendly_ops
from semsegpaddle.core.common.errors import SemsegError

if TYPE_CHECKING:
    from semsegpaddle.core.inference.quantize import Int8Settings

MODEL_PREFIX = "model"
#: the program traced for paddle2onnx, removed once converted
ONNX_SOURCE = "onnx_source"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExportReport:
    """Where the export went and how closely it reproduced the model at each checked size."""

    output_dir: Path
    max_abs_error: dict[str, float]
    #: the largest |logit| of the model over the checks: the scale the errors are relative to
    max_abs_logit: float = 0.0
    #: for an int8 export, what export_info.json records under ``int8``
    int8: dict[str, Any] | None = None


def export_model(model: paddle.nn.Layer, output_dir: str | Path, class_names: Sequence[str],
                 palette: np.ndarray, check_sizes: Sequence[tuple[int, int]] = ((64, 64), (48, 80)),
                 tolerance: float = 1e-4, onnx: bool = False, verbose: bool = False,
                 int8: Int8Settings | None = None) -> ExportReport:
    """Save ``model`` with a dynamic N×B×H×W input (B = ``model.in_channels`` bands, 3 for RGB 0–255
    floats; normalisation is inside; ``export_info.json`` records B as ``input.bands``) and
    reload it to compare logits with the live model at each of ``check_sizes``; with ``onnx``,
    also convert to ``model.onnx`` and check it with onnxruntime the same way. The check passes
    when every difference is at most ``tolerance × max(1, largest |logit|)``: float32 rounding
    grows with the logits' magnitude, a wrong export differs by about the magnitude itself.

    Files (``model.json``, ``model.pdiparams``, [``model.onnx``,] ``export_info.json``) are written
    to a temporary folder beside ``output_dir`` and moved into place only after every check
    passed, so a failed export never leaves a half-written or wrong model where the old one was.
    What Paddle, paddle2onnx and onnxruntime print on the way is dropped unless ``verbose``.

    With ``int8`` (which implies ``onnx``), ``model.onnx`` is also quantized into
    ``model_int8.onnx`` (:mod:`semsegpaddle.core.inference.quantize`) and scored against it on the
    held-back images; below the floor nothing is written (unless forced), and ``export_info.json``
    says ``precision: int8`` with the figures, so the onnxruntime backend runs the int8 file.
    """
    output_dir = Path(output_dir)
    onnx = onnx or int8 is not None
    if onnx:
        _onnx_modules()  # a missing package is reported before any work
    model.eval()
    staging = staging_dir(output_dir)
    try:
        with captured_output(enabled=not verbose) as log:
            errors, scale = _save_and_check(model, staging, check_sizes, onnx, verbose, log)
        worst, allowed = max(errors.values()), tolerance * max(1.0, scale)
        if worst > allowed:
            raise SemsegError(f"export check failed: max |exported - model| = {worst:.3g} > {allowed:.3g} "
                              f"(tolerance {tolerance} × max(1, max |logit| {scale:.3g})) ({errors})")
        quantized = None
        if int8 is not None:
            with captured_output(enabled=not verbose):
                quantized = _quantize(staging, int8, len(class_names), verbose)
        bands = input_bands(model)
        meaning = ("RGB, 0-255" if bands == 3 else f"{bands} bands, in the units model.mean/std were given in")
        info = {"input": {"name": "x", "shape": ["N", bands, "H", "W"], "dtype": "float32", "bands": bands,
                          "meaning": f"{meaning} (normalisation is inside the model)"},
                "output": {"shape": ["N", len(class_names), "H", "W"], "meaning": "logits; argmax over axis 1"},
                "class_names": list(class_names), "palette": np.asarray(palette).tolist(),
                "verified_max_abs_error": errors, "max_abs_logit": scale}
        if quantized is not None:
            info.update(precision="int8", int8=quantized)
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
    return ExportReport(output_dir, errors, scale, quantized)


def _quantize(staging: Path, settings: Int8Settings, num_classes: int, verbose: bool) -> dict[str, Any]:
    """Quantize ``staging/model.onnx`` into ``model_int8.onnx``, score it against the float32
    model on the held-back images and refuse it below the floor; what export_info.json records."""
    from semsegpaddle.core.inference import quantize
    from semsegpaddle.core.inference.backends import INT8_ONNX_FILE, ONNX_FILE, onnx_session

    fp32_path, int8_path = staging / ONNX_FILE, staging / INT8_ONNX_FILE
    kept = quantize.quantize_model(fp32_path, int8_path, settings, staging)
    runners = []
    for path in (fp32_path, int8_path):
        session = onnx_session(path, verbose=verbose)
        runners.append(lambda x, s=session, n=session.get_inputs()[0].name: s.run(None, {n: x})[0])
    report = quantize.compare_models(*runners, settings.held_back, num_classes, kept, settings.held_back_labels)
    quantize.check_agreement(report, settings)
    return {"file": INT8_ONNX_FILE, "method": settings.method, **settings.source,
            "floor": settings.floor, "forced": bool(settings.force and report.agreement < settings.floor),
            "opset": quantize.QUANT_OPSET, "format": "QDQ", "weights": "int8, per output channel",
            "activations": "uint8", "quantized_ops": list(quantize.QUANTIZED_OPS), **report.to_json()}


def input_bands(model: paddle.nn.Layer) -> int:
    """The bands ``model`` takes (its ``in_channels``; 3 for a model that does not say)."""
    return int(getattr(model, "in_channels", 3))


def _save_and_check(model: paddle.nn.Layer, staging: Path, check_sizes: Sequence[tuple[int, int]], onnx: bool,
                    verbose: bool, log: Captured) -> tuple[dict[str, float], float]:
    """Write the model files into ``staging``; return max |exported - model| per runner and checked
    size, and the largest |logit| of the model over the checks."""
    spec = [InputSpec([None, input_bands(model), None, None], "float32", "x")]
    with inference_friendly_ops():
        paddle.jit.save(model, str(staging / MODEL_PREFIX), input_spec=spec)
    loaded = paddle.jit.load(str(staging / MODEL_PREFIX))
    runners = {"paddle": lambda x: loaded(x).numpy()}
    if onnx:
        with inference_friendly_ops(onnx=True):  # a program of its own: see export_ops
            paddle.jit.save(model, str(staging / ONNX_SOURCE), input_spec=spec)
        runners["onnx"] = _export_onnx(staging, verbose, log)
        for leftover in staging.glob(f"{ONNX_SOURCE}.*"):
            leftover.unlink()
    errors, scale = {}, 0.0
    rng = np.random.default_rng(0)
    for height, width in check_sizes:
        x = paddle.to_tensor(rng.uniform(0, 255, (1, input_bands(model), height, width)).astype(np.float32))
        expected = model(x).numpy()
        scale = max(scale, float(np.abs(expected).max()))
        for kind, run in runners.items():
            got = run(x)
            if got.shape != expected.shape:
                raise SemsegError(f"{kind} export check failed at {height}×{width}: "
                                  f"output {got.shape} vs {expected.shape}")
            key = f"{height}x{width}" if kind == "paddle" else f"{kind} {height}x{width}"
            errors[key] = float(np.abs(got - expected).max())
    return errors, scale


def _onnx_modules():
    """(paddle2onnx, onnxruntime), or a one-line error naming the extra that installs them."""
    try:
        import onnxruntime
        import paddle2onnx
    except ImportError:
        raise SemsegError("ONNX export needs paddle2onnx and onnxruntime: pip install 'semsegpaddle[onnx]'") from None
    return paddle2onnx, onnxruntime


def _export_onnx(staging: Path, verbose: bool, log: Captured):
    """Convert the Paddle program saved for it in ``staging`` to ``model.onnx``; return a function running it.

    paddle2onnx's default post-processing (Polygraphy constant folding) pip-installs packages at
    run time; it is switched off (``optimize_tool="none"``): the converter's own graph optimisation
    (``enable_optimize``) still runs, and the result is checked against the model below anyway.
    """
    paddle2onnx, onnxruntime = _onnx_modules()
    path = staging / f"{MODEL_PREFIX}.onnx"
    try:
        paddle2onnx.export(str(staging / f"{ONNX_SOURCE}.json"), str(staging / f"{ONNX_SOURCE}.pdiparams"),
                           str(path), enable_optimize=True, optimize_tool="none")
    except (Exception, SystemExit) as exc:  # on failure it logs the cause, then calls sys.exit(-1)
        raise SemsegError(f"ONNX conversion failed: {_conversion_error(log, exc)}") from exc
    if not path.is_file():
        raise SemsegError(f"ONNX conversion failed: {_conversion_error(log, None)}")
    options = onnxruntime.SessionOptions()
    if not verbose:
        options.log_severity_level = 3  # errors only: its "removing unused initializer" notes are noise
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def _conversion_error(log: Captured, exc: BaseException | None) -> str:
    """paddle2onnx's first ``[ERROR]`` message (its account of the cause), else its last line."""
    lines = [line for line in (_ANSI.sub("", raw).strip() for raw in log.text.splitlines()) if line]
    errors = [line.split("[ERROR]", 1)[1].strip() for line in lines if "[ERROR]" in line]
    if errors:
        return errors[0]
    if lines:
        return lines[-1]
    return f"{type(exc).__name__}: {exc}" if exc is not None else "paddle2onnx wrote no model"
