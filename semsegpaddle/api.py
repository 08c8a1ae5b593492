"""The public Python API; the ``semseg`` command line is built on these functions.

    import semsegpaddle as ss
    config = ss.load_config("synthetic_deeplabv3", ["train.iters=200"])
    result = ss.train(config)
    metrics = ss.evaluate(config, weights=result.output_dir / "model_best.safetensors")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from semsegpaddle.core.config.loader import Config, config_from_dict, load_config
from semsegpaddle.core.data.datasets import create_dataset
from semsegpaddle.core.engine.trainer import BEST, TrainResult, setup_runtime
from semsegpaddle.core.engine.trainer import train as _train
from semsegpaddle.core.model.interfaces import SegDataset
from semsegpaddle.core.inference.metrics import Metrics
from semsegpaddle.core.model.assembly import SegmentationModel, create_backbone
from semsegpaddle.core.model.assembly import create_model as _create_model
from semsegpaddle.core.plugin.manager import list_components

__all__ = ["load_config", "config_from_dict", "list_components", "create_backbone", "create_model",
           "create_dataset", "train", "evaluate", "predict", "load_model", "load_backend", "export",
           "score_predictions"]


def create_model(config: dict[str, Any], num_classes: int | None = None) -> SegmentationModel:
    """The model a config describes; ``num_classes`` defaults to the training dataset's."""
    if num_classes is None:
        num_classes = create_dataset(config, config["dataset"]["train_split"]).num_classes
    return _create_model(config, num_classes)


def train(config: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (and evaluate at the configured intervals); files go to ``runtime.output_dir``.

    ``resume`` continues the run found there; ``overwrite`` allows replacing it.
    """
    return _train(config, resume=resume, overwrite=overwrite)


def default_weights(config: dict[str, Any]) -> Path:
    """The best checkpoint of the config's run folder."""
    return Path(config["runtime"]["output_dir"]) / BEST


def checkpoint_config(weights: str | Path, overrides: Iterable[str] = ()) -> Config:
    """The config stored in a checkpoint's metadata, validated, with ``overrides`` on top.

    Two keys describe the machine rather than the model and are reset: ``runtime.device`` to
    ``auto`` (the checkpoint may come from a GPU machine) and ``model.backbone.pretrained`` to
    null (the checkpoint holds every weight; the pretrained file need not exist here).
    """
    from semsegpaddle.core.engine.checkpoint import read_metadata
    from semsegpaddle.core.common.errors import SemsegError

    stored = read_metadata(weights).get("config")
    if not isinstance(stored, dict):
        raise SemsegError(f"{weights}: the checkpoint stores no config; give the config it was trained with")
    stored = {**stored, "runtime": {**stored.get("runtime", {}), "device": "auto"}}
    backbone = stored.get("model", {}).get("backbone")
    if isinstance(backbone, dict) and backbone.get("pretrained"):
        stored["model"] = {**stored["model"], "backbone": {**backbone, "pretrained": None}}
    return config_from_dict(stored, overrides, source=f"{weights} (stored config)")


def resolve_config(config: str | Path | None, overrides: Iterable[str] = (),
                   weights: str | Path | None = None) -> tuple[Config, Path]:
    """The config and checkpoint that predict and export use.

    With ``config`` (a file or packaged name): that config with ``overrides``, and ``weights`` or
    the best checkpoint of its run folder. Without: the checkpoint ``weights`` (default: the best
    one of the default config's ``runtime.output_dir``, after ``overrides``) and the config stored
    in it, with ``overrides`` on top; a checkpoint alone is enough.
    """
    if config is not None:
        loaded = load_config(config, overrides)
        return loaded, Path(weights) if weights else default_weights(loaded)
    overrides = list(overrides)
    if weights is None:
        weights = default_weights(load_config(None, overrides))
    return checkpoint_config(weights, overrides), Path(weights)


def load_model(config: dict[str, Any], weights: str | Path | None = None, num_classes: int | None = None) -> SegmentationModel:
    """Build the config's model, load ``weights`` (default: the run's best checkpoint), eval mode.

    ``num_classes`` defaults to the checkpoint's recorded label space, else the dataset's.
    ``model.backbone.pretrained`` is not loaded: every weight comes from the checkpoint, read by
    :func:`semsegpaddle.core.engine.checkpoint.load_weights` (which refuses NaN/Inf weights).
    """
    from semsegpaddle.core.engine.checkpoint import load_weights

    weights = weights or default_weights(config)
    if num_classes is None:
        num_classes = checkpoint_labels(config, weights)["num_classes"]
    model = _create_model(config, num_classes, pretrained=False)
    load_weights(model, weights)
    model.eval()
    return model


def evaluate(config: dict[str, Any], weights: str | Path | None = None, split: str | None = None, *,
             backend: str = "dynamic", model_dir: str | Path | None = None) -> Metrics:
    """Evaluate on the config's validation split (or ``split``) in the inference mode of its
    ``eval`` section (whole / slide, scales, flip).

    ``backend`` ``dynamic`` runs the checkpoint ``weights`` (default: the run's best);
    ``paddle-inference`` runs the export folder ``model_dir`` (oneDNN on CPU).
    """
    from semsegpaddle.core.inference.evaluation import evaluate as _evaluate
    from semsegpaddle.core.inference.modes import InferenceMode

    mode = InferenceMode.from_config(config)  # a bad eval section fails before any loading
    dist, _ = setup_runtime(config)
    dataset: SegDataset = create_dataset(config, split or config["dataset"]["val_split"])
    runner = load_backend(config, weights, backend=backend, model_dir=model_dir, num_classes=dataset.num_classes)
    return _evaluate(runner, dataset, config["eval"]["batch_size"], config["runtime"]["progress"], dist, mode)


def load_backend(config: dict[str, Any], weights: str | Path | None = None, *, backend: str = "dynamic",
                 model_dir: str | Path | None = None, num_classes: int | None = None):
    """The inference backend (:mod:`semsegpaddle.core.inference.backends`) of a config: the
    checkpoint ``weights`` in a dynamic model, or, for ``paddle-inference``, the export folder
    ``model_dir`` run by Paddle Inference on ``runtime.device`` with ``runtime.threads`` threads
    (in bfloat16 with ``eval.precision: bf16``). ``num_classes``, when given, must match the export's."""
    from semsegpaddle.core.common.errors import SemsegError
    from semsegpaddle.core.inference.backends import BACKENDS, DynamicBackend, PaddleInferenceBackend

    if backend not in BACKENDS:
        raise SemsegError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    precision = config["eval"].get("precision", "fp32")
    if backend == "dynamic":
        if model_dir is not None:
            raise SemsegError("model_dir is read by the paddle-inference backend only; the dynamic backend "
                              "loads weights")
        if precision != "fp32":
            raise SemsegError(f"eval.precision {precision} needs the paddle-inference backend (Paddle has no CPU "
                              f"{precision} kernels for the dynamic model); add --backend paddle-inference")
        return DynamicBackend(load_model(config, weights, num_classes))
    if model_dir is None:
        raise SemsegError("the paddle-inference backend needs the export folder (--model-dir DIR, "
                          "written by `semseg export`)")
    if weights is not None:
        raise SemsegError("the paddle-inference backend runs the export folder; give --model-dir, not --weights")
    runner = PaddleInferenceBackend(model_dir, config["runtime"]["threads"], config["runtime"]["device"],
                                    precision=precision)
    if num_classes is not None and runner.num_classes != num_classes:
        raise SemsegError(f"{model_dir}: the export predicts {runner.num_classes} classes "
                          f"({', '.join(runner.class_names)}), the dataset has {num_classes}")
    return runner


def checkpoint_labels(config: dict[str, Any], weights: str | Path | None = None) -> dict[str, Any]:
    """num_classes, class_names and palette: from the checkpoint's metadata when it has them (no
    dataset needed on this machine), else from the config's dataset."""
    from semsegpaddle.core.engine.checkpoint import label_space, read_metadata

    meta = read_metadata(weights or default_weights(config))
    if "num_classes" in meta:
        return {key: meta[key] for key in ("num_classes", "class_names", "palette")}
    return label_space(create_dataset(config, config["dataset"]["val_split"]))


def predict(config: dict[str, Any], inputs: Sequence[str | Path], output_dir: str | Path,
            weights: str | Path | None = None, overlay: bool = False, *, backend: str = "dynamic",
            model_dir: str | Path | None = None, alpha: float = 0.5, format: str = "index") -> list[Path]:
    """Segment image files; write a palette PNG mask per input (and an overlay if asked), in the
    inference mode of the config's ``eval`` section.

    ``backend`` ``dynamic`` runs the checkpoint ``weights`` (palette from its metadata);
    ``paddle-inference`` the export folder ``model_dir`` (palette from its export_info.json).
    Output names follow :func:`semsegpaddle.core.inference.prediction.output_names`; inputs are
    never overwritten. Unreadable images raise a DataError after the other masks were written.
    ``inputs`` are image files, folders and list files
    (:func:`semsegpaddle.core.inference.prediction.expand_inputs`); ``alpha`` is the mask's
    opacity in overlays; ``format`` ``index`` writes palette masks, a dataset's name
    (``cityscapes``) the files its official evaluation reads.
    """
    from semsegpaddle.core.inference.modes import InferenceMode
    from semsegpaddle.core.inference.prediction import expand_inputs, predict_files, submission_format

    inputs = expand_inputs(inputs)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} is not valid; expected a number from 0 (image only) to 1 (mask only)")

    mode = InferenceMode.from_config(config)
    setup_runtime(config)
    if backend == "dynamic" and model_dir is None:
        labels = checkpoint_labels(config, weights)
        runner = load_backend(config, weights, num_classes=labels["num_classes"])
        palette = np.asarray(labels["palette"], dtype=np.uint8)
    else:
        runner = load_backend(config, weights, backend=backend, model_dir=model_dir)
        palette = runner.palette
    submission = None if format == "index" else submission_format(format, len(palette))
    return predict_files(runner, inputs, output_dir, palette, overlay=overlay, progress=config["runtime"]["progress"],
                         mode=mode, alpha=alpha, submission=submission)


def score_predictions(config: dict[str, Any], predictions: str | Path, split: str | None = None,
                      encoding: str = "auto") -> Metrics:
    """Metrics of prediction PNGs made by any tool (the folder ``predictions``) against the labels
    of the config's dataset (``split``, default the validation split); no model is loaded.
    Matching by file name and the ``encoding`` (auto / index / submission) are described in
    :mod:`semsegpaddle.core.inference.scoring`."""
    from semsegpaddle.core.inference.scoring import score_predictions as _score

    return _score(config, predictions, split, encoding, config["runtime"]["progress"]).metrics


def export(config: dict[str, Any], output_dir: str | Path, weights: str | Path | None = None, onnx: bool = False,
           verbose: bool = False):
    """Export the checkpoint for Paddle Inference (and ONNX), any input size, verified at two sizes.

    Paddle's and paddle2onnx's console output is dropped unless ``verbose``.
    """
    from semsegpaddle.core.inference.export import export_model

    setup_runtime(config)
    labels = checkpoint_labels(config, weights)
    model = load_model(config, weights, labels["num_classes"])
    return export_model(model, output_dir, labels["class_names"], np.asarray(labels["palette"]), onnx=onnx,
                        verbose=verbose)
