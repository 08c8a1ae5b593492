"""The training loop: SGD + poly LR, weighted CE, periodic evaluation, atomic checkpoints."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paddle
from tqdm import tqdm

from semsegpaddle.core.atomic import write_text_atomic
from semsegpaddle.core.checkpoint import (label_space, load_train_state, load_weights, restore_optimizer_state,
                                          save_train_state, save_weights)
from semsegpaddle.core.data import create_dataset, train_loader
from semsegpaddle.core.errors import SemsegError
from semsegpaddle.core.evaluation import evaluate
from semsegpaddle.core.losses import weighted_loss
from semsegpaddle.core.metrics import Metrics
from semsegpaddle.core.model import create_model
from semsegpaddle.core.runtime import (DistEnv, choose_device, convert_batch_norm, init_distributed,
                                       quiet_paddle, seed_everything, set_threads)

LAST, BEST, STATE = "model_last.safetensors", "model_best.safetensors", "train_state.pdstate"


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    metrics: Metrics | None = None
    best_miou: float = float("nan")


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


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def train(config: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train the model a validated config describes; evaluate and checkpoint into ``output_dir``.

    A fresh run refuses a folder that already holds checkpoints unless ``overwrite`` is set, so
    an earlier run is never replaced by accident.
    """
    train_cfg, runtime = config["train"], config["runtime"]
    out = Path(runtime["output_dir"])
    if not resume and not overwrite and any((out / name).exists() for name in (LAST, BEST, STATE)):
        raise SemsegError(f"{out} already holds a training run; continue it with --resume, replace it with "
                          f"--overwrite, or set runtime.output_dir to another folder")
    dist, device = setup_runtime(config)
    train_set = create_dataset(config, config["dataset"]["train_split"])
    val_set = create_dataset(config, config["dataset"]["val_split"])
    model = create_model(config, train_set.num_classes)
    model = convert_batch_norm(model, device, dist.world_size)
    optimizer, scheduler = build_optimizer(model, train_cfg)

    start, best = 0, -1.0
    if resume:
        if not (out / STATE).is_file():
            raise SemsegError(f"cannot resume: {out / STATE} does not exist")
        load_weights(model, out / LAST)
        state = load_train_state(out / STATE)
        restore_optimizer_state(optimizer, model, state["optimizer"])
        scheduler.set_state_dict(state["scheduler"])
        start, best = state["step"], state["extra"].get("best_miou", -1.0)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", config.to_yaml() if hasattr(config, "to_yaml") else json.dumps(config))
    net = paddle.DataParallel(model) if dist.world_size > 1 else model

    label_info = label_space(train_set)
    result = TrainResult(out, start)
    show = runtime["progress"] and dist.is_main
    loader = train_loader(train_set, config, start, dist.rank, dist.world_size)
    model.train()
    bar = tqdm(total=train_cfg["iters"], initial=start, desc="train", unit="it", disable=not show,
               dynamic_ncols=True)
    tic = time.perf_counter()
    for step, (images, labels) in enumerate(loader, start=start + 1):
        # dropout & co. draw from a generator seeded by (seed, step): a resumed run repeats them exactly
        paddle.seed((runtime["seed"] * 1_000_003 + step) * 64 + dist.rank)
        outputs = net(images)
        loss, terms = weighted_loss(outputs, labels, model.loss_weights, train_set.ignore_index)
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            raise SemsegError(f"loss became {loss_value} at step {step}; lower train.lr or check the labels")
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
            _append_log(out / "train_log.jsonl", {"step": step, "loss": loss_value, "terms": terms, "lr": lr,
                                                  "seconds": round(time.perf_counter() - tic, 3)})
        evaluate_now = step == train_cfg["iters"] or (train_cfg["eval_interval"] and step % train_cfg["eval_interval"] == 0)
        if evaluate_now:
            metrics = evaluate(model, val_set, config["eval"]["batch_size"], show, dist)
            result.metrics = metrics
            if dist.is_main:
                bar.write(f"step {step}: val mIoU {100 * metrics.miou:.2f}")
                _append_log(out / "eval_log.jsonl", {"step": step, **metrics.to_json()})
                if metrics.miou > best:
                    best = metrics.miou
                    save_weights(model, out / BEST, config, step=step, miou=metrics.miou, **label_info)
        save_now = evaluate_now or (train_cfg["save_interval"] and step % train_cfg["save_interval"] == 0)
        if save_now and dist.is_main:
            save_weights(model, out / LAST, config, step=step, **label_info)
            save_train_state(out / STATE, step, optimizer, scheduler, model, {"best_miou": best})
    bar.close()
    result.best_miou = best
    if dist.is_main and result.metrics is not None:
        write_text_atomic(out / "metrics.json", json.dumps(result.metrics.to_json(), indent=2))
    return result
