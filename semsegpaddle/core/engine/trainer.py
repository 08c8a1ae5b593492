"""The training loop: periodic evaluation and logs, checkpoints that resume exactly.

The pieces it drives: :mod:`optim` (optimizer, schedule, parameter groups, clipping), :mod:`step`
(micro-batches, AMP, data-parallel sync), :mod:`checkpoint` and :mod:`run_folder` (what is
written and resumed), :mod:`progress` and :mod:`loggers` (what the user sees).
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paddle

from semsegpaddle.core.data.datasets import SkipCounter, create_dataset, train_loader
from semsegpaddle.core.data.decoded_cache import require_cacheable
from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
from semsegpaddle.core.engine.agreement import check_ranks_agree
from semsegpaddle.core.engine.amp import AmpPlan, make_amp_plan
from semsegpaddle.core.common.atomic import write_text_atomic
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.engine.checkpoint import (label_space, newest_complete_checkpoint, publish_copy,
                                                 read_metadata, restore_training_state, save_checkpoint, save_weights)
from semsegpaddle.core.engine.class_balance import ClassBalance, plan_class_balance, publish
from semsegpaddle.core.engine.interrupt import TrainingStopped, stop_on_signals
from semsegpaddle.core.engine.optim import build_optimizer  # noqa: F401 - also offered from here
from semsegpaddle.core.engine.progress import Progress, timed
from semsegpaddle.core.engine.run_folder import (BEST, EVAL_LOG, LAST, METRICS, TRAIN_LOG, RunFolder,
                                                 step_checkpoint_name)
from semsegpaddle.core.common.runtime import (DistEnv, choose_device, convert_batch_norm, init_distributed,
                                              quiet_paddle, seed_everything, set_threads)
from semsegpaddle.core.engine.loggers import (LoggerSet, RunInfo, build_loggers, eval_scalars, flat_params,
                                              train_scalars)
from semsegpaddle.core.engine.rank_watch import watch_rank
from semsegpaddle.core.engine.compiled import CompilePlan, plan_compile, training_forward
from semsegpaddle.core.engine.step import StepRunner
from semsegpaddle.core.engine.world_size import keep_global_batch, world_record
from semsegpaddle.core.inference.evaluation import evaluate
from semsegpaddle.core.inference.segmenter import InferenceMode
from semsegpaddle.core.inference.metrics import Metrics
from semsegpaddle.core.model.assembly import build_model
from semsegpaddle.core.model.losses import create_loss


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    metrics: Metrics | None = None
    best_miou: float = float("nan")
    already_complete: bool = False  # a resume found the run finished: nothing was done
    rank_digests: list[str] = field(default_factory=list)  # sha256 of each process's trained weights


def setup_runtime(config: dict[str, Any]) -> tuple[DistEnv, str]:
    """Device, data-parallel environment, threads and seeds, from ``runtime``."""
    runtime = config["runtime"]
    choose_mkl_code_path(runtime["mkl_code_path"])  # before the process's first MKL call fixes it
    quiet_paddle()
    device = choose_device(runtime["device"])
    paddle.set_device(device)
    dist = init_distributed()
    set_threads(runtime["threads"], dist.world_size)
    seed_everything(runtime["seed"])
    return dist, device


def share_rank0_statistics(model: paddle.nn.Layer, dist: DistEnv) -> None:
    """Give every process rank 0's non-trained tensors (BatchNorm statistics).

    Data parallel averages gradients, so trained weights agree across processes, but each keeps
    the BatchNorm statistics of its own batches. Rank 0's are the ones saved: evaluating with them
    everywhere makes the reported metrics those of the saved model.
    """
    if dist.world_size <= 1:
        return
    import paddle.distributed as pdist

    for tensor in model.state_dict().values():
        if tensor.stop_gradient:
            pdist.broadcast(tensor, src=0)


def loader_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config the batch loader sees: one batch per step holds every micro-batch of the step."""
    accumulate = config["train"]["accumulate"]
    if accumulate == 1:
        return config
    return {**config, "train": {**config["train"], "batch_size": config["train"]["batch_size"] * accumulate}}


def train(config: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train the model a validated config describes; evaluate and checkpoint into ``output_dir``.

    A fresh run refuses a folder that already holds a run unless ``overwrite`` is set, and a
    folder another process trains in. Nothing in the folder changes until the run is known to
    start: options, model, data and (on resume) the checkpoint are checked first. ``--resume``
    continues from the newest complete checkpoint (``model_last`` or a numbered one). SIGTERM or
    Ctrl-C stop after the current step with a checkpoint (:class:`TrainingStopped`).
    """
    from semsegpaddle.core.engine.provenance import session_record

    folder = RunFolder(config["runtime"]["output_dir"])
    folder.check_start(resume, overwrite)
    dist, device = setup_runtime(config)
    amp = make_amp_plan(config["train"]["amp"], device)
    compiled = plan_compile(config["train"]["compile"], world_size=dist.world_size, amp=config["train"]["amp"],
                            device=device)
    loggers = build_loggers(config) if dist.is_main else LoggerSet()
    train_set = create_dataset(config, config["dataset"]["train_split"])
    val_set = create_dataset(config, config["dataset"]["val_split"])
    if config["train"]["cache_dir"] is not None:
        require_cacheable(train_set, config["dataset"]["name"])
    model = build_model(config, train_set.num_classes)
    if config["model"]["pretrained"] and not resume:  # a resumed run's checkpoint holds every weight
        from semsegpaddle.core.engine.restore import load_weights_into

        load_weights_into(model, config, config["model"]["pretrained"], allow_class_change=True)
    model = convert_batch_norm(model, device, dist.world_size)
    balance = plan_class_balance(config, train_set, folder, _resumed_class_balance(folder) if resume else None,
                                 config["runtime"]["progress"] and dist.is_main)
    criterion = create_loss(config, model, train_set.ignore_index, balance.loss_overrides() if balance else None)
    optimizer, scheduler = build_optimizer(model, config)
    with folder.locked() if dist.is_main else contextlib.nullcontext(folder):
        folder.check_start(resume, overwrite)  # again, now that no other process can write here
        start, best, meta = 0, -1.0, {}
        if resume:
            source = newest_complete_checkpoint(folder.resume_candidates())
            meta = restore_training_state(source, model, optimizer, scheduler)
            amp.restore(meta.get("amp_scaler"))
            config = keep_global_batch(config, meta, dist.world_size)
            start, best = int(meta["step"]), float(meta.get("best_miou", -1.0))
            if start >= config["train"]["iters"]:
                return TrainResult(folder.path, start, best_miou=best, already_complete=True)
        if dist.is_main:
            folder.sweep_temporaries()
            if overwrite:
                folder.clear()
            if resume:
                folder.truncate_logs(start)
                folder.drop_step_checkpoints_after(start)
                if source != folder / LAST:  # the last checkpoint was older or damaged
                    publish_copy(source, folder / LAST)
            folder.write_config(config.to_yaml() if hasattr(config, "to_yaml") else json.dumps(config))
            folder.record_versions(session_record(start, dist.world_size, device))
            if balance is not None:
                publish(balance, folder, config["train"].get("cache_dir"))
        skips = SkipCounter(config["train"].get("skip_bad_samples", False), meta.get("skipped"))
        run = RunInfo(folder.path, folder.path.resolve().name, resume, dist.world_size, dict(config))
        with loggers.running(run, flat_params(config), start):
            return _train_loop(config, folder, dist, model, criterion, optimizer, scheduler, amp, skips,
                               train_set, val_set, start, best, balance, loggers, compiled)


def _resumed_class_balance(folder: RunFolder) -> dict[str, Any] | None:
    """The class balance recorded in the checkpoint a resume will start from (None if it has none).

    Read before the folder is locked, since the loss is built before: another process writing
    checkpoints here would hold the lock, and this run would then stop at it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged checkpoint passed over is reported once, under the lock
        try:
            return read_metadata(newest_complete_checkpoint(folder.resume_candidates())).get("class_balance")
        except SemsegError:
            return None  # reported under the lock


def _train_loop(config: dict[str, Any], folder: RunFolder, dist: DistEnv, model: paddle.nn.Layer, criterion: Any,
                optimizer: Any, scheduler: Any, amp: AmpPlan, skips: SkipCounter, train_set: Any, val_set: Any,
                start: int, best: float, balance: ClassBalance | None = None,
                loggers: LoggerSet | None = None, compiled: CompilePlan | None = None) -> TrainResult:
    train_cfg, runtime = config["train"], config["runtime"]
    if compiled is not None and compiled.enabled:
        if dist.is_main:
            print(compiled.reason, file=sys.stderr)
        net = training_forward(model, compiled)  # the model's own weights; evaluation stays dynamic
    else:
        net = paddle.DataParallel(model) if dist.world_size > 1 else model
    runner = StepRunner(net, criterion, optimizer, amp, train_cfg["accumulate"], runtime["seed"], dist.rank,
                        dist.world_size)
    label_info = label_space(train_set)
    result = TrainResult(folder.path, start)
    show = runtime["progress"] and dist.is_main
    scalars = loggers if loggers is not None else LoggerSet()
    images_per_step = train_cfg["batch_size"] * train_cfg["accumulate"] * dist.world_size

    def checkpoint(step: int) -> None:
        if not dist.is_main:
            return
        extra = {"amp_scaler": amp.state()} if amp.scaler is not None else {}
        state = dict(optimizer=optimizer, scheduler=scheduler, step=step, best_miou=best, **label_info,
                     **world_record(config, dist.world_size),
                     **skips.record(), **extra, **(balance.checkpoint_meta() if balance else {}))
        keep = runtime["keep_last"]
        if keep > 0:  # the numbered file first: a kill between the two leaves it the newest
            numbered = folder / step_checkpoint_name(step)
            save_checkpoint(numbered, model, config, **state)
            publish_copy(numbered, folder / LAST)
            folder.prune_step_checkpoints(keep)
        else:
            save_checkpoint(folder / LAST, model, config, **state)
        scalars.flush()

    model.train()
    progress = Progress(train_cfg["iters"], start, show)
    step, saved_step = start, start
    loader = train_loader(train_set, loader_config(config), start, dist.rank, dist.world_size,
                          **(balance.loader_options() if balance else {}))
    with stop_on_signals() as stop, watch_rank(dist.rank, dist.world_size, runtime.get("collective_timeout", 0.0)) as watch:
        try:
            for step, (waited, batch) in enumerate(watch.batches(timed(loader), start), start=start + 1):
                images, labels = batch
                skips.add(batch, dist.world_size)
                done = runner.run(step, images, labels, f"{folder / LAST} keeps step {saved_step}")
                lr = optimizer.get_lr()
                scheduler.step()
                result.losses.append(done.loss)
                result.steps = step
                progress.update(done.loss, lr, waited)
                if dist.is_main and (step % train_cfg["log_interval"] == 0 or step == train_cfg["iters"]):
                    times, terms = progress.interval_times(), done.terms
                    folder.append_log(TRAIN_LOG, {"step": step, "loss": done.loss, "terms": terms, "lr": lr,
                                                  **times, **skips.record()})
                    scalars.scalars(step, train_scalars(done.loss, lr, times, terms, images_per_step))
                evaluate_now = step == train_cfg["iters"] or (train_cfg["eval_interval"] and step % train_cfg["eval_interval"] == 0)
                if evaluate_now:
                    share_rank0_statistics(model, dist)
                    metrics = evaluate(model, watch.dataset(val_set, step), config["eval"]["batch_size"], show, dist,
                                       InferenceMode.from_config(config))
                    result.metrics = metrics
                    if dist.is_main:
                        progress.write(f"step {step}: val mIoU {100 * metrics.miou:.2f}")
                        folder.append_log(EVAL_LOG, {"step": step, **metrics.to_json()})
                        scalars.scalars(step, eval_scalars(metrics.to_json()))
                        if metrics.miou > best:
                            best = metrics.miou
                            save_weights(model, folder / BEST, config, step=step, miou=metrics.miou, **label_info)
                if evaluate_now or (train_cfg["save_interval"] and step % train_cfg["save_interval"] == 0):
                    checkpoint(step)
                    saved_step = step
                if _stop_agreed(stop.signum, dist):
                    if saved_step != step:
                        checkpoint(step)
                    signum = stop.signum or signal.SIGTERM  # another process received it
                    raise TrainingStopped(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
                                          f"saved in {folder / LAST}; continue with --resume", signum)
        finally:
            loader.close()
            progress.close()
    result.best_miou = best
    result.rank_digests = check_ranks_agree(model, dist) if dist.world_size > 1 else []
    if dist.is_main and result.metrics is not None:
        write_text_atomic(folder / METRICS, json.dumps(result.metrics.to_json(), indent=2))
        scalars.final_artifacts(folder / METRICS, result.metrics)
    return result


def _stop_agreed(signum: int | None, dist: DistEnv) -> bool:
    """True if any process was asked to stop: all of them then stop after the same step (one
    would otherwise wait for ever in the next step's gradient all-reduce)."""
    if dist.world_size <= 1:
        return signum is not None
    import paddle.distributed as pdist

    flag = paddle.to_tensor([0 if signum is None else 1], dtype="int32")
    pdist.all_reduce(flag, op=pdist.ReduceOp.MAX)
    return bool(flag.item())
