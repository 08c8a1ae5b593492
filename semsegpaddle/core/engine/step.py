"""One optimisation step: micro-batches (gradient accumulation), mixed precision, data parallel.

A step's batch of ``batch_size × accumulate`` images is split into ``accumulate`` micro-batches;
each one's loss, divided by ``accumulate``, is backpropagated, and the summed gradients make one
optimizer step. So the step equals one over the whole batch whenever the loss of the whole batch
is the mean of its micro-batches' losses (pixel-mean losses over micro-batches with the same
number of labelled pixels; BatchNorm statistics aside). In data parallel the gradients are
averaged across processes once per step, at the last micro-batch.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import paddle

from semsegpaddle.core.engine.amp import AmpPlan
from semsegpaddle.core.common.errors import SemsegError

#: offset between the random seeds of a step's micro-batches (rank and step live in the low bits)
MICRO_SEED_STRIDE = 2**40


def step_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """The seed of dropout & co. at (step, rank, micro-batch): a resumed run repeats them exactly."""
    return (seed * 1_000_003 + step) * 64 + rank + micro * MICRO_SEED_STRIDE


@dataclass
class StepResult:
    """The mean loss of a step over its micro-batches, and each output's loss term per micro-batch
    (tensors: read by :attr:`terms` only when logged, not at every step)."""

    loss: float
    micro_terms: list[list[paddle.Tensor]]

    @property
    def terms(self) -> list[float]:
        """Each output's loss term, averaged over the micro-batches."""
        sums = [sum(float(t) for t in column) for column in zip(*self.micro_terms)]
        return [value / len(self.micro_terms) for value in sums]


class StepRunner:
    """Runs forward, backward and the optimizer update of one step."""

    def __init__(self, net: paddle.nn.Layer, criterion: Callable[..., Any], optimizer: Any, amp: AmpPlan,
                 accumulate: int, seed: int, rank: int, world_size: int) -> None:
        self.net, self.criterion, self.optimizer, self.amp = net, criterion, optimizer, amp
        self.accumulate, self.seed, self.rank, self.world_size = accumulate, seed, rank, world_size

    def micro_batches(self, images: paddle.Tensor, labels: paddle.Tensor) -> list[tuple[paddle.Tensor, paddle.Tensor]]:
        """The ``accumulate`` equal slices of a step's batch, in order."""
        if self.accumulate == 1:
            return [(images, labels)]
        if images.shape[0] % self.accumulate:
            raise SemsegError(f"a batch of {images.shape[0]} images cannot be split into train.accumulate="
                              f"{self.accumulate} equal micro-batches")
        return list(zip(paddle.split(images, self.accumulate), paddle.split(labels, self.accumulate)))

    def _sync_context(self, last: bool) -> Any:
        # gradients are all-reduced once per step: not after the micro-batches before the last
        if self.world_size > 1 and not last:
            return self.net.no_sync()
        return contextlib.nullcontext()

    def run(self, step: int, images: paddle.Tensor, labels: paddle.Tensor, describe_checkpoint: str) -> StepResult:
        """Train on one step's batch; a non-finite loss raises before the weights change."""
        parts = self.micro_batches(images, labels)
        total: paddle.Tensor | None = None
        terms: list[list[paddle.Tensor]] = []
        for micro, (x, y) in enumerate(parts):
            paddle.seed(step_seed(self.seed, step, self.rank, micro))
            with self._sync_context(micro == len(parts) - 1):
                with self.amp.autocast():
                    outputs = self.net(x)
                    loss, micro_terms = self.criterion(outputs, y)
                self.amp.backward(loss / len(parts) if len(parts) > 1 else loss)
            total = loss.detach() if total is None else total + loss.detach()
            terms.append(list(micro_terms))
        # one host sync per step (the NaN check needs the value); the terms are read when logged
        loss_value = float(total) / len(parts)
        if not math.isfinite(loss_value):
            self.optimizer.clear_grad()
            raise SemsegError(f"loss became {loss_value} at step {step}; lower train.lr or check the labels "
                              f"({describe_checkpoint})")
        self.amp.step(self.optimizer)
        return StepResult(loss_value, terms)
