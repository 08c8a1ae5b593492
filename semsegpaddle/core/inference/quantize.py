"""INT8 post-training quantization of an exported ONNX model, checked against the float32 model.

The float32 ``model.onnx`` of an export is raised to a recent opset (per-channel quantization
needs 13 or later), calibrated on images of the config's dataset and rewritten by onnxruntime's
static quantizer in QDQ form: int8 weights per output channel, uint8 activations (the u8·s8 pair
VNNI instructions multiply). Only the operators that carry the arithmetic are quantized (see
:data:`QUANTIZED_OPS`); the last convolution (the classifier producing the logits) stays float32,
as do resizing, softmax, concatenation and the element-wise additions and products.

The result is then scored against the float32 model on held-back images, never the calibration
ones: the share of pixels whose class agrees, and the mIoU of the int8 masks taking the float32
masks as ground truth. :func:`check_agreement` refuses a model below the floor.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from semsegpaddle.core.common.errors import SemsegError

#: calibration methods of onnxruntime's static quantizer, by the names the options take
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: minmax: within 0.25 mIoU of float32 on the quick-start model, and the quickest; percentile was
#: 0.2 mIoU closer there but builds a 2048-bin histogram of every activation (see benchmarks/int8.py)
DEFAULT_METHOD = "minmax"
#: the least share of held-back pixels whose class must agree with the float32 model
DEFAULT_FLOOR = 0.98
DEFAULT_CALIB_IMAGES = 32
#: held-back images scored at most
VERIFY_IMAGES = 64
#: opset the model is raised to before quantizing (per-channel QDQ needs ≥ 13)
QUANT_OPSET = 17
#: operator types quantized: the convolutions and matrix products that hold the arithmetic, and the
#: ReLUs after them (onnxruntime fuses them into the int8 convolution). Add and Mul stay float32:
#: they also carry the bilinear resizes, and quantizing them cost the quick-start model 5 mIoU
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm", "Relu")
#: histogram bins of the entropy calibration, and the quantized bins each candidate range is
#: compared in (TensorRT's figures: 128 levels on either side of zero)
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
#: activation types by the names ``quantize_model`` takes (onnxruntime's QuantType members)
ACTIVATION_TYPES = {"uint8": lambda q: q.QUInt8, "int8": lambda q: q.QInt8, "uint16": lambda q: q.QUInt16}


@dataclass
class Int8Settings:
    """What ``semseg export --int8`` was asked for, with the images it reads (each a float32
    1×B×H×W batch of raw pixels: the model normalises)."""

    calibration: list[np.ndarray]
    held_back: list[np.ndarray]
    method: str = DEFAULT_METHOD
    floor: float = DEFAULT_FLOOR
    force: bool = False
    #: where the images came from, for export_info.json
    source: dict[str, Any] = field(default_factory=dict)
    #: the labels of the held-back images (H×W class maps), when the dataset has them
    held_back_labels: list[np.ndarray] = field(default_factory=list)


@dataclass
class Int8Report:
    """How the int8 model compares with the float32 model on the held-back images."""

    agreement: float
    miou_vs_fp32: float
    held_back_images: int
    pixels: int
    excluded_nodes: list[str]
    #: mIoU of the float32 and of the int8 masks against the held-back images' labels (None without labels)
    labels_miou_fp32: float | None = None
    labels_miou_int8: float | None = None

    def to_json(self) -> dict[str, Any]:
        figures = {"pixel_agreement": round(self.agreement, 6), "miou_vs_fp32": round(self.miou_vs_fp32, 6),
                   "held_back_images": self.held_back_images, "held_back_pixels": self.pixels,
                   "fp32_nodes_kept": self.excluded_nodes}
        if self.labels_miou_fp32 is not None:
            figures.update(labels_miou_fp32=round(self.labels_miou_fp32, 6),
                           labels_miou_int8=round(float(self.labels_miou_int8), 6))
        return figures



def int8_labels_summary(figures: dict[str, Any]) -> str:
    """``"; on their labels mIoU int8 X vs float32 Y"`` for the figures of :meth:`Int8Report.to_json`
    when the held-back labels were scored, else ``""``."""
    if "labels_miou_fp32" not in figures:
        return ""
    return (f"; on their labels mIoU int8 {100 * figures['labels_miou_int8']:.2f} vs float32 "
            f"{100 * figures['labels_miou_fp32']:.2f}")


def check_method(method: str) -> str:
    """``method`` if it is a calibration method, else a one-line SemsegError."""
    if method not in CALIBRATION_METHODS:
        raise SemsegError(f"--calib-method: expected one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    return method


def dataset_images(config: dict[str, Any], split: str, count: int, skip: Sequence[int] = ()) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Up to ``count`` images of the config's dataset ``split``, evenly spaced over it and not in
    ``skip``, as float32 1×B×H×W batches of raw pixels (as the export takes them); their labels;
    and their indices."""
    from semsegpaddle.core.data.datasets import checked_sample, create_dataset
    from semsegpaddle.core.inference.segmenter import to_batch

    dataset = create_dataset(config, split)
    candidates = [index for index in range(len(dataset)) if index not in set(skip)]
    if count < len(candidates):
        candidates = [candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, count).round()]
    samples = [checked_sample(dataset, index)[:2] for index in candidates]
    return [to_batch(image) for image, _ in samples], [np.asarray(label) for _, label in samples], candidates


def int8_settings(config: dict[str, Any], calib_images: int = DEFAULT_CALIB_IMAGES, calib_split: str | None = None,
                  method: str = DEFAULT_METHOD, floor: float = DEFAULT_FLOOR, force: bool = False) -> Int8Settings:
    """The calibration and held-back images of ``config``'s dataset for an int8 export:
    ``calib_images`` of ``calib_split`` (default the training split), and up to
    :data:`VERIFY_IMAGES` of the validation split that are not calibration images."""
    check_int8_options(calib_images, floor, method)
    dataset = config["dataset"]
    calib_split = calib_split or dataset["train_split"]
    calibration, _, used = dataset_images(config, calib_split, calib_images)
    if not calibration:
        raise SemsegError(f"--calib-split {calib_split}: the split has no images to calibrate on")
    val_split = dataset["val_split"]
    held_back, labels, _ = dataset_images(config, val_split, VERIFY_IMAGES, used if val_split == calib_split else ())
    if not held_back:
        raise SemsegError(f"dataset.val_split {val_split}: no images left to check the int8 model on "
                          f"(every one is a calibration image); lower --calib-images")
    source = {"dataset": dataset["name"], "calibration_split": calib_split, "calibration_images": len(calibration),
              "held_back_split": val_split, "held_back_images": len(held_back)}
    return Int8Settings(calibration, held_back, method, floor, force, source, labels)


def check_int8_options(calib_images: int, floor: float, method: str) -> None:
    """One-line SemsegErrors for option values out of range, or when the packages are missing."""
    try:
        import onnxruntime.quantization  # noqa: F401  (it needs ml_dtypes, which onnxruntime alone lacks)
        import paddle2onnx  # noqa: F401
    except ImportError as exc:
        raise SemsegError(f"--int8 needs onnxruntime's quantization tools ({exc}): "
                          f"pip install 'semsegpaddle[onnx]'") from None
    if calib_images < 1:
        raise SemsegError(f"--calib-images: expected a number of images ≥ 1, got {calib_images}")
    if not 0.0 <= floor <= 1.0:
        raise SemsegError(f"--int8-floor: expected a share of pixels from 0 to 1, got {floor}")
    check_method(method)


def prepare_for_quantization(fp32_path: Path, prepared: Path, work_dir: Path) -> None:
    """Write ``prepared``: ``fp32_path`` raised to opset :data:`QUANT_OPSET` and put through
    onnxruntime's graph optimisation (batch norms folded into the convolutions, so that their
    output ranges are the ones calibrated, and every node named: exclusion goes by name); the
    float32 model the int8 one is made from."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(fp32_path))
    if _opset(model) < QUANT_OPSET:
        model = version_converter.convert_version(model, QUANT_OPSET)
    raised = work_dir / "model_opset.onnx"
    onnx.save(model, str(raised))
    try:
        # symbolic shape inference is skipped: it cannot follow the export's dynamic resizing
        with _working_folder(work_dir):
            quant_pre_process(str(raised), str(prepared), skip_symbolic_shape=True)
    finally:
        raised.unlink(missing_ok=True)


def quantize_model(fp32_path: Path, int8_path: Path, settings: Int8Settings, work_dir: Path,
                   op_types: Sequence[str] | None = QUANTIZED_OPS, activations: str = "uint8",
                   keep_classifier: bool = True, keep_nodes: Sequence[str] = (),
                   extra_options: dict[str, Any] | None = None, calibration_cache: Path | None = None,
                   only_nodes: Sequence[str] | None = None) -> list[str]:
    """Write ``int8_path``: ``fp32_path`` at opset :data:`QUANT_OPSET`, statically quantized (QDQ)
    with ``settings.calibration``; returns the names of the nodes kept in float32 on purpose.

    The defaults are the export's. ``op_types`` (None: every type onnxruntime can quantize),
    ``activations`` (``uint8``, ``int8`` or ``uint16``), ``keep_classifier``, ``keep_nodes`` (more
    nodes left in float32, by name), ``only_nodes`` (quantize these alone), ``extra_options``
    (onnxruntime's, e.g. ``CalibPercentile``) and ``calibration_cache`` (a file keeping the calibrated ranges between calls with the same
    images and method) exist for the measurements that chose them (benchmarks/int8*.py)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    fp32_path, int8_path, work_dir = fp32_path.resolve(), int8_path.resolve(), work_dir.resolve()
    prepared = work_dir / "model_prepared.onnx"
    prepare_for_quantization(fp32_path, prepared, work_dir)
    model = onnx.load(str(prepared))
    keep = (_classifier_nodes(model) if keep_classifier else []) + list(keep_nodes)
    name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Iterable[np.ndarray]) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    own_cache = None
    try:
        with _working_folder(work_dir):
            if check_method(settings.method) == "entropy" and not (calibration_cache and calibration_cache.is_file()):
                if calibration_cache is None:
                    calibration_cache = own_cache = work_dir / "calibration_entropy.json"
                _calibrate_entropy(prepared, Reader(settings.calibration), op_types, calibration_cache, work_dir)
            quantize_static(str(prepared), str(int8_path), Reader(settings.calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=None if op_types is None else list(op_types), per_channel=True,
                            activation_type=ACTIVATION_TYPES[activations](QuantType), weight_type=QuantType.QInt8,
                            calibrate_method=methods[check_method(settings.method)], nodes_to_exclude=keep,
                            nodes_to_quantize=None if only_nodes is None else list(only_nodes),
                            calibration_cache_path=None if calibration_cache is None else str(calibration_cache),
                            extra_options={"CalibTensorRangeSymmetric": False, **(extra_options or {})})
    except Exception as exc:
        raise SemsegError(f"int8 quantization ({settings.method} calibration) failed: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        prepared.unlink(missing_ok=True)
        if own_cache is not None:
            own_cache.unlink(missing_ok=True)
    return keep


def _calibrate_entropy(prepared: Path, reader: Any, op_types: Sequence[str] | None, cache: Path, work_dir: Path) -> None:
    """Write into ``cache`` the activation ranges that minimise the KL divergence between each
    activation's histogram (:data:`ENTROPY_BINS` bins) and its quantized form.

    onnxruntime's ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128
    quantized bins, which leaves one candidate range, the full one: its "entropy" ranges are
    minmax's. The calibrator built here has room to choose."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(prepared, None if op_types is None else list(op_types),
                                   augmented_model_path=str(work_dir / "model_augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": False, "num_bins": ENTROPY_BINS,
                                                  "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
    try:
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache)
    finally:
        (work_dir / "model_augmented.onnx").unlink(missing_ok=True)


def compare_models(fp32: Any, int8: Any, images: Sequence[np.ndarray], num_classes: int,
                   excluded: Sequence[str] = (), labels: Sequence[np.ndarray] = ()) -> Int8Report:
    """Score ``int8`` against ``fp32`` (functions from a batch to logits) on ``images``: the share of
    pixels of equal class, and the mIoU of the int8 masks with the float32 masks as ground truth
    (classes neither model predicts are left out of the mean). With ``labels`` (one per image),
    also each model's mIoU against them (label values outside the classes, the ignore label, left out)."""
    from semsegpaddle.core.inference.metrics import ConfusionMatrix, compute_metrics

    between = ConfusionMatrix(num_classes)
    truth = {"fp32": ConfusionMatrix(num_classes), "int8": ConfusionMatrix(num_classes)}
    for index, batch in enumerate(images):
        reference, got = fp32(batch).argmax(1), int8(batch).argmax(1)
        between.update(got, reference)
        if index < len(labels) and np.shape(labels[index]) == reference.shape[1:] and len(reference) == 1:
            truth["fp32"].update(reference[0], labels[index])
            truth["int8"].update(got[0], labels[index])
    pixels = int(between.matrix.sum())
    scores = compute_metrics(between.table())
    # no pixel at all: nothing disagreed
    agreement, miou = (scores.pixel_accuracy, scores.miou) if pixels else (0.0, 1.0)
    report = Int8Report(agreement, miou, len(images), pixels, list(excluded))
    if truth["fp32"].matrix.sum():
        report.labels_miou_fp32 = compute_metrics(truth["fp32"].table()).miou
        report.labels_miou_int8 = compute_metrics(truth["int8"].table()).miou
    return report


def check_agreement(report: Int8Report, settings: Int8Settings) -> None:
    """A one-line SemsegError when the pixel agreement is below the floor (unless forced)."""
    if report.agreement < settings.floor and not settings.force:
        raise SemsegError(f"int8 model refused: it agrees with float32 on {report.agreement:.2%} of "
                          f"{report.pixels} held-back pixels ({report.held_back_images} images, mIoU vs "
                          f"float32 {report.miou_vs_fp32:.2%}{int8_labels_summary(report.to_json())}), below the floor "
                          f"{settings.floor:.2%} (--int8-floor); nothing written (--force-int8 writes it anyway)")


@contextlib.contextmanager
def _working_folder(folder: Path) -> Iterator[None]:
    """Run onnxruntime's tools inside ``folder``: its symbolic shape inference drops a
    ``sym_shape_infer_temp.onnx`` into the current folder when it gives up, which must not land
    in the user's."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _opset(model: Any) -> int:
    """The model's default-domain opset."""
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def _classifier_nodes(model: Any) -> list[str]:
    """The convolutions feeding the graph's output without another convolution in between: the
    classifier that produces the logits (after it, only resizing)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    outputs = [o.name for o in model.graph.output]
    found, seen, stack = [], set(), list(outputs)
    while stack:
        tensor = stack.pop()
        node = producers.get(tensor)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            found.append(node.name)
            continue
        stack.extend(node.input)
    return found
