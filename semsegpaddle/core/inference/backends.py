"""Inference backends: what turns a batch of images into logits.

A backend is called as ``backend(batch)`` with an N×B×H×W float32 numpy batch (B =
``in_channels`` bands: RGB 0-255 for 3; the model normalises) and returns N×C×H×W float32 numpy
logits; ``num_classes`` is C. A batch of another band count is a one-line SemsegError. Three exist:

- :class:`DynamicBackend`: a paddle model in memory (dynamic graph), as trained;
- :class:`PaddleInferenceBackend`: a folder written by ``semseg export``, run by Paddle Inference,
  with oneDNN on CPU, or on the GPU when Paddle sees one;
- :class:`OnnxRuntimeBackend`: the ``model.onnx`` (or, for an int8 export, ``model_int8.onnx``)
  of such a folder, run by onnxruntime on CPU.

The inference modes (:mod:`semsegpaddle.core.inference.segmenter`) work with either.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from semsegpaddle.core.common.errors import SemsegError

BACKENDS = ("dynamic", "paddle-inference", "onnxruntime")
#: backends that run an export folder (``--model-dir``) rather than a checkpoint
EXPORT_BACKENDS = ("paddle-inference", "onnxruntime")
#: files an export folder must hold
EXPORT_FILES = ("model.json", "model.pdiparams", "export_info.json")
#: the ONNX files of an export folder: float32 (``--onnx``) and quantized (``--int8``)
ONNX_FILE, INT8_ONNX_FILE = "model.onnx", "model_int8.onnx"


@runtime_checkable
class Backend(Protocol):
    """Anything that maps an N×B×H×W float32 batch (RGB 0-255 for B = 3) to N×C×H×W float32 logits."""

    num_classes: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch``."""
        ...


class DynamicBackend:
    """A paddle model in memory; its forward is run without gradients, in the model's current
    train/eval state (callers put it in eval mode). ``num_classes`` is the model's (None if it
    does not say)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.num_classes = getattr(model, "num_classes", None)
        #: the bands the model takes
        self.in_channels = int(getattr(model, "in_channels", 3))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` as numpy."""
        import paddle

        check_bands(batch, self.in_channels, "the model")

        with paddle.no_grad():
            out = self.model(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
        if isinstance(out, (list, tuple)):
            raise SemsegError("the model returned its training outputs: put it in eval mode (model.eval())")
        return out.numpy()


class PaddleInferenceBackend:
    """An exported model folder (``model.json``, ``model.pdiparams``, ``export_info.json``) run by
    Paddle Inference.

    On CPU, oneDNN is on (``onednn=False`` turns it off) with ``threads`` math threads (0: every
    available core); with ``device`` ``gpu``, or ``auto`` and a GPU that Paddle sees, it runs on
    GPU 0. ``precision`` ``bf16`` runs oneDNN's bfloat16 kernels, on CPUs with AVX512_BF16 only.
    ``class_names`` and ``palette`` come from ``export_info.json``.
    """

    def __init__(self, model_dir: str | Path, threads: int = 0, device: str = "auto", onednn: bool = True,
                 precision: str = "fp32") -> None:
        self.model_dir = Path(model_dir)
        self.precision = precision
        info = read_export_info(self.model_dir)
        self.class_names: list[str] = [str(name) for name in info["class_names"]]
        self.num_classes = len(self.class_names)
        self.palette = np.asarray(info["palette"], dtype=np.uint8)
        #: the bands the export takes (``input.bands`` of export_info.json; 3 in exports that predate it)
        self.in_channels = int((info.get("input") or {}).get("bands", 3))
        self.device = _resolve_device(device)
        #: True when the CPU kernels are oneDNN's
        self.onednn = onednn and self.device == "cpu"
        if precision != "fp32":
            check_bf16(precision, self.onednn)
        self._predictor = self._create(threads, onednn)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def _create(self, threads: int, onednn: bool) -> Any:
        from paddle import inference

        from semsegpaddle.core.common.runtime import available_cores

        config = inference.Config(str(self.model_dir / "model.json"), str(self.model_dir / "model.pdiparams"))
        if self.device == "gpu":
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            if onednn:
                config.enable_mkldnn()
                if self.precision == "bf16":
                    config.enable_mkldnn_bfloat16()
            else:
                config.disable_mkldnn()  # Paddle Inference turns it on by default on CPU
            config.set_cpu_math_library_num_threads(threads or available_cores())
        config.disable_glog_info()
        try:
            return inference.create_predictor(config)
        except Exception as exc:
            raise SemsegError(f"{self.model_dir}: Paddle Inference cannot load the model: {_summary(exc)}") from exc

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` as numpy."""
        check_bands(batch, self.in_channels, str(self.model_dir))
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        try:
            self._predictor.run()
        except Exception as exc:
            hint = ""
            if "ConvertPirAttribute2RuntimeAttribute" in str(exc):
                hint = " (an export written before oneDNN support: run `semseg export` again)"
            raise SemsegError(f"{self.model_dir}: Paddle Inference failed on a batch of shape "
                              f"{tuple(batch.shape)}: {_summary(exc)}{hint}") from exc
        return self._output.copy_to_cpu()


class OnnxRuntimeBackend:
    """The ONNX model of an export folder run by onnxruntime's CPU kernels with ``threads``
    intra-op threads (0: every available core).

    The folder is checked as for :class:`PaddleInferenceBackend`; the model file is ``model.onnx``,
    or ``model_int8.onnx`` when ``export_info.json`` says ``precision: int8`` (written by
    ``semseg export --int8``). ``class_names`` and ``palette`` come from ``export_info.json``.
    """

    def __init__(self, model_dir: str | Path, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        info = read_export_info(self.model_dir)
        self.class_names: list[str] = [str(name) for name in info["class_names"]]
        self.num_classes = len(self.class_names)
        self.palette = np.asarray(info["palette"], dtype=np.uint8)
        self.in_channels = int((info.get("input") or {}).get("bands", 3))
        #: ``fp32``, or ``int8`` for a quantized export
        self.precision = str(info.get("precision", "fp32"))
        self.model_path = self.model_dir / (INT8_ONNX_FILE if self.precision == "int8" else ONNX_FILE)
        if not self.model_path.is_file():
            flag = "--int8" if self.precision == "int8" else "--onnx"
            raise SemsegError(f"{self.model_dir}: {self.model_path.name} missing: the onnxruntime backend runs the "
                              f"ONNX model of an export; write it with `semseg export {flag} --output DIR`")
        self._session = onnx_session(self.model_path, threads)
        self._input_name = self._session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` as numpy."""
        check_bands(batch, self.in_channels, str(self.model_dir))
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            return self._session.run(None, {self._input_name: batch})[0]
        except Exception as exc:
            raise SemsegError(f"{self.model_dir}: onnxruntime failed on a batch of shape {tuple(batch.shape)}: "
                              f"{_summary(exc)}") from exc


def onnx_session(path: str | Path, threads: int = 0, verbose: bool = False) -> Any:
    """An onnxruntime CPU session of the ONNX file ``path`` with ``threads`` intra-op threads (0:
    every available core), all graph optimisations on; a one-line SemsegError when onnxruntime is
    not installed or cannot load the file."""
    from semsegpaddle.core.common.runtime import available_cores

    try:
        import onnxruntime
    except ImportError:
        raise SemsegError("the onnxruntime backend needs onnxruntime: pip install 'semsegpaddle[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not verbose:
        options.log_severity_level = 3  # errors only: its "removing unused initializer" notes are noise
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise SemsegError(f"{path}: onnxruntime cannot load the model: {_summary(exc)}") from exc


def check_bands(batch: np.ndarray, bands: int, what: str) -> None:
    """A one-line SemsegError unless ``batch`` is N×``bands``×H×W."""
    if np.ndim(batch) != 4 or np.shape(batch)[1] != bands:
        raise SemsegError(f"{what} takes {bands}-band images (model.in_channels), got a batch of shape "
                          f"{tuple(np.shape(batch))}")


def check_bf16(precision: str, onednn_cpu: bool) -> None:
    """A one-line SemsegError unless ``precision`` bf16 can run: oneDNN on a CPU with AVX512_BF16
    (without it oneDNN emulates bfloat16, slower than float32)."""
    from semsegpaddle.core.common.mkl_path import read_cpu

    if precision != "bf16":
        raise SemsegError(f"eval.precision: expected fp32 or bf16, got {precision!r}")
    if not onednn_cpu:
        raise SemsegError("eval.precision bf16 runs oneDNN's bfloat16 kernels: it needs the paddle-inference "
                          "backend on CPU with oneDNN")
    if "avx512_bf16" not in read_cpu()[1]:
        raise SemsegError("eval.precision bf16 needs a CPU with AVX512_BF16 instructions (this one has none); "
                          "use fp32")


def read_export_info(model_dir: Path) -> dict[str, Any]:
    """The checked ``export_info.json`` of an export folder; SemsegError naming what is missing."""
    if not model_dir.is_dir():
        raise SemsegError(f"--model-dir {model_dir}: no such folder (write one with `semseg export --output DIR`)")
    missing = [name for name in EXPORT_FILES if not (model_dir / name).is_file()]
    if missing:
        raise SemsegError(f"{model_dir}: not an export folder: {', '.join(missing)} missing "
                          f"(expected {', '.join(EXPORT_FILES)}, written by `semseg export`)")
    path = model_dir / "export_info.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SemsegError(f"{path}: not readable JSON ({exc})") from None
    names, palette = (info.get("class_names"), info.get("palette")) if isinstance(info, dict) else (None, None)
    if not isinstance(names, list) or not names:
        raise SemsegError(f"{path}: expected 'class_names', a non-empty list, got {names!r}")
    array = np.asarray(palette if palette is not None else [], dtype=object)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) < len(names) or not all(
            isinstance(v, int) and 0 <= v <= 255 for v in array.ravel()):
        raise SemsegError(f"{path}: expected 'palette', one [R, G, B] (0-255) per class "
                          f"({len(names)} classes), got {palette!r}"[:300])
    return info


def _resolve_device(device: str) -> str:
    """``cpu`` or ``gpu`` for ``auto``/``cpu``/``gpu`` (the engine's rule: auto takes a GPU if present)."""
    from semsegpaddle.core.common.runtime import choose_device

    return choose_device(device)


def _summary(exc: BaseException) -> str:
    """The line of a Paddle error that says what went wrong (its messages carry C++ stacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("---", "C++ Traceback", "Error Message Summary", "[Hint"))]
    useful = [line for line in lines if "Error" in line or line.startswith("(")]
    text = (useful or lines or [type(exc).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."
