"""The ``semseg`` command line (click). Commands are thin: their logic lives in semsegpaddle.api."""
from __future__ import annotations

import fnmatch
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import click

from semsegpaddle import __version__, api
from semsegpaddle.api import SemsegError

KIND_CHOICES = ["backbone", "decoder", "dataset", "loss", "logger"]
#: `semseg list config` lists the packaged configs (trained models with their published mIoU)
LIST_CHOICES = [*KIND_CHOICES, "config"]
#: exceptions whose message is the whole story for the user: one line, exit 1, no traceback
USER_ERRORS = (SemsegError, ValueError, FileNotFoundError)


class SemsegGroup(click.Group):
    """Turns bad-input errors into one-line messages unless ``--debug`` is given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if ctx.params.get("debug"):
                raise
            message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise click.ClickException(message or type(exc).__name__) from None


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"Warning: {message}\n"


def split_config_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split positional arguments into an optional config (no '=') and key=value overrides."""
    configs = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(configs) > 1:
        raise click.UsageError(f"expected at most one config, got {', '.join(configs)} (overrides look like key=value)")
    return (configs[0] if configs else None), overrides


def _load(args: Sequence[str], threads: int | None = None):
    config_name, overrides = split_config_args(args)
    if threads is not None:
        overrides.append(f"runtime.threads={threads}")
    return api.load_config(config_name, overrides)


@click.group(cls=SemsegGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="semseg")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Semantic segmentation on PaddlePaddle: train, evaluate, predict; extensible through plugins.

    CONFIG arguments take a file path or the name of a packaged config (see `semseg config --list`);
    any number of key.sub=value arguments override it.
    """
    warnings.formatwarning = _format_warning
    if debug:
        _print_plugin_tracebacks()


def _print_plugin_tracebacks() -> None:
    """With --debug: the full traceback of every plugin failure (the warnings gave one line each)."""
    for message, traceback in api.plugin_failure_tracebacks():
        click.echo(f"Traceback of: {message}\n{traceback}", err=True)


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(LIST_CHOICES))
@click.option("--pattern", default="*", show_default=True, help="Only names matching this glob.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(kind: str | None, pattern: str, as_json: bool) -> None:
    """List available backbones, decoders, datasets, losses and loggers, the plugin that gave each, and their
    options; `semseg list config`: the packaged configs, trained zoo models with their published mIoU."""
    if kind == "config":
        entries = [e for e in api.packaged_configs() if fnmatch.fnmatch(e["name"], pattern)]
        if as_json:
            click.echo(json.dumps(entries, indent=2))
        else:
            _echo_configs(entries)
        return
    components = api.list_components(kind, pattern)
    if as_json:
        click.echo(json.dumps([{
            "kind": c.kind, "name": c.name, "description": c.description, "plugin": c.plugin,
            "distribution": c.distribution, "version": c.version,
            "options": [{"name": o.name, "type": o.type_name, "default": None if o.required else o.default,
                         "required": o.required, "choices": o.choices, "description": o.description}
                        for o in c.options],
        } for c in components], indent=2, default=str))
        return
    for current in KIND_CHOICES:
        group = [c for c in components if c.kind == current]
        if not group:
            continue
        click.secho("losses" if current == "loss" else f"{current}s", bold=True)
        for c in group:
            click.echo(f"  {c.name}  [plugin {c.plugin}, {c.distribution} {c.version}]  {c.description}")
            for o in c.options:
                value = "(required)" if o.required else f"= {o.default!r}"
                if o.choices is not None:
                    value += f" (one of {', '.join(map(repr, o.choices))})"
                click.echo(f"      {o.name}: {o.type_name} {value}  — {o.description}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version and the hooks each implements; failures too."""
    listed = api.list_plugins()
    rows = listed["plugins"]
    if as_json:
        failed = [{k: v for k, v in f.to_json().items() if k != "traceback"} for f in listed["failed"]]
        click.echo(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  ({row['distribution']} {row['version']})  {', '.join(row['hooks'])}")
    for f in listed["failed"]:
        details = [f"{f.distribution} {f.version}" if f.distribution != "-" else "in memory", f.stage,
                   f.hook, f.component, f"at {f.location}" if f.location else None]
        click.echo(f"{f.plugin}  FAILED: {f.error}  [{'; '.join(d for d in details if d)}]")


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--list", "list_packaged", is_flag=True, help="List the packaged configs and the plugin of each.")
def config(args: tuple[str, ...], list_packaged: bool) -> None:
    """Print the fully merged and validated config: CONFIG [key=value ...]."""
    if list_packaged:
        _echo_configs(api.packaged_configs())
        return
    click.echo(_load(args).to_yaml(), nl=False)


def _echo_configs(entries: list[dict[str, Any]]) -> None:
    """One line per packaged config; a trained model's also its published mIoU and weights."""
    for entry in entries:
        click.echo(f"{entry['name']}  [{entry['origin']}]  {entry['path']}")
        zoo = entry.get("zoo") or {}
        if zoo.get("weights_url"):
            miou = zoo.get("published_miou") or {}
            figures = ", ".join(f"{key} {value}" for key, value in miou.items())
            click.echo(f"    trained: {zoo.get('source') or '?'}; published mIoU {figures or '?'}; "
                       f"--weights {zoo['weights_url']}")


@cli.command(name="check-data")
@click.argument("args", nargs=-1)
@click.option("--split", "splits", multiple=True,
              help="Split to check (repeatable). Default: dataset.train_split and dataset.val_split.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also save the report as JSON in this file.")
@click.option("--write-config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write a config inheriting CONFIG, with the overrides and every fix the data calls for "
                   "(each line says why; what the data leaves open is asked, not guessed).")
@click.option("--overwrite", is_flag=True, help="With --write-config: replace FILE if it exists.")
def check_data_command(args: tuple[str, ...], splits: tuple[str, ...], json_path: str | None,
                       config_path: str | None, overwrite: bool) -> None:
    """Read every sample of the dataset and report data problems: [CONFIG] [key=value ...].

    Finds missing, unpaired, unreadable or truncated files, masks of another size than their
    image, mask values outside the classes and ignore_index, JPEG and colour masks; prints the
    pixel count of each class, and for each problem its likely cause and the config line that
    fixes it. Exit 1 when any problem was found, 0 when the data is clean.

    --write-config FILE writes those config lines: label_map, reduce_zero_label, the palette of
    colour masks, rims to ignore, num_classes (which may then be left unset) and class names, and
    model.mean / model.std of the training images. FILE inherits CONFIG; it is never the config
    checked, nor an existing file unless --overwrite.
    """
    if overwrite and not config_path:
        raise click.UsageError("--overwrite applies only with --write-config FILE")
    config_name, overrides = split_config_args(args)
    if config_path:  # refuse a bad FILE before reading the whole dataset
        api.check_config_target(config_path, config_name, overwrite=overwrite)
        config = api.load_check_config(config_name, overrides)
    else:
        config = api.load_config(config_name, overrides)
    report = api.check_data(config, splits)  # never imports paddle
    click.echo(report.text())
    if json_path:
        api.write_json(json_path, report.to_json())
        click.echo(f"report written to {json_path}")
    if config_path:
        written = api.write_fixed_config(config_name, overrides, report, config_path, overwrite=overwrite)
        click.echo(f"\n{written.text()}")
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in runtime.output_dir.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in runtime.output_dir.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: every core).")
@click.option("--nproc", type=int, default=None,
              help="Data parallel: start N processes on this machine through paddle.distributed.launch.")
@click.option("--nnodes", type=int, default=None, help="Multi-node: machines in the job (with --master).")
@click.option("--master", default=None, help="Multi-node: HOST:PORT where the machines' launchers meet.")
@click.option("--rank", "node_rank", type=int, default=None, help="Multi-node: this machine's rank, 0..nnodes-1.")
@click.option("--log-dir", default=None,
              help="Worker logs of --nproc/--nnodes jobs (default: <output_dir>/launch_logs).")
def train(args: tuple[str, ...], resume: bool, overwrite: bool, threads: int | None, nproc: int | None,
          nnodes: int | None, master: str | None, node_rank: int | None, log_dir: str | None) -> None:
    """Train: [CONFIG] [key=value ...] (default config: synthetic_deeplabv3).

    Writes model_last.safetensors (weights + training state), model_best.safetensors, config.yaml,
    train_log.jsonl, eval_log.jsonl, metrics.json and versions.json into runtime.output_dir
    (runtime.keep_last adds model_STEP.safetensors). SIGTERM or Ctrl-C stop after the current step
    with a checkpoint (exit 128+signal); --resume continues exactly from the newest complete
    checkpoint. --nproc N (and --nnodes/--master/--rank for several machines) hands the run over to
    `python -m paddle.distributed.launch`, which starts and watches the processes.
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    config = _load(args, threads)
    if any(v is not None for v in (nproc, nnodes, master, node_rank)):
        _launch(config, args, resume, overwrite, threads, nproc, nnodes, master, node_rank, log_dir)
    try:
        result = api.train(config, resume=resume, overwrite=overwrite)
    except api.TrainingStopped as stopped:
        click.echo(str(stopped), err=True)
        sys.exit(stopped.exit_code)
    if result.already_complete:
        click.echo(f"nothing to do: the run in {result.output_dir} already reached step {result.steps} "
                   f"(train.iters={config['train']['iters']}); raise train.iters to train further")
        return
    if result.metrics is not None:
        click.echo(result.metrics.table())
    click.echo(f"outputs in {result.output_dir}")


def _launch(config: Any, args: tuple[str, ...], resume: bool, overwrite: bool, threads: int | None,
            nproc: int | None, nnodes: int | None, master: str | None, node_rank: int | None,
            log_dir: str | None) -> None:
    """Check what can be checked here, then become Paddle's launcher running `semseg train` per process."""
    worker_args = [*args, *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else []),
                   *(["--threads", str(threads)] if threads is not None else [])]
    api.launch_training(config, worker_args, nproc=nproc, nnodes=nnodes, master=master, node_rank=node_rank,
                        log_dir=log_dir, resume=resume, overwrite=overwrite, debug=_debug())


def _pair_option(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """'H,W' (or one number for both) → [H, W] of positive integers."""
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.replace("x", ",").split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) <= 0:
        raise click.BadParameter(f"expected HEIGHT,WIDTH (positive integers, e.g. 512,1024), got {value!r}")
    return numbers


def _scales_option(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """'0.75,1,1.25' → [0.75, 1.0, 1.25] of positive numbers."""
    if value is None:
        return None
    try:
        scales = [float(part) for part in value.split(",")]
    except ValueError:
        scales = []
    if not scales or min(scales) <= 0:
        raise click.BadParameter(f"expected comma-separated numbers > 0 (e.g. 0.75,1,1.25), got {value!r}")
    return scales


def _inference_options(command: Any) -> Any:
    """The options of eval and predict that choose the inference mode (overriding the config's
    eval.* keys) and the backend."""
    options = [
        click.option("--mode", type=click.Choice(["whole", "slide"]), default=None,
                     help="Override eval.mode: whole image, or sliding windows (--crop-size, --stride)."),
        click.option("--crop-size", callback=_pair_option, default=None, metavar="H,W",
                     help="Override eval.crop_size: the sliding window."),
        click.option("--stride", callback=_pair_option, default=None, metavar="H,W",
                     help="Override eval.stride: the step between windows (default 2/3 of the window)."),
        click.option("--scales", callback=_scales_option, default=None, metavar="S1,S2,...",
                     help="Override eval.scales: image scales whose probabilities are averaged."),
        click.option("--flip/--no-flip", default=None, help="Override eval.flip: also segment the mirrored image."),
        click.option("--backend", type=click.Choice(["dynamic", "paddle-inference", "onnxruntime"]),
                     default="dynamic", show_default=True, help="dynamic: the checkpoint in Paddle; "
                     "paddle-inference: an export folder (--model-dir) in Paddle Inference, oneDNN on CPU; "
                     "onnxruntime: its model.onnx (model_int8.onnx for an --int8 export) in onnxruntime."),
        click.option("--model-dir", type=click.Path(file_okay=False), default=None,
                     help="Export folder (semseg export --output) for --backend paddle-inference or onnxruntime; "
                     "class names and palette come from its export_info.json."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
                     help="Override eval.precision: bf16 runs --backend paddle-inference in oneDNN's bfloat16 "
                     "kernels (CPUs with AVX512_BF16)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _inference_overrides(mode: str | None, crop_size: list[int] | None, stride: list[int] | None,
                         scales: list[float] | None, flip: bool | None, precision: str | None = None) -> list[str]:
    """The eval.* key=value overrides the inference options stand for."""
    overrides = [f"eval.mode={mode}"] if mode else []
    overrides += [f"eval.precision={precision}"] if precision else []
    overrides += [f"eval.{key}={value}" for key, value in (("crop_size", crop_size), ("stride", stride),
                                                            ("scales", scales)) if value is not None]
    return overrides + ([f"eval.flip={str(flip).lower()}"] if flip is not None else [])


def _check_backend_options(backend: str, model_dir: str | None, weights: str | None) -> None:
    """The API's backend rules, as a usage error (exit 2) before anything is loaded."""
    try:
        api.check_backend_options(backend, model_dir, weights)
    except api.BackendOptionError as exc:
        raise click.UsageError(str(exc)) from None


@cli.command(name="eval")
@click.argument("args", nargs=-1)
@click.option("--weights", default=None,
              help="Checkpoint (.safetensors), a PaddleSeg .pdparams or torchvision .pth of the config's model, or an "
              "http(s) URL of one (downloaded once into $SEMSEG_CACHE). Default: model_best.safetensors of "
              "runtime.output_dir.")
@click.option("--split", default=None, help="Dataset split (default: dataset.val_split).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the metrics as JSON here (default: <output_dir>/eval_metrics.json).")
@click.option("--threads", type=int, default=None, help="CPU threads (default: every core).")
@click.option("--report", "with_report", is_flag=True,
              help="Also write <output_dir>/report.html (see `semseg report`) from the same predictions.")
@click.option("--predictions", "predictions_dir", type=click.Path(file_okay=False), default=None,
              help="Score the prediction PNGs in this folder (made by any tool) instead of running a model.")
@click.option("--encoding", type=click.Choice(["auto", "index", "submission"]), default="auto", show_default=True,
              help="With --predictions: pixel values are class indices (Cityscapes: trainIds) or the dataset's "
              "official ids (Cityscapes: labelIds); auto: official ids when a value lies in num_classes..254.")
@_inference_options
def evaluate(args: tuple[str, ...], weights: str | None, split: str | None, out_path: str | None,
             threads: int | None, with_report: bool, predictions_dir: str | None, encoding: str,
             mode: str | None, crop_size: list[int] | None,
             stride: list[int] | None, scales: list[float] | None, flip: bool | None, backend: str,
             model_dir: str | None, precision: str | None) -> None:
    """Evaluate a checkpoint or an export: [CONFIG] [key=value ...]; prints per-class IoU and mIoU.

    The inference mode is the config's eval section (mode, crop_size, stride, scales, flip), which
    --mode, --crop-size, --stride, --scales and --flip override.

    Prints per-class IoU, accuracy and Dice, mIoU, pixel accuracy, mean accuracy, fwIoU, mean
    Dice and Cohen's kappa; writes them as JSON (--out) and the row-normalised confusion matrix
    as a PNG beside it (<json name>_confusion.png).

    With --predictions DIR no model is loaded: each sample of the split is matched to a PNG under
    DIR by file name (its stem; for Cityscapes the city_seq_frame part, as the official evaluator
    matches) and scored against its label.

    \b
    Example: sliding windows at three scales with flip, the exported model under oneDNN:
      semseg eval CONFIG --mode slide --crop-size 512,1024 --scales 0.75,1,1.25 --flip
                         --backend paddle-inference --model-dir exported/
    """
    if predictions_dir is not None:
        _score_predictions(args, threads, predictions_dir, split, encoding, out_path,
                           weights is not None or model_dir is not None or backend != "dynamic" or with_report
                           or precision is not None)
        return
    _check_backend_options(backend, model_dir, weights)
    config = _load([*args, *_inference_overrides(mode, crop_size, stride, scales, flip, precision)], threads)
    if with_report:
        done = api.write_report(config, config["runtime"]["output_dir"], weights, split=split, backend=backend,
                            model_dir=model_dir)
        metrics = done.metrics
    else:
        metrics = api.evaluate(config, weights, split, backend=backend, model_dir=model_dir)
    _write_metrics(metrics, config, out_path)
    if with_report:
        click.echo(f"report written to {done.path}")


def _write_metrics(metrics: Any, config: Any, out_path: str | None) -> None:
    """Print the metrics table; write the JSON (with the confusion matrix) and its PNG picture."""
    click.echo(metrics.table())
    target, picture = api.write_metrics(metrics, config, out_path)
    if picture is None:
        click.echo(f"metrics written to {target}")
        return
    click.echo(f"metrics written to {target}, confusion matrix to {picture}")


def _score_predictions(args: Sequence[str], threads: int | None, predictions_dir: str, split: str | None,
                       encoding: str, out_path: str | None, model_options: bool) -> None:
    """``eval --predictions``: score prediction files, no model (and no paddle import)."""
    if model_options:
        raise click.UsageError("--predictions scores files and loads no model: drop --weights, --backend, "
                               "--precision, --model-dir and --report")
    config = _load(args, threads)
    scored = api.score_prediction_folder(config, predictions_dir, split, encoding)
    unused = f"; {len(scored.unused)} PNG files matched no sample" if scored.unused else ""
    click.echo(f"scored {predictions_dir} (values read as {scored.encoding} ids{unused})")
    _write_metrics(scored.metrics, config, out_path)


def _load_for_checkpoint(args: Sequence[str], weights: str | None):
    """(config, weights path) for predict/export: the CONFIG given, else the one stored in the checkpoint."""
    config_name, overrides = split_config_args(args)
    return api.resolve_config(config_name, overrides, weights)


def _debug() -> bool:
    return bool(click.get_current_context().find_root().params.get("debug"))


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--config", "config_args", multiple=True,
              help="Config, then key=value overrides (repeatable). Default: the config stored in the checkpoint.")
@click.option("--weights", default=None,
              help="Checkpoint (.safetensors), a PaddleSeg .pdparams or torchvision .pth of the config's model, or an "
              "http(s) URL of one (downloaded once into $SEMSEG_CACHE). Default: model_best.safetensors of "
              "runtime.output_dir.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), required=True, help="Folder for masks.")
@click.option("--overlay", is_flag=True, help="Also write <name>_overlay.png colour overlays.")
@click.option("--rgb-bands", default=None, metavar="R,G,B",
              help="Bands (1-based) an overlay of a multi-band model shows as red, green, blue, e.g. 3,2,1. "
              "Default: the first three, or band 1 as gray.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=None,
              help="Opacity of the mask in overlays, 0..1 (default 0.5); implies --overlay.")
@click.option("--format", "output_format", default="index", show_default=True,
              help="index: palette masks of class ids; cityscapes: labelId PNGs named "
              "<city_seq_frame>_leftImg8bit.png, as the official evaluation server reads them.")
@_inference_options
def predict(images: tuple[str, ...], config_args: tuple[str, ...], weights: str | None, output_dir: str,
            overlay: bool, rgb_bands: str | None, alpha: float | None, output_format: str, mode: str | None,
            crop_size: list[int] | None, stride: list[int] | None,
            scales: list[float] | None, flip: bool | None, backend: str, model_dir: str | None,
            precision: str | None) -> None:
    """Segment IMAGES into palette PNG masks (pixel value = class id) in --output.

    IMAGES are image files, folders (every image below them, recursively) and list files:
    @LIST, or a path ending in .txt or .lst, one image per line (the first field, so
    'image label' lines work), relative to the list file's folder; '#' starts a comment.

    --format cityscapes writes, per image, an 8-bit labelId PNG named
    <city_seq_frame>_leftImg8bit.png (train ids mapped by the official table): zip the folder
    for the Cityscapes server. Any dataset plugin declaring a submission format adds its name.

    Without --config, the model, class names and palette come from the checkpoint alone
    (key=value overrides given with --config apply on top of its stored config).
    Masks are named <stem>.png (overlays <stem>_overlay.png). Images sharing a stem are named
    after their path below their common folder: x/a.png, y/a.png -> x_a.png, y_a.png;
    a.png, a.jpg -> a_png.png, a_jpg.png. A mask that would replace an input image gets a
    _mask suffix (a_mask.png). Inputs are never overwritten: names that still clash stop the
    command before anything is written. Unreadable images are named in an error (exit 1)
    after the masks of the others were written.

    The inference mode is the config's eval section, which --mode, --crop-size, --stride,
    --scales and --flip override. With --backend paddle-inference --model-dir DIR, the exported
    model runs (no checkpoint needed; the eval keys come from --config, else the defaults).
    """
    _check_backend_options(backend, model_dir, weights)
    args = [*config_args, *_inference_overrides(mode, crop_size, stride, scales, flip, precision)]
    look = {"overlay": overlay or alpha is not None or rgb_bands is not None,
            "alpha": 0.5 if alpha is None else alpha, "format": output_format, "rgb_bands": rgb_bands}
    if backend != "dynamic":
        written = api.predict(_load(args), images, output_dir, backend=backend, model_dir=model_dir, **look)
    else:
        config, weights_path = _load_for_checkpoint(args, weights)
        written = api.predict(config, images, output_dir, weights_path, **look)
    click.echo(f"wrote {len(written)} masks to {output_dir}")


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--weights", default=None,
              help="Checkpoint (.safetensors) to serve with --backend dynamic. Default: model_best.safetensors of "
              "runtime.output_dir.")
@click.option("--backend", default="dynamic", show_default=True,
              help="dynamic: the checkpoint in Paddle; paddle-inference or onnxruntime: the export folder --model-dir.")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Export folder (semseg export --output) for an export backend.")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes sharing the port, each loading the model once (default 1).")
@click.option("--max-batch", type=click.IntRange(min=1), default=None,
              help="Most same-size images run as one batch (default 8; 1 turns batching off).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=None,
              help="How long a batch waits for more images after its first (default 10).")
@click.option("--max-queue", type=click.IntRange(min=1), default=None,
              help="Prediction requests admitted at once; more get 503 with Retry-After (default 64).")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=None,
              help="Largest image (width × height) accepted; larger gets 413 (default 25000000).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              help="Largest request body; larger gets 413 (default 33554432, 32 MiB).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a bearer token: every endpoint but /healthz and the page then needs "
              "'Authorization: Bearer <token>'.")
@click.option("--read-timeout", type=click.FloatRange(min=0.1), default=None,
              help="Seconds a client has to send a request's headers, and then its body (default 30).")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds SIGTERM waits for in-flight requests (default 30).")
@click.option("--threads", type=int, default=None, help="CPU threads per worker (default: every core).")
def serve(args: tuple[str, ...], weights: str | None, backend: str, model_dir: str | None, threads: int | None,
          **options: Any) -> None:
    """Serve a model over HTTP: [CONFIG] [key=value ...]; see docs/serving.md.

    POST /predict takes an image (raw body or multipart field 'image') and answers a palette PNG
    mask (default), an overlay (?format=overlay) or JSON class counts (?format=json), the same
    masks as `semseg predict`. GET / is a web page; /healthz, /readyz, /v1/model and /metrics
    (Prometheus) describe the server. SIGTERM drains in-flight requests and exits 0.

    \b
    Example: serve a trained run, then call it:
      semseg serve --weights runs/x/model_best.safetensors
      curl -F image=@photo.jpg http://127.0.0.1:8000/predict -o mask.png
    """
    _check_backend_options(backend, model_dir, weights)
    given = {key: value for key, value in options.items() if value is not None}
    extra = [f"runtime.threads={threads}"] if threads is not None else []
    config_name, _ = split_config_args(args)
    if backend != "dynamic":
        config = _load([*args, *extra])
        api.serve(config, backend=backend, model_dir=model_dir, config_name=config_name or Path(model_dir).name,
                  **given)
        return
    config, weights_path = _load_for_checkpoint([*args, *extra], weights)
    api.serve(config, weights_path, config_name=config_name or f"{Path(str(weights_path)).name} (stored config)",
              **given)


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--weights", default=None,
              help="Checkpoint (.safetensors), a PaddleSeg .pdparams or torchvision .pth of the config's model, or an "
              "http(s) URL of one (downloaded once into $SEMSEG_CACHE). Default: model_best.safetensors of "
              "runtime.output_dir.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for model.json, model.pdiparams and export_info.json.")
@click.option("--onnx", is_flag=True, help="Also write model.onnx (needs semsegpaddle[onnx]) and check it.")
@click.option("--int8", is_flag=True, help="Also write model_int8.onnx, quantized for --backend onnxruntime "
              "(implies --onnx), and refuse it if its masks disagree with float32's (see --int8-floor).")
@click.option("--calib-images", type=click.IntRange(min=1), default=None,
              help="With --int8: images calibrated on (default 32).")
@click.option("--calib-split", default=None, help="With --int8: dataset split of the calibration images "
              "(default dataset.train_split); the check uses dataset.val_split images that were not calibrated on.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None,
              help="With --int8: how activation ranges are chosen (default minmax).")
@click.option("--int8-floor", type=click.FloatRange(0.0, 1.0), default=None,
              help="With --int8: least share of held-back pixels whose class must agree with float32 (default 0.98).")
@click.option("--force-int8", is_flag=True, help="With --int8: write the int8 model even below the floor.")
def export(args: tuple[str, ...], weights: str | None, output_dir: str, onnx: bool, int8: bool,
           calib_images: int | None, calib_split: str | None, calib_method: str | None, int8_floor: float | None,
           force_int8: bool) -> None:
    """Export for Paddle Inference: [CONFIG] [key=value ...]; any input size, verified at two sizes.

    Without CONFIG, the model, class names and palette come from the checkpoint alone (key=value
    overrides apply on top of its stored config). Paddle's and paddle2onnx's own console output
    is shown only with --debug; nothing is installed at run time.

    --int8 also writes an int8 model for --backend onnxruntime, calibrated on images of the
    config's dataset, and scores it against the float32 model on held-back validation images:
    below --int8-floor agreement nothing is written (exit 1) unless --force-int8.
    """
    int8_options = {"--calib-images": calib_images, "--calib-split": calib_split, "--calib-method": calib_method,
                    "--int8-floor": int8_floor, "--force-int8": force_int8 or None}
    given = [name for name, value in int8_options.items() if value is not None]
    if given and not int8:
        raise click.UsageError(f"{', '.join(given)} only apply with --int8; add --int8 or drop them")
    config, weights_path = _load_for_checkpoint(args, weights)
    report = api.export(config, output_dir, weights_path, onnx=onnx, verbose=_debug(), int8=int8,
                        calib_images=calib_images, calib_split=calib_split, calib_method=calib_method,
                        int8_floor=int8_floor, force_int8=force_int8)
    checks = ", ".join(f"{size}: {error:.2g}" for size, error in report.max_abs_error.items())
    click.echo(f"exported to {report.output_dir} (max |exported - model| {checks}; "
               f"largest |logit| {report.max_abs_logit:.3g})")
    if report.int8 is not None:
        figures = report.int8
        forced = " (below the floor: written with --force-int8)" if figures["forced"] else ""
        click.echo(f"int8 model {figures['file']}: agrees with float32 on {figures['pixel_agreement']:.2%} of "
                   f"{figures['held_back_pixels']} pixels of {figures['held_back_images']} held-back images, "
                   f"mIoU vs float32 {figures['miou_vs_fp32']:.2%}{api.int8_labels_summary(figures)} "
                   f"(floor {figures['floor']:.2%}){forced}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("overrides", nargs=-1)
@click.option("--worst", type=click.IntRange(min=0), default=8, show_default=True,
              help="How many of the worst validation images to show.")
@click.option("--rank-by", type=click.Choice(["miou", "error"]), default="miou", show_default=True,
              help="Worst by per-image mIoU (lowest first) or by pixel error (highest first).")
@click.option("--split", default=None, help="Dataset split (default: dataset.val_split).")
@click.option("--threads", type=int, default=None, help="CPU threads (default: every core).")
@click.option("--rgb-bands", default=None, metavar="R,G,B",
              help="Bands (1-based) the input pictures of a multi-band model show as red, green, blue, e.g. "
              "3,2,1. Default: the first three, or band 1 as gray.")
def report(run_dir: str, overrides: tuple[str, ...], worst: int, rank_by: str, split: str | None,
           threads: int | None, rgb_bands: str | None) -> None:
    """Write RUN_DIR/report.html: one self-contained page to open after a run [key=value ...].

    The run's best checkpoint, with the config stored in it (key=value overrides on top, e.g.
    dataset.root=... when the data moved), segments the validation split in the config's
    inference mode. The page shows the metrics, a per-class IoU chart, the row-normalised
    confusion matrix, the loss / learning rate / validation curves of the run's logs, and the
    worst validation images (input, ground truth, prediction, errors side by side).
    """
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise click.UsageError(f"expected key=value overrides after RUN_DIR, got {', '.join(bad)}")
    extra = [f"runtime.threads={threads}"] if threads is not None else []
    done = api.report_run(run_dir, [*overrides, *extra], worst=worst, rank_by=rank_by, split=split,
                          rgb_bands=rgb_bands)
    click.echo(f"mIoU {100 * done.metrics.miou:.2f} on {done.metrics.pixels} pixels; report written to {done.path}")


@cli.command(name="convert-weights")
@click.argument("target")
@click.argument("source")
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("-o", "--option", "options", multiple=True,
              help="Backbone option key=value (repeatable); with a CONFIG: a config override.")
@click.option("--allow-missing", is_flag=True, help="Write even if some backbone parameters are missing.")
def convert_weights(target: str, source: str, destination: str, options: tuple[str, ...], allow_missing: bool) -> None:
    """Convert weights once into a safetensors file: TARGET SOURCE DESTINATION.

    TARGET a backbone name: a timm/torchvision ImageNet checkpoint (.safetensors, or .pth) becomes
    that backbone's weights, for model.backbone.pretrained.

    TARGET a config (file or packaged name, e.g. paddleseg_pspnet_resnet50_os8_cityscapes_1024x512_80k):
    a trained PaddleSeg .pdparams or torchvision .pth (or an http(s) URL of one) becomes a full
    checkpoint of that model, with its config, classes and palette, usable as --weights alone.

    \b
    Example: semseg convert-weights resnet resnet50d.safetensors r50d.safetensors -o stem=deep_avgdown
    """
    if not api.is_url(source) and not Path(source).is_file():
        raise click.BadParameter(f"file {source!r} does not exist", param_hint="'SOURCE'")
    if api.is_backbone(target):
        report = api.convert_weights(target, source, destination, options, allow_missing=allow_missing)
        click.echo(report.summary())
        click.echo(f"wrote {destination}; use it with model.backbone.pretrained={destination}")
        return
    report = api.convert_model_weights(api.load_config(target, list(options)), source, destination)
    click.echo(f"wrote {destination}; use it with --weights {destination}"
               + (f" ({len(report.unused)} source tensors were not used)" if report and report.unused else ""))


PADDLE_MISSING = ("semsegpaddle needs PaddlePaddle, which is not installed: run `pip install 'semsegpaddle[cpu]'` "
                  "(CPU) or install paddlepaddle-gpu for your CUDA (GPU)")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    import importlib.util

    if importlib.util.find_spec("paddle") is None:
        raise SystemExit(f"Error: {PADDLE_MISSING}")
    warnings.formatwarning = _format_warning
    warnings.filterwarnings("ignore", message="No ccache found")  # printed by `import paddle`; not ours to fix
    try:
        api.add_plugin_commands(cli)
    except Exception as exc:  # last resort: --help, --version and the built-in commands still work
        click.echo(f"Warning: plugin commands were not added: {type(exc).__name__}: {exc}", err=True)
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="semseg")


if __name__ == "__main__":
    main()
