"""The public Python API, and the one door the ``semseg`` command line goes through.

    import semsegpaddle as ss
    config = ss.load_config("synthetic_deeplabv3", ["train.iters=200"])
    result = ss.train(config)
    metrics = ss.evaluate(config, weights=result.output_dir / "model_best.safetensors")

Importing this module is light (no paddle, no OpenCV): every function imports what it needs when
called, so commands such as ``semseg list`` and ``semseg config`` stay fast.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from semsegpaddle.core.common.errors import SemsegError

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from semsegpaddle.core.engine.trainer import TrainResult
    from semsegpaddle.core.inference.metrics import Metrics
    from semsegpaddle.core.model.assembly import SegmentationModel

__all__ = ["SemsegError", "BackendOptionError", "TrainingStopped", "load_config", "config_from_dict",
           "parse_override", "list_components", "list_plugins", "plugin_failure_tracebacks", "packaged_configs",
           "add_plugin_commands", "create_backbone", "create_model", "create_dataset", "check_data",
           "load_check_config", "check_config_target", "write_fixed_config", "train",
           "launch_training", "evaluate", "predict", "load_model", "load_backend", "check_backend_options",
           "resolve_config", "checkpoint_labels", "default_weights", "export", "score_predictions",
           "score_prediction_folder", "write_metrics", "write_json", "write_report", "report_run",
           "convert_weights", "convert_model_weights", "is_backbone", "is_url", "serve",
           "int8_labels_summary"]

#: public names defined in the core, served on first access (each a light import or a paddle one)
_FORWARDED = {
    "BackendOptionError": "semsegpaddle.core.engine.restore",
    "TrainingStopped": "semsegpaddle.core.engine.interrupt",
    "load_config": "semsegpaddle.core.config.loader",
    "config_from_dict": "semsegpaddle.core.config.loader",
    "parse_override": "semsegpaddle.core.config.loader",
    "list_components": "semsegpaddle.core.plugin.manager",
    "create_backbone": "semsegpaddle.core.model.assembly",
    "create_dataset": "semsegpaddle.core.data.datasets",
    "load_model": "semsegpaddle.core.engine.restore",
    "load_backend": "semsegpaddle.core.engine.restore",
    "check_backend_options": "semsegpaddle.core.engine.restore",
    "resolve_config": "semsegpaddle.core.engine.restore",
    "checkpoint_labels": "semsegpaddle.core.engine.restore",
    "default_weights": "semsegpaddle.core.engine.restore",
    "is_url": "semsegpaddle.core.engine.restore",
    "write_report": "semsegpaddle.core.engine.report",
    "report_run": "semsegpaddle.core.engine.report",
    "int8_labels_summary": "semsegpaddle.core.inference.quantize",
}


def __getattr__(name: str) -> Any:
    if name in _FORWARDED:
        return getattr(importlib.import_module(_FORWARDED[name]), name)
    raise AttributeError(f"module 'semsegpaddle.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FORWARDED})


def create_model(config: dict[str, Any], num_classes: int | None = None) -> SegmentationModel:
    """The model a config describes; ``num_classes`` defaults to the training dataset's."""
    from semsegpaddle.core.data.datasets import create_dataset
    from semsegpaddle.core.model.assembly import build_model

    if num_classes is None:
        num_classes = create_dataset(config, config["dataset"]["train_split"]).num_classes
    return build_model(config, num_classes)


def train(config: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (and evaluate at the configured intervals); files go to ``runtime.output_dir``.

    ``resume`` continues the run found there; ``overwrite`` allows replacing it.
    """
    from semsegpaddle.core.engine.trainer import train as run_training

    return run_training(config, resume=resume, overwrite=overwrite)


def evaluate(config: dict[str, Any], weights: str | Path | None = None, split: str | None = None, *,
             backend: str = "dynamic", model_dir: str | Path | None = None) -> Metrics:
    """Evaluate on the config's validation split (or ``split``) in the inference mode of its
    ``eval`` section (whole / slide, scales, flip).

    ``backend`` ``dynamic`` runs the checkpoint ``weights`` (default: the run's best);
    ``paddle-inference`` runs the export folder ``model_dir`` (oneDNN on CPU).
    """
    from semsegpaddle.core.data.datasets import create_dataset
    from semsegpaddle.core.engine.restore import load_backend
    from semsegpaddle.core.engine.trainer import setup_runtime
    from semsegpaddle.core.inference.evaluation import evaluate as _evaluate
    from semsegpaddle.core.inference.segmenter import InferenceMode

    mode = InferenceMode.from_config(config)  # a bad eval section fails before any loading
    dist, _ = setup_runtime(config)
    dataset = create_dataset(config, split or config["dataset"]["val_split"])
    runner = load_backend(config, weights, backend=backend, model_dir=model_dir, num_classes=dataset.num_classes)
    return _evaluate(runner, dataset, config["eval"]["batch_size"], config["runtime"]["progress"], dist, mode)


def predict(config: dict[str, Any], inputs: Sequence[str | Path], output_dir: str | Path,
            weights: str | Path | None = None, overlay: bool = False, *, backend: str = "dynamic",
            model_dir: str | Path | None = None, alpha: float = 0.5, format: str = "index",
            rgb_bands: Sequence[int] | str | None = None) -> list[Path]:
    """Segment image files; write a palette PNG mask per input (and an overlay if asked), in the
    inference mode of the config's ``eval`` section.

    ``backend`` ``dynamic`` runs the checkpoint ``weights`` (palette from its metadata);
    ``paddle-inference`` the export folder ``model_dir`` (palette from its export_info.json).
    Output names follow :func:`semsegpaddle.core.inference.prediction.output_names`; inputs are
    never overwritten. Unreadable images raise a DataError after the other masks were written.
    ``inputs`` are image files, folders and list files
    (:func:`semsegpaddle.core.inference.prediction.expand_inputs`); ``alpha`` is the mask's
    opacity in overlays; ``format`` ``index`` writes palette masks, a dataset's name
    (``cityscapes``) the files its official evaluation reads. A model of ``model.in_channels`` other
    than 3 reads every band of TIFF inputs; ``rgb_bands`` (e.g. ``(3, 2, 1)`` or ``"3,2,1"``,
    1-based) picks the bands its overlays show (default the first three, or band 1 as gray).
    """
    import numpy as np

    from semsegpaddle.core.engine.restore import checkpoint_labels, load_backend
    from semsegpaddle.core.engine.trainer import setup_runtime
    from semsegpaddle.core.inference.prediction import expand_inputs, predict_files, submission_format
    from semsegpaddle.core.inference.segmenter import InferenceMode

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
                         mode=mode, alpha=alpha, submission=submission, rgb_bands=rgb_bands)


def serve(config: dict[str, Any], weights: str | Path | None = None, *, backend: str = "dynamic",
          model_dir: str | Path | None = None, config_name: str = "", **options: Any) -> None:
    """Serve the model over HTTP until SIGTERM (``semseg serve``; see docs/serving.md): the
    checkpoint ``weights`` (``backend`` ``dynamic``) or the export folder ``model_dir`` (another
    backend), loaded once per worker as :func:`predict` loads it, in the config's inference mode.

    ``options`` are :class:`semsegpaddle.core.serve.options.ServeOptions` fields (``host``,
    ``port``, ``workers``, ``max_batch``, ``max_wait_ms``, ``max_queue``, ``max_image_pixels``,
    ``max_body_bytes``, ``token_file``, ``read_timeout``, ``shutdown_timeout``, ...); returns after
    a graceful shutdown. Without the ``serve`` extra installed, a one-line SemsegError says how to
    install it.
    """
    import importlib.util

    found = {name: importlib.util.find_spec(name) is not None for name in ("starlette", "uvicorn", "python_multipart",
                                                                          "multipart")}
    missing = [name for name in ("starlette", "uvicorn") if not found[name]]
    missing += [] if found["python_multipart"] or found["multipart"] else ["python-multipart"]
    if missing:
        raise SemsegError(f"semseg serve needs {', '.join(missing)}: pip install 'semsegpaddle[serve]'")
    from semsegpaddle.core.serve.options import ServeOptions
    from semsegpaddle.core.serve.service import serve as run

    run(config, weights, ServeOptions(**options), backend=backend, model_dir=model_dir, config_name=config_name)


def score_predictions(config: dict[str, Any], predictions: str | Path, split: str | None = None,
                      encoding: str = "auto") -> Metrics:
    """Metrics of prediction PNGs made by any tool (the folder ``predictions``) against the labels
    of the config's dataset (``split``, default the validation split); no model is loaded.
    Matching by file name and the ``encoding`` (auto / index / submission) are described in
    :mod:`semsegpaddle.core.inference.scoring`."""
    from semsegpaddle.core.inference.scoring import score_predictions as _score

    return _score(config, predictions, split, encoding, config["runtime"]["progress"]).metrics


def export(config: dict[str, Any], output_dir: str | Path, weights: str | Path | None = None, onnx: bool = False,
           verbose: bool = False, *, int8: bool = False, calib_images: int | None = None,
           calib_split: str | None = None, calib_method: str | None = None, int8_floor: float | None = None,
           force_int8: bool = False):
    """Export the checkpoint for Paddle Inference (and ONNX), any input size, verified at two sizes.

    With ``int8`` (implies ``onnx``) also an int8 ONNX model for the onnxruntime backend,
    calibrated on ``calib_images`` images of ``calib_split`` (default: 32 of the training split)
    with ``calib_method`` (default minmax) and written only when its masks agree with the float32
    model's on at least ``int8_floor`` (default 0.98) of the held-back validation pixels, unless
    ``force_int8`` (see :mod:`semsegpaddle.core.inference.quantize`).
    Paddle's and paddle2onnx's console output is dropped unless ``verbose``.
    """
    import numpy as np

    from semsegpaddle.core.engine.restore import checkpoint_labels, load_model
    from semsegpaddle.core.engine.trainer import setup_runtime
    from semsegpaddle.core.inference import quantize
    from semsegpaddle.core.inference.export import export_model

    settings = None
    if int8:
        quantize.check_int8_options(quantize.DEFAULT_CALIB_IMAGES if calib_images is None else calib_images,
                                    quantize.DEFAULT_FLOOR if int8_floor is None else int8_floor,
                                    calib_method or quantize.DEFAULT_METHOD)
    setup_runtime(config)
    labels = checkpoint_labels(config, weights)
    model = load_model(config, weights, labels["num_classes"])
    if int8:
        settings = quantize.int8_settings(
            config, quantize.DEFAULT_CALIB_IMAGES if calib_images is None else calib_images, calib_split,
            calib_method or quantize.DEFAULT_METHOD, quantize.DEFAULT_FLOOR if int8_floor is None else int8_floor,
            force_int8)
    return export_model(model, output_dir, labels["class_names"], np.asarray(labels["palette"]), onnx=onnx,
                        verbose=verbose, int8=settings)


# -------------------------------------------------------------------------------------------------
# plugins and configs
# -------------------------------------------------------------------------------------------------


def list_plugins() -> dict[str, Any]:
    """Loaded plugins (name, distribution, version, the hooks each implements) and the plugins
    that failed (:class:`semsegpaddle.core.plugin.failures.PluginFailure` objects)."""
    from semsegpaddle.core.plugin.manager import load_plugins

    state = load_plugins()
    rows = []
    for name, plugin in sorted(state.manager.list_name_plugin(), key=lambda item: item[0]):
        dist, version = state.distribution_of(name)
        hooks = sorted(caller.name for caller in state.manager.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
    return {"plugins": rows, "failed": list(state.failures)}


def plugin_failure_tracebacks() -> list[tuple[str, str]]:
    """(one-line message, full traceback) of every plugin failure that has a traceback."""
    from semsegpaddle.core.plugin.manager import load_plugins

    return [(f.message(), f.traceback) for f in load_plugins().failures if f.traceback]


def packaged_configs() -> list[dict[str, str]]:
    """Every config addressable by name: its name, path and origin (the plugin and distribution
    that registered it; semsegpaddle's own configs name the distribution only)."""
    from semsegpaddle.core.plugin.manager import BUILTIN_DISTRIBUTION, load_plugins

    out = []
    for entry in load_plugins().configs:
        origin = [] if entry.distribution == BUILTIN_DISTRIBUTION else [f"plugin {entry.plugin}"]
        origin += [] if entry.distribution == "-" else [f"{entry.distribution} {entry.version}"]
        out.append({"name": entry.name, "path": str(entry.path), "origin": ", ".join(origin),
                    "zoo": _zoo_section(entry.path)})
    return out


def _zoo_section(path: str | Path) -> dict[str, Any] | None:
    """The ``zoo`` section a config file itself writes (trained weights and published mIoU), read
    without validating the whole config so that listing stays fast; None when it has none."""
    from semsegpaddle.core.config.loader import load_yaml

    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except Exception:  # listing never fails on one unreadable file; loading it names the problem
        return None
    zoo = data.get("zoo") if isinstance(data, dict) else None
    return zoo if isinstance(zoo, dict) else None


def add_plugin_commands(group: Any) -> None:
    """Let installed plugins add commands to a click group (see
    :func:`semsegpaddle.core.plugin.commands.add_plugin_commands`)."""
    from semsegpaddle.core.plugin.commands import add_plugin_commands as add

    add(group)


# -------------------------------------------------------------------------------------------------
# data, training, files
# -------------------------------------------------------------------------------------------------


def check_data(config: dict[str, Any], splits: Sequence[str] = ()):
    """Read every sample of the config's dataset and report data problems (no paddle import);
    see :func:`semsegpaddle.core.data.check.check_data`."""
    from semsegpaddle.core.data.check import check_data as run_check

    return run_check(config, list(splits))


def load_check_config(config_source: str | None, overrides: Sequence[str] = ()):
    """The config ``check-data --write-config`` checks: like :func:`load_config`, except that a
    dataset's missing ``num_classes`` gets a provisional count, so the masks can show the real one
    (see :func:`semsegpaddle.core.data.check.load_check_config`)."""
    from semsegpaddle.core.data.check import load_check_config as load

    return load(config_source, overrides)


def check_config_target(path: str | Path, config_source: str | None, *, overwrite: bool = False) -> Path:
    """``path`` as the file ``--write-config`` may write (see
    :func:`semsegpaddle.core.data.config_fixes.check_config_target`)."""
    from semsegpaddle.core.data.config_fixes import check_config_target as check

    return check(path, config_source, overwrite=overwrite)


def write_fixed_config(config_source: str | None, overrides: Sequence[str], report: Any, path: str | Path, *,
                       overwrite: bool = False):
    """Write a config that inherits ``config_source`` with every fix the check-data ``report``
    supports (see :func:`semsegpaddle.core.data.config_fixes.write_fixed_config`)."""
    from semsegpaddle.core.data.config_fixes import write_fixed_config as write

    return write(config_source, overrides, report, path, overwrite=overwrite)


def launch_training(config: dict[str, Any], worker_args: Sequence[str], *, nproc: int | None = None,
                    nnodes: int | None = None, master: str | None = None, node_rank: int | None = None,
                    log_dir: str | None = None, resume: bool = False, overwrite: bool = False,
                    debug: bool = False) -> None:
    """Check what can be checked here, then run Paddle's launcher running ``semseg train
    WORKER_ARGS`` in each process, under a supervisor that ends the job when one process fails and
    names it in one line; exits with the job's code (does not return)."""
    from semsegpaddle.core.engine.launch import LaunchPlan, check_plan, launcher_command, run_supervised
    from semsegpaddle.core.engine.run_folder import RunFolder

    plan = LaunchPlan(nproc or 1, nnodes or 1, master, node_rank, log_dir)
    check_plan(plan)
    RunFolder(config["runtime"]["output_dir"]).check_start(resume, overwrite)
    command = launcher_command(plan, list(worker_args), config["runtime"]["output_dir"], debug=debug)
    sys.exit(run_supervised(command, plan, config["runtime"]["output_dir"]))


def score_prediction_folder(config: dict[str, Any], predictions: str | Path, split: str | None = None,
                            encoding: str = "auto"):
    """Like :func:`score_predictions`, returning the whole result: metrics, the encoding read and
    the files that matched no sample."""
    from semsegpaddle.core.inference.scoring import score_predictions as _score

    return _score(config, predictions, split, encoding, config["runtime"]["progress"])


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    import json

    from semsegpaddle.core.common.atomic import write_text_atomic

    write_text_atomic(Path(path), json.dumps(data, indent=2))
    return Path(path)


def write_metrics(metrics: Metrics, config: dict[str, Any], out_path: str | Path | None = None) -> tuple[Path, Path | None]:
    """Write metrics as JSON (with the confusion matrix; default ``<output_dir>/eval_metrics.json``)
    and the row-normalised confusion matrix as ``<json name>_confusion.png`` beside it; return both
    paths (the picture's None when there is no matrix)."""
    target = Path(out_path) if out_path else Path(config["runtime"]["output_dir"]) / "eval_metrics.json"
    write_json(target, metrics.to_json(confusion=True))
    if metrics.confusion is None:
        return target, None
    from semsegpaddle.core.inference.metrics import save_confusion_png

    picture = target.with_name(f"{target.stem}_confusion.png")
    save_confusion_png(metrics.confusion, metrics.class_names, picture)
    return target, picture


def convert_weights(backbone: str, source: str | Path, destination: str | Path, options: Iterable[str] = (),
                    *, allow_missing: bool = False):
    """Convert a timm/torchvision checkpoint into ``backbone``'s weights (``options`` as
    ``key=value`` texts) and save them as safetensors; returns the load report."""
    from semsegpaddle.core.config.loader import parse_override
    from semsegpaddle.core.model.convert import convert_weights_file

    parsed = dict(parse_override(o) for o in options)
    return convert_weights_file(backbone, str(source), str(destination), parsed, allow_missing=allow_missing)


def convert_model_weights(config: dict[str, Any], source: str | Path, destination: str | Path):
    """Import a PaddleSeg / torchvision model (file or URL) into the config's model and save it as
    our checkpoint (see :func:`semsegpaddle.core.engine.restore.convert_model_file`)."""
    from semsegpaddle.core.engine.restore import convert_model_file

    return convert_model_file(config, source, destination)


def is_backbone(name: str) -> bool:
    """True when ``name`` is a registered backbone (convert-weights' two forms)."""
    from semsegpaddle.core.plugin.manager import get_registry

    return name in get_registry("backbone").names()
