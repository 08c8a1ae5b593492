"""The ``semseg`` command line (click). Commands are thin: their logic lives in semsegpaddle.api."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import click

from semsegpaddle import __version__
from semsegpaddle.core.errors import SemsegError

KIND_CHOICES = ["backbone", "decoder", "dataset", "loss"]
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
    from semsegpaddle.core.config.loader import load_config  # not via semsegpaddle.api: `semseg config` needs no paddle

    config_name, overrides = split_config_args(args)
    if threads is not None:
        overrides.append(f"runtime.threads={threads}")
    return load_config(config_name, overrides)


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
    from semsegpaddle.core.plugin.manager import load_plugins

    for failure in load_plugins().failures:
        if failure.traceback:
            click.echo(f"Traceback of: {failure.message()}\n{failure.traceback}", err=True)


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KIND_CHOICES))
@click.option("--pattern", default="*", show_default=True, help="Only names matching this glob.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(kind: str | None, pattern: str, as_json: bool) -> None:
    """List available backbones, decoders, datasets and losses, the plugin that gave each, and their options."""
    from semsegpaddle.core.plugin.manager import list_components  # not via semsegpaddle.api: `semseg list` needs no paddle

    components = list_components(kind, pattern)
    if as_json:
        click.echo(json.dumps([{
            "kind": c.kind, "name": c.name, "description": c.description, "plugin": c.plugin,
            "distribution": c.distribution, "version": c.version,
            "options": [{"name": o.name, "type": o.type_name, "default": None if o.required else o.default,
                         "required": o.required, "description": o.description} for o in c.options],
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
                click.echo(f"      {o.name}: {o.type_name} {value}  — {o.description}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version and the hooks each implements; failures too."""
    from semsegpaddle.core.plugin.manager import load_plugins

    state = load_plugins()
    rows = []
    for name, plugin in sorted(state.manager.list_name_plugin(), key=lambda item: item[0]):
        dist, version = state.distribution_of(name)
        hooks = sorted(caller.name for caller in state.manager.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
    if as_json:
        failed = [{k: v for k, v in f.to_json().items() if k != "traceback"} for f in state.failures]
        click.echo(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  ({row['distribution']} {row['version']})  {', '.join(row['hooks'])}")
    for f in state.failures:
        details = [f"{f.distribution} {f.version}" if f.distribution != "-" else "in memory", f.stage,
                   f.hook, f.component, f"at {f.location}" if f.location else None]
        click.echo(f"{f.plugin}  FAILED: {f.error}  [{'; '.join(d for d in details if d)}]")


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--list", "list_packaged", is_flag=True, help="List the packaged configs and the plugin of each.")
def config(args: tuple[str, ...], list_packaged: bool) -> None:
    """Print the fully merged and validated config: CONFIG [key=value ...]."""
    from semsegpaddle.core.plugin.manager import BUILTIN_DISTRIBUTION, load_plugins

    if list_packaged:
        for entry in load_plugins().configs:
            origin = [] if entry.plugin == BUILTIN_DISTRIBUTION else [f"plugin {entry.plugin}"]
            origin += [] if entry.distribution == "-" else [f"{entry.distribution} {entry.version}"]
            click.echo(f"{entry.name}  [{', '.join(origin)}]  {entry.path}")
        return
    click.echo(_load(args).to_yaml(), nl=False)


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in runtime.output_dir.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in runtime.output_dir.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: every core).")
def train(args: tuple[str, ...], resume: bool, overwrite: bool, threads: int | None) -> None:
    """Train: [CONFIG] [key=value ...] (default config: synthetic_deeplabv3).

    Writes model_last.safetensors (weights + training state), model_best.safetensors, config.yaml,
    train_log.jsonl, eval_log.jsonl and metrics.json into runtime.output_dir. SIGTERM or Ctrl-C stop
    after the current step with a checkpoint (exit 128+signal); --resume continues exactly. For data parallel, run it under
    `python -m paddle.distributed.launch --nproc_per_node N $(which semseg) train ...`.
    """
    from semsegpaddle.api import train as run_train
    from semsegpaddle.core.engine.interrupt import TrainingStopped

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    config = _load(args, threads)
    try:
        result = run_train(config, resume=resume, overwrite=overwrite)
    except TrainingStopped as stopped:
        click.echo(str(stopped), err=True)
        sys.exit(stopped.exit_code)
    if result.already_complete:
        click.echo(f"nothing to do: the run in {result.output_dir} already reached step {result.steps} "
                   f"(train.iters={config['train']['iters']}); raise train.iters to train further")
        return
    if result.metrics is not None:
        click.echo(result.metrics.table())
    click.echo(f"outputs in {result.output_dir}")


@cli.command(name="eval")
@click.argument("args", nargs=-1)
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.safetensors). Default: model_best.safetensors of runtime.output_dir.")
@click.option("--split", default=None, help="Dataset split (default: dataset.val_split).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the metrics as JSON here (default: <output_dir>/eval_metrics.json).")
@click.option("--threads", type=int, default=None, help="CPU threads (default: every core).")
def evaluate(args: tuple[str, ...], weights: str | None, split: str | None, out_path: str | None,
             threads: int | None) -> None:
    """Evaluate a checkpoint: [CONFIG] [key=value ...]; prints per-class IoU and mIoU."""
    from semsegpaddle.api import evaluate as run_eval
    from semsegpaddle.core.engine.atomic import write_text_atomic

    config = _load(args, threads)
    metrics = run_eval(config, weights, split)
    click.echo(metrics.table())
    target = Path(out_path) if out_path else Path(config["runtime"]["output_dir"]) / "eval_metrics.json"
    write_text_atomic(target, json.dumps(metrics.to_json(), indent=2))
    click.echo(f"metrics written to {target}")


def _load_for_checkpoint(args: Sequence[str], weights: str | None):
    """(config, weights path) for predict/export: the CONFIG given, else the one stored in the checkpoint."""
    from semsegpaddle.api import resolve_config

    config_name, overrides = split_config_args(args)
    return resolve_config(config_name, overrides, weights)


def _debug() -> bool:
    return bool(click.get_current_context().find_root().params.get("debug"))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_args", multiple=True,
              help="Config, then key=value overrides (repeatable). Default: the config stored in the checkpoint.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.safetensors). Default: model_best.safetensors of runtime.output_dir.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), required=True, help="Folder for masks.")
@click.option("--overlay", is_flag=True, help="Also write <name>_overlay.png colour overlays.")
def predict(images: tuple[str, ...], config_args: tuple[str, ...], weights: str | None, output_dir: str,
            overlay: bool) -> None:
    """Segment IMAGES into palette PNG masks (pixel value = class id) in --output.

    Without --config, the model, class names and palette come from the checkpoint alone
    (key=value overrides given with --config apply on top of its stored config).
    Masks are named <stem>.png (overlays <stem>_overlay.png). Images sharing a stem are named
    after their path below their common folder: x/a.png, y/a.png -> x_a.png, y_a.png;
    a.png, a.jpg -> a_png.png, a_jpg.png. A mask that would replace an input image gets a
    _mask suffix (a_mask.png). Inputs are never overwritten: names that still clash stop the
    command before anything is written. Unreadable images are named in an error (exit 1)
    after the masks of the others were written.
    """
    from semsegpaddle.api import predict as run_predict

    config, weights_path = _load_for_checkpoint(config_args, weights)
    written = run_predict(config, images, output_dir, weights_path, overlay)
    click.echo(f"wrote {len(written)} masks to {output_dir}")


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.safetensors). Default: model_best.safetensors of runtime.output_dir.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for model.json, model.pdiparams and export_info.json.")
@click.option("--onnx", is_flag=True, help="Also write model.onnx (needs semsegpaddle[onnx]) and check it.")
def export(args: tuple[str, ...], weights: str | None, output_dir: str, onnx: bool) -> None:
    """Export for Paddle Inference: [CONFIG] [key=value ...]; any input size, verified at two sizes.

    Without CONFIG, the model, class names and palette come from the checkpoint alone (key=value
    overrides apply on top of its stored config). Paddle's and paddle2onnx's own console output
    is shown only with --debug; nothing is installed at run time.
    """
    from semsegpaddle.api import export as run_export

    config, weights_path = _load_for_checkpoint(args, weights)
    report = run_export(config, output_dir, weights_path, onnx=onnx, verbose=_debug())
    checks = ", ".join(f"{size}: {error:.2g}" for size, error in report.max_abs_error.items())
    click.echo(f"exported to {report.output_dir} (max |exported - model| {checks}; "
               f"largest |logit| {report.max_abs_logit:.3g})")


@cli.command(name="convert-weights")
@click.argument("backbone")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("-o", "--option", "options", multiple=True, help="Backbone option key=value (repeatable).")
@click.option("--allow-missing", is_flag=True, help="Write even if some backbone parameters are missing.")
def convert_weights(backbone: str, source: str, destination: str, options: tuple[str, ...], allow_missing: bool) -> None:
    """Convert a timm/torchvision checkpoint (.safetensors, or .pth with torch) for BACKBONE.

    Example: semseg convert-weights resnet resnet50d.safetensors r50d.safetensors -o stem=deep_avgdown
    """
    from semsegpaddle.core.config.loader import parse_override
    from semsegpaddle.core.model.weights import convert_weights_file

    parsed = dict(parse_override(o) for o in options)
    report = convert_weights_file(backbone, source, destination, parsed, allow_missing=allow_missing)
    click.echo(report.summary())
    click.echo(f"wrote {destination}; use it with model.backbone.pretrained={destination}")


def _register_plugin_commands() -> None:
    """Let each plugin add commands, one plugin at a time; a name already taken (by semseg itself or
    an earlier plugin) stays with its first owner, and a failing plugin is reported, not fatal."""
    from semsegpaddle.core.errors import DuplicateComponentError
    from semsegpaddle.core.plugin.failures import function_location
    from semsegpaddle.core.plugin.manager import call_each, load_plugins

    owners = {name: "semsegpaddle" for name in cli.commands}
    before: dict[str, click.Command] = {}

    def kwargs_for(call: Any) -> dict[str, Any]:
        before.clear()
        before.update(cli.commands)
        return {"cli": cli}

    def after(call: Any) -> None:
        for name, command in list(cli.commands.items()):
            if name in before and before[name] is not command:
                cli.commands[name] = before[name]
                call.refuse(f"command '{name}'", DuplicateComponentError(
                    f"command '{name}' belongs to {owners[name]}; plugin '{call.plugin}' cannot replace it"),
                    location=function_location(command.callback))
            owners.setdefault(name, f"plugin '{call.plugin}'")

    call_each(load_plugins(), "semseg_register_commands", kwargs_for, after)


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
        _register_plugin_commands()
    except Exception as exc:  # last resort: --help, --version and the built-in commands still work
        click.echo(f"Warning: plugin commands were not added: {type(exc).__name__}: {exc}", err=True)
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="semseg")


if __name__ == "__main__":
    main()
