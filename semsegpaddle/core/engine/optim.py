"""Optimizer, learning-rate schedule and parameter groups from the ``train`` section.

- ``optimizer``: SGD with momentum (optionally Nesterov) and L2 decay, or AdamW.
- ``schedule``: poly, cosine or step, after an optional linear warm-up from 0 to ``lr``.
- Parameter groups: the backbone's learning rate is ``lr × backbone_lr_mult``; with
  ``decay_norm_bias: false`` biases and normalisation weights (every 1-D parameter) get no decay.
- ``clip_grad_norm``: gradients clipped to a global L2 norm (after the data-parallel average, and
  after AMP's unscaling).

With the defaults (one group, no clipping) the optimizer is built exactly as before these options
existed, so earlier runs resume bitwise.
"""
from __future__ import annotations

from typing import Any

import paddle

from semsegpaddle.core.common.errors import ConfigError

BACKBONE_PREFIX = "backbone."


def _fail(config: dict[str, Any], key: str, message: str) -> None:
    source = config.source_of(f"train.{key}") if hasattr(config, "source_of") else "config"
    raise ConfigError(f"{source}: 'train.{key}' {message}")


def build_schedule(config: dict[str, Any]) -> paddle.optimizer.lr.LRScheduler:
    """The learning-rate schedule of ``config['train']``: warm-up, then poly, cosine or step.

    The scheduler is stepped once per optimisation step; step ``s`` (counted from 1) uses the
    rate of the scheduler's epoch ``s - 1``.
    """
    train = config["train"]
    lr, warmup, iters = train["lr"], train["warmup_iters"], train["iters"]
    after = max(1, iters - warmup)
    kind = train["schedule"]
    if kind == "poly":
        scheduler: Any = paddle.optimizer.lr.PolynomialDecay(lr, after, end_lr=train["end_lr"], power=train["power"])
    elif kind == "cosine":
        scheduler = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=after, eta_min=train["end_lr"])
    elif kind == "step":
        steps = train["lr_steps"]
        if not steps:
            _fail(config, "lr_steps", "is empty; the step schedule needs the steps at which the lr drops, "
                                      "e.g. train.lr_steps=[30000,40000]")
        if steps[0] <= warmup or steps[-1] >= iters:
            _fail(config, "lr_steps", f"expects steps between train.warmup_iters ({warmup}) and train.iters "
                                      f"({iters}), exclusive, got {steps}")
        # the warm-up wrapper counts the inner schedule's epochs from the warm-up's end
        scheduler = paddle.optimizer.lr.MultiStepDecay(lr, [s - warmup for s in steps], gamma=train["lr_gamma"])
    else:  # the schema admits no other value; a programming error if reached
        raise ValueError(f"unknown schedule {kind!r}")
    if warmup > 0:
        scheduler = paddle.optimizer.lr.LinearWarmup(scheduler, warmup, 0.0, lr)
    return scheduler


def parameter_groups(model: paddle.nn.Layer, train: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Paddle parameter groups for ``backbone_lr_mult`` and ``decay_norm_bias``; None if one group does.

    Each group carries ``learning_rate`` (a factor on the schedule's rate) and ``weight_decay``.
    Groups are ordered (backbone before the rest, decayed before not decayed) and empty ones left out.
    """
    mult, decay_all = float(train["backbone_lr_mult"]), bool(train["decay_norm_bias"])
    if mult == 1.0 and decay_all:
        return None
    decay = float(train["weight_decay"])
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        in_backbone = mult != 1.0 and name.startswith(BACKBONE_PREFIX)
        decayed = decay_all or len(param.shape) > 1
        groups.setdefault((in_backbone, decayed), []).append(param)
    order = [(True, True), (True, False), (False, True), (False, False)]
    return [{"params": groups[key], "learning_rate": mult if key[0] else 1.0,
             "weight_decay": decay if key[1] else 0.0} for key in order if key in groups]


def build_optimizer(model: paddle.nn.Layer, config: dict[str, Any]) -> tuple[Any, Any]:
    """(optimizer, scheduler) for ``model`` from ``config['train']`` (or from a ``train`` section alone)."""
    if "train" not in config:
        from semsegpaddle.core.config.schema import schema_defaults

        config = {"train": {**schema_defaults()["train"], **config}}
    train = config["train"]
    scheduler = build_schedule(config)
    groups = parameter_groups(model, train)
    parameters: Any = groups if groups is not None else model.parameters()
    clip = paddle.nn.ClipGradByGlobalNorm(train["clip_grad_norm"]) if train["clip_grad_norm"] > 0 else None
    if train["optimizer"] == "adamw":
        optimizer = paddle.optimizer.AdamW(learning_rate=scheduler, beta1=train["momentum"], parameters=parameters,
                                           weight_decay=train["weight_decay"], grad_clip=clip)
    else:
        if train["nesterov"] and train["momentum"] == 0:
            _fail(config, "nesterov", "needs train.momentum > 0")
        optimizer = paddle.optimizer.Momentum(
            learning_rate=scheduler, momentum=train["momentum"], parameters=parameters,
            use_nesterov=train["nesterov"], weight_decay=paddle.regularizer.L2Decay(train["weight_decay"]),
            grad_clip=clip,
        )
    return optimizer, scheduler


def group_learning_rates(optimizer: Any) -> list[float]:
    """The learning rate each parameter group uses now (schedule × group factor)."""
    base = optimizer.get_lr()
    groups = getattr(optimizer, "_param_groups", None) or []
    if not groups or not isinstance(groups[0], dict):
        return [base]
    return [base * float(group.get("learning_rate", 1.0)) for group in groups]
