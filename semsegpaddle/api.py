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
           "create_dataset", "train", "evaluate", "predict", "load_model", "export"]


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
    from semsegpaddle.core.errors import SemsegError

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


def evaluate(config: dict[str, Any], weights: str | Path | None = None, split: str | None = None) -> Metrics:
    """Evaluate a checkpoint on the config's validation split (or ``split``)."""
    from semsegpaddle.core.inference.evaluation import evaluate as _evaluate

    dist, _ = setup_runtime(config)
    dataset: SegDataset = create_dataset(config, split or config["dataset"]["val_split"])
    model = load_model(config, weights, dataset.num_classes)
    return _evaluate(model, dataset, config["eval"]["batch_size"], config["runtime"]["progress"], dist)


def checkpoint_labels(config: dict[str, Any], weights: str | Path | None = None) -> dict[str, Any]:
    """num_classes, class_names and palette: from the checkpoint's metadata when it has them (no
    dataset needed on this machine), else from the config's dataset."""
    from semsegpaddle.core.engine.checkpoint import label_space, read_metadata

    meta = read_metadata(weights or default_weights(config))
    if "num_classes" in meta:
        return {key: meta[key] for key in ("num_classes", "class_names", "palette")}
    return label_space(create_dataset(config, config["dataset"]["val_split"]))


def predict(config: dict[str, Any], inputs: Sequence[str | Path], output_dir: str | Path,
            weights: str | Path | None = None, overlay: bool = False) -> list[Path]:
    """Segment image files; write a palette PNG mask per input (and an overlay if asked).

    Output names follow :func:`semsegpaddle.core.inference.prediction.output_names`; inputs are never
    overwritten. Unreadable images raise a DataError after the other masks were written.
    """
    from semsegpaddle.core.inference.prediction import predict_files

    setup_runtime(config)
    labels = checkpoint_labels(config, weights)
    model = load_model(config, weights, labels["num_classes"])
    return predict_files(model, inputs, output_dir, np.asarray(labels["palette"], dtype=np.uint8), overlay=overlay,
                         progress=config["runtime"]["progress"])


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
