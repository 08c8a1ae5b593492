"""``train.compile``: the training forward pass as one static program.

With ``on`` the model's forward is traced once by ``paddle.jit.to_static`` (full graph, Paddle's
PIR executor) and every training step runs that program; the backward pass and the optimizer
are unchanged. The weights are the model's own (nothing is copied), so checkpoints, evaluation
(which keeps the dynamic forward: its image sizes vary) and resume are as without compiling, and
with the same seeds a compiled step gives bitwise the same loss and weights as a dynamic one (the
tests check it). ``auto`` compiles where it was measured to win (:func:`plan_compile`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import paddle

from semsegpaddle.core.common.errors import ConfigError

MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class CompilePlan:
    """Whether the training forward is compiled, and why (printed once at start)."""

    enabled: bool
    reason: str


def plan_compile(mode: str, *, world_size: int, amp: str, device: str) -> CompilePlan:
    """The plan for ``train.compile`` = ``mode`` in this run.

    ``on`` is refused (one line naming the key) with data parallel and with mixed precision,
    which the compiled path does not cover. ``auto`` compiles only where the compiled step was
    measured to win, and on CPU it does not: Paddle's PIR executor runs the program without
    oneDNN (its oneDNN instructions reject the program's attributes) and CPU wheels have no CINN,
    so the compiled step ran at 0.85× the dynamic one (benchmarks/README.md, "Compiled training
    step"); no GPU was measured. So ``auto`` stays dynamic, saying why.
    """
    if mode not in MODES:
        raise ConfigError(f"train.compile: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return CompilePlan(False, "train.compile is off")
    blockers = []
    if world_size > 1:
        blockers.append(f"{world_size} processes (data parallel)")
    if amp not in ("off", False):
        blockers.append(f"train.amp={amp}")
    if mode == "on" and blockers:
        raise ConfigError(f"train.compile=on: the compiled training step runs single-process fp32 only, this run "
                          f"has {' and '.join(blockers)}; set train.compile=off (or auto)")
    if mode == "auto":
        why = " and ".join(blockers) if blockers else (
            "measured slower than the dynamic step on CPU" if device == "cpu" else "not measured on GPU")
        return CompilePlan(False, f"train.compile=auto: dynamic step ({why})")
    return CompilePlan(True, "train.compile=on: the training forward runs as one static program")


class TrainingForward(paddle.nn.Layer):
    """The model's forward for training steps; compiled when wrapped by :func:`training_forward`."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: paddle.Tensor) -> Any:
        """The model's training outputs (main logits, then auxiliary ones)."""
        return self.model(images)


def training_forward(model: paddle.nn.Layer, plan: CompilePlan) -> paddle.nn.Layer:
    """What a training step calls: ``model`` itself, or a compiled forward sharing its weights."""
    if not plan.enabled:
        return model
    return paddle.jit.to_static(TrainingForward(model), full_graph=True)
