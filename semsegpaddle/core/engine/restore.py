"""Rebuild what a run produced: its config and best checkpoint, a model with its weights, or an
inference backend over a checkpoint or an export folder (used by eval, predict, export, report)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.config.loader import Config, config_from_dict, load_config
from semsegpaddle.core.engine.run_folder import BEST


class BackendOptionError(SemsegError):
    """Backend options that do not go together (a usage error: the command line exits 2)."""


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

    stored = read_metadata(weights).get("config")
    if not isinstance(stored, dict):
        raise SemsegError(f"{weights}: the checkpoint stores no config; give the config it was trained with")
    stored = {**stored, "runtime": {**stored.get("runtime", {}), "device": "auto"}}
    backbone = stored.get("model", {}).get("backbone")
    if isinstance(backbone, dict) and backbone.get("pretrained"):
        stored["model"] = {**stored["model"], "backbone": {**backbone, "pretrained": None}}
    if stored.get("model", {}).get("pretrained"):
        stored["model"] = {**stored["model"], "pretrained": None}
    return config_from_dict(stored, overrides, source=f"{weights} (stored config)")


def resolve_config(config: str | Path | None, overrides: Iterable[str] = (),
                   weights: str | Path | None = None) -> tuple[Config, Path | str]:
    """The config and checkpoint that predict and export use.

    With ``config`` (a file or packaged name): that config with ``overrides``, and ``weights`` or
    the best checkpoint of its run folder. Without: the checkpoint ``weights`` (default: the best
    one of the default config's ``runtime.output_dir``, after ``overrides``) and the config stored
    in it, with ``overrides`` on top; a checkpoint alone is enough.
    """
    if config is not None:
        loaded = load_config(config, overrides)
        if is_url(weights):
            return loaded, weights
        return loaded, Path(weights) if weights else default_weights(loaded)
    overrides = list(overrides)
    if weights is None:
        weights = default_weights(load_config(None, overrides))
    return checkpoint_config(weights, overrides), Path(weights)


def is_url(weights: str | Path | None) -> bool:
    """True for an http(s) address (weights to download), False for a path."""
    return isinstance(weights, str) and weights.startswith(("http://", "https://"))


def resolve_weights(config: dict[str, Any], weights: str | Path | None) -> Path | None:
    """A local weights file: ``weights`` itself, or for a URL the file downloaded once into the
    cache (checked against ``zoo.weights_sha256`` when the URL is the config's ``zoo.weights_url``)."""
    if weights is None or not is_url(weights):
        return None if weights is None else Path(weights)
    from semsegpaddle.core.common.download import fetch_weights

    zoo = config.get("zoo") or {}
    sha256 = zoo.get("weights_sha256") if zoo.get("weights_url") == weights else None
    return fetch_weights(str(weights), sha256=sha256, progress=config["runtime"]["progress"])


def _our_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint written by this framework, else {} (a foreign weights file)."""
    from semsegpaddle.core.engine.checkpoint import FORMAT, read_metadata

    if path.suffix != ".safetensors":
        if not path.is_file():
            raise SemsegError(f"weights file not found: {path}")
        return {}
    try:
        meta = read_metadata(path)
    except SemsegError:
        if not _readable_safetensors(path):
            raise
        return {}  # another tool's metadata, not JSON values: a foreign file
    # another tool's safetensors (no metadata, or e.g. {"format": "pt"}) is a foreign file
    return meta if meta.get("format") == FORMAT or "config" in meta or "num_classes" in meta else {}


def _readable_safetensors(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            handle.keys()
        return True
    except Exception:
        return False


def load_weights_into(model: Any, config: dict[str, Any], weights: str | Path, *,
                      allow_class_change: bool = False) -> Any:
    """Load ``weights`` (ours, a foreign model's, or a URL of one) into ``model``; a foreign file is
    imported through its components' declared names and a one-line summary printed to stderr.

    With ``allow_class_change`` (fine-tuning from ``model.pretrained``) our own checkpoints are
    imported the same way, so the classifier of another class count is re-initialised and an RGB
    model's input conv is adapted to ``model.in_channels``; otherwise they load strictly.
    Returns the import report (None for our own checkpoints loaded strictly)."""
    import sys

    from semsegpaddle.core.engine.checkpoint import load_weights, model_tensors
    from semsegpaddle.core.model.model_import import import_weights
    from semsegpaddle.core.model.weight_files import read_weights

    path = resolve_weights(config, weights)
    ours = _our_metadata(path)
    if ours and not allow_class_change:
        load_weights(model, path)  # strict, NaN/Inf refused
        return None
    state = model_tensors(path) if ours else read_weights(path)
    report = import_weights(model, state, config, origin=str(path), allow_class_change=allow_class_change)
    print(report.summary(), file=sys.stderr)
    return report


def checkpoint_labels(config: dict[str, Any], weights: str | Path | None = None) -> dict[str, Any]:
    """num_classes, class_names and palette: from the checkpoint's metadata when it has them (no
    dataset needed on this machine), else ``model.class_names`` / ``model.palette`` (imported
    models), else the config's dataset."""
    from semsegpaddle.core.data.base import default_palette
    from semsegpaddle.core.data.datasets import create_dataset
    from semsegpaddle.core.engine.checkpoint import label_space

    meta = _our_metadata(resolve_weights(config, weights) or default_weights(config))
    if "num_classes" in meta:
        return {key: meta[key] for key in ("num_classes", "class_names", "palette")}
    names = config["model"].get("class_names")
    if names:
        palette = config["model"].get("palette") or np.asarray(default_palette(len(names))).tolist()
        return {"num_classes": len(names), "class_names": list(names), "palette": palette}
    declared = declared_labels(config)
    if declared is not None:
        return declared
    return label_space(create_dataset(config, config["dataset"]["val_split"]))


def declared_labels(config: dict[str, Any]) -> dict[str, Any] | None:
    """The classes and palette the config's dataset plugin declares for its options (registration
    extra ``label_space``), known without the dataset's files; None when it declares none."""
    from semsegpaddle.core.config.schema import SCHEMA
    from semsegpaddle.core.plugin.build import component_options
    from semsegpaddle.core.plugin.manager import get_registry

    section = config["dataset"]
    declare = get_registry("dataset").get(section["name"]).extras.get("label_space")
    labels = declare(component_options(section, SCHEMA["dataset"].extra)) if declare else None
    if not labels:
        return None
    return {"num_classes": len(labels["class_names"]), "class_names": list(labels["class_names"]),
            "palette": [list(map(int, c)) for c in labels["palette"]]}


def load_model(config: dict[str, Any], weights: str | Path | None = None, num_classes: int | None = None):
    """Build the config's model, load ``weights`` (default: the run's best checkpoint; also a
    PaddleSeg/torchvision file or a URL, see :func:`load_weights_into`), eval mode.

    ``num_classes`` defaults to the checkpoint's recorded label space, else the dataset's.
    ``model.backbone.pretrained`` is not loaded: every weight comes from the checkpoint, read by
    :func:`semsegpaddle.core.engine.checkpoint.load_weights` (which refuses NaN/Inf weights).
    """
    from semsegpaddle.core.model.assembly import build_model

    weights = weights or default_weights(config)
    if num_classes is None:
        num_classes = checkpoint_labels(config, weights)["num_classes"]
    model = build_model(config, num_classes, pretrained=False)
    load_weights_into(model, config, weights)
    model.eval()
    return model


def check_backend_options(backend: str, model_dir: str | Path | None, weights: str | Path | None) -> None:
    """The one place the backend rules live: ``paddle-inference`` and ``onnxruntime`` run an export
    folder (``model_dir``), ``dynamic`` a checkpoint (``weights``)."""
    from semsegpaddle.core.inference.backends import BACKENDS, EXPORT_BACKENDS

    if backend not in BACKENDS:
        raise BackendOptionError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend in EXPORT_BACKENDS and model_dir is None:
        raise BackendOptionError(f"--backend {backend} needs --model-dir DIR (a folder written by semseg export)")
    if backend in EXPORT_BACKENDS and weights is not None:
        raise BackendOptionError(f"--weights is for --backend dynamic; {backend} reads --model-dir")
    if backend == "dynamic" and model_dir is not None:
        raise BackendOptionError("--model-dir is read by --backend paddle-inference or onnxruntime; add one, "
                                 "or drop --model-dir")


def load_backend(config: dict[str, Any], weights: str | Path | None = None, *, backend: str = "dynamic",
                 model_dir: str | Path | None = None, num_classes: int | None = None):
    """The inference backend (:mod:`semsegpaddle.core.inference.backends`) of a config: the
    checkpoint ``weights`` in a dynamic model, or, for ``paddle-inference``, the export folder
    ``model_dir`` run by Paddle Inference on ``runtime.device`` with ``runtime.threads`` threads
    (in bfloat16 with ``eval.precision: bf16``), or, for ``onnxruntime``, the ONNX model of that
    folder (int8 when it was exported with ``--int8``) on CPU with ``runtime.threads`` threads.
    ``num_classes``, when given, must match the export's."""
    from semsegpaddle.core.inference.backends import DynamicBackend, OnnxRuntimeBackend, PaddleInferenceBackend

    check_backend_options(backend, model_dir, weights)
    precision = config["eval"].get("precision", "fp32")
    if backend == "dynamic":
        if precision != "fp32":
            raise SemsegError(f"eval.precision {precision} needs the paddle-inference backend (Paddle has no CPU "
                              f"{precision} kernels for the dynamic model); add --backend paddle-inference")
        return DynamicBackend(load_model(config, weights, num_classes))
    if backend == "onnxruntime":
        if precision != "fp32":
            raise SemsegError(f"eval.precision {precision} runs oneDNN's kernels: it needs --backend "
                              f"paddle-inference (for onnxruntime, export with --int8 instead)")
        runner = OnnxRuntimeBackend(model_dir, config["runtime"]["threads"])
    else:
        runner = PaddleInferenceBackend(model_dir, config["runtime"]["threads"], config["runtime"]["device"],
                                        precision=precision)
    if num_classes is not None and runner.num_classes != num_classes:
        raise SemsegError(f"{model_dir}: the export predicts {runner.num_classes} classes "
                          f"({', '.join(runner.class_names)}), the dataset has {num_classes}")
    return runner


def convert_model_file(config: dict[str, Any], source: str | Path, destination: str | Path) -> Any:
    """Import a foreign model's weights (a PaddleSeg .pdparams, a torchvision .pth, or a URL of one)
    into the config's model and save them once as a checkpoint of ours: safetensors, with the
    config and the class names and palette in its metadata, so ``--weights DESTINATION`` alone is
    enough afterwards. Returns the import report."""
    from semsegpaddle.core.common.atomic import atomic_path
    from semsegpaddle.core.engine.checkpoint import save_weights
    from semsegpaddle.core.model.assembly import build_model

    labels = checkpoint_labels(config, source)
    model = build_model(config, labels["num_classes"], pretrained=False)
    report = load_weights_into(model, config, source)
    stored = {**config, "model": {**config["model"], "pretrained": None,
                                  "backbone": {**config["model"]["backbone"], "pretrained": None}}}
    with atomic_path(destination) as tmp:
        save_weights(model, tmp, stored, **labels, imported_from=str(source))
    return report
