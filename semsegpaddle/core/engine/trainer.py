"""The training loop: SGD + poly LR, weighted CE, periodic evaluation, checkpoints that resume exactly."""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paddle
from tqdm import tqdm

from semsegpaddle.core.engine.atomic import write_text_atomic
from semsegpaddle.core.engine.checkpoint import label_space, restore_training_state, save_checkpoint, save_weights
from semsegpaddle.core.data.datasets import create_dataset, train_loader
from semsegpaddle.core.errors import SemsegError
from semsegpaddle.core.inference.evaluation import evaluate
from semsegpaddle.core.engine.interrupt import TrainingStopped, stop_on_signals
from semsegpaddle.core.model.losses import create_loss
from semsegpaddle.core.inference.metrics import Metrics
from semsegpaddle.core.model.assembly import create_model
from semsegpaddle.core.engine.run_folder import BEST, EVAL_LOG, LAST, METRICS, TRAIN_LOG, RunFolder
from semsegpaddle.core.engine.runtime import (DistEnv, choose_device, convert_batch_norm, init_distributed,
                                       quiet_paddle, seed_everything, set_threads)



@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    metrics: Metrics | None = None
    best_miou: float = float("nan")
    already_complete: bool = False  # a resume found the run finished: nothing was done


def setup_runtime(config: dict[str, Any]) -> tuple[DistEnv, str]:
    """Device, data-parallel environment, threads and seeds, from ``runtime``."""
    runtime = config["runtime"]
    quiet_paddle()
    device = choose_device(runtime["device"])
    paddle.set_device(device)
    dist = init_distributed()
    set_threads(runtime["threads"], dist.world_size)
    seed_everything(runtime["seed"])
    return dist, device


def build_optimizer(model: paddle.nn.Layer, train: dict[str, Any]) -> tuple[Any, Any]:
    """SGD with momentum and L2 decay (or AdamW), on a poly schedule with optional linear warm-up."""
    decay_steps = max(1, train["iters"] - train["warmup_iters"])
    scheduler: Any = paddle.optimizer.lr.PolynomialDecay(train["lr"], decay_steps, end_lr=0.0, power=train["power"])
    if train["warmup_iters"] > 0:
        scheduler = paddle.optimizer.lr.LinearWarmup(scheduler, train["warmup_iters"], 0.0, train["lr"])
    if train["optimizer"] == "adamw":
        optimizer = paddle.optimizer.AdamW(learning_rate=scheduler, beta1=train["momentum"],
                                           parameters=model.parameters(), weight_decay=train["weight_decay"])
    else:
        optimizer = paddle.optimizer.Momentum(
            learning_rate=scheduler, momentum=train["momentum"], parameters=model.parameters(),
            weight_decay=paddle.regularizer.L2Decay(train["weight_decay"]),
        )
    return optimizer, scheduler


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


def _check_folder(folder: RunFolder, resume: bool, overwrite: bool) -> None:
    folder.check_usable()
    if resume and overwrite:
        raise SemsegError("--resume and --overwrite exclude each other")
    if resume and not (folder / LAST).is_file():
        raise SemsegError(f"cannot resume: {folder / LAST} does not exist")
    if not resume and not overwrite and folder.holds_run():
        raise SemsegError(f"{folder.path} already holds a training run; continue it with --resume, replace it "
                          f"with --overwrite, or set runtime.output_dir to another folder")


def train(config: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train the model a validated config describes; evaluate and checkpoint into ``output_dir``.

    A fresh run refuses a folder that already holds a run unless ``overwrite`` is set, and a
    folder another process trains in. Nothing in the folder changes until the run is known to
    start: the model, data and (on resume) the checkpoint are checked first. SIGTERM or Ctrl-C
    stop after the current step with a checkpoint (:class:`TrainingStopped`).
    """
    folder = RunFolder(config["runtime"]["output_dir"])
    _check_folder(folder, resume, overwrite)
    dist, device = setup_runtime(config)
    train_set = create_dataset(config, config["dataset"]["train_split"])
    val_set = create_dataset(config, config["dataset"]["val_split"])
    model = create_model(config, train_set.num_classes)
    model = convert_batch_norm(model, device, dist.world_size)
    criterion = create_loss(config, model, train_set.ignore_index)
    optimizer, scheduler = build_optimizer(model, config["train"])
    with folder.locked() if dist.is_main else contextlib.nullcontext(folder):
        _check_folder(folder, resume, overwrite)  # again, now that no other process can write here
        start, best = 0, -1.0
        if resume:
            meta = restore_training_state(folder / LAST, model, optimizer, scheduler)
            start, best = int(meta["step"]), float(meta.get("best_miou", -1.0))
            if start >= config["train"]["iters"]:
                return TrainResult(folder.path, start, best_miou=best, already_complete=True)
        if dist.is_main:
            folder.sweep_temporaries()
            if overwrite:
                folder.clear()
            if resume:
                folder.truncate_logs(start)
            folder.write_config(config.to_yaml() if hasattr(config, "to_yaml") else json.dumps(config))
        return _train_loop(config, folder, dist, model, criterion, optimizer, scheduler, train_set, val_set, start, best)


def _train_loop(config: dict[str, Any], folder: RunFolder, dist: DistEnv, model: paddle.nn.Layer, criterion: Any, optimizer: Any,
                scheduler: Any, train_set: Any, val_set: Any, start: int, best: float) -> TrainResult:
    train_cfg, runtime = config["train"], config["runtime"]
    net = paddle.DataParallel(model) if dist.world_size > 1 else model
    label_info = label_space(train_set)
    result = TrainResult(folder.path, start)
    show = runtime["progress"] and dist.is_main

    def checkpoint(step: int) -> None:
        if dist.is_main:
            save_checkpoint(folder / LAST, model, config, optimizer=optimizer, scheduler=scheduler, step=step,
                            best_miou=best, **label_info)

    model.train()
    bar = tqdm(total=train_cfg["iters"], initial=start, desc="train", unit="it", disable=not show,
               dynamic_ncols=True)
    tic = time.perf_counter()
    step, saved_step = start, start
    loader = train_loader(train_set, config, start, dist.rank, dist.world_size)
    with stop_on_signals() as stop:
        try:
            for step, (images, labels) in enumerate(loader, start=start + 1):
                # dropout & co. draw from a generator seeded by (seed, step): a resumed run repeats them exactly
                paddle.seed((runtime["seed"] * 1_000_003 + step) * 64 + dist.rank)
                outputs = net(images)
                loss, terms = criterion(outputs, labels)
                loss_value = float(loss)
                if not math.isfinite(loss_value):
                    raise SemsegError(f"loss became {loss_value} at step {step}; lower train.lr or check the labels "
                                      f"({folder / LAST} keeps step {saved_step})")
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
                lr = optimizer.get_lr()
                scheduler.step()
                result.losses.append(loss_value)
                result.steps = step
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
                if dist.is_main and (step % train_cfg["log_interval"] == 0 or step == train_cfg["iters"]):
                    folder.append_log(TRAIN_LOG, {"step": step, "loss": loss_value, "terms": terms, "lr": lr,
                                                  "seconds": round(time.perf_counter() - tic, 3)})
                evaluate_now = step == train_cfg["iters"] or (train_cfg["eval_interval"] and step % train_cfg["eval_interval"] == 0)
                if evaluate_now:
                    share_rank0_statistics(model, dist)
                    metrics = evaluate(model, val_set, config["eval"]["batch_size"], show, dist)
                    result.metrics = metrics
                    if dist.is_main:
                        bar.write(f"step {step}: val mIoU {100 * metrics.miou:.2f}")
                        folder.append_log(EVAL_LOG, {"step": step, **metrics.to_json()})
                        if metrics.miou > best:
                            best = metrics.miou
                            save_weights(model, folder / BEST, config, step=step, miou=metrics.miou, **label_info)
                if evaluate_now or (train_cfg["save_interval"] and step % train_cfg["save_interval"] == 0):
                    checkpoint(step)
                    saved_step = step
                if stop.signum is not None:
                    if saved_step != step:
                        checkpoint(step)
                    raise TrainingStopped(f"stopped by {stop.name} after step {step}; checkpoint saved in "
                                          f"{folder / LAST}; continue with --resume", stop.signum)
        finally:
            loader.close()
            bar.close()
    result.best_miou = best
    if dist.is_main and result.metrics is not None:
        write_text_atomic(folder / METRICS, json.dumps(result.metrics.to_json(), indent=2))
    return result
