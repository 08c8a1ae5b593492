"""Mixed precision (``train.amp``) through Paddle's AMP at level O1.

O1 runs the ops on Paddle's white list (convolutions, matmuls) in the low-precision type and keeps
the rest (losses, normalisation, softmax) in float32; weights stay float32. ``fp16`` also scales
the loss (dynamic loss scaling: steps whose scaled gradients overflow are skipped and the scale
shrinks). ``bf16`` needs no scaling.

Paddle 3.3's autocast works on CUDA, XPU and custom devices only: on CPU it is a silent no-op,
and the CPU conv2d kernel has no bfloat16 version. So whether AMP can run is probed, not assumed
(``paddle.amp.is_bfloat16_supported()`` answers True on a CPU where autocast does nothing), and a
mode that cannot run is a one-line error before training starts.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import paddle

from semsegpaddle.core.common.errors import ConfigError

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def amp_mode(value: Any) -> str:
    """``train.amp`` normalised: YAML reads a bare ``off`` as false."""
    return "off" if value in (False, None, "off") else str(value)


@functools.lru_cache(maxsize=None)
def autocast_works(device: str, dtype: str) -> bool:
    """True if ``paddle.amp.auto_cast(dtype=dtype)`` really runs a convolution in ``dtype`` on ``device``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "amp_guard can only be enabled on CUDAPlace ..." on CPU
            # plain tensors, no layer: the probe draws no random numbers and names no parameters
            with paddle.amp.auto_cast(enable=True, dtype=dtype, level="O1"):
                out = paddle.nn.functional.conv2d(paddle.ones([1, 1, 2, 2]), paddle.ones([1, 1, 1, 1]))
        return out.dtype == getattr(paddle, dtype)
    except Exception:  # a missing kernel: not supported
        return False


def check_amp(mode: str, device: str) -> None:
    """Raise a one-line ConfigError if ``train.amp`` cannot run on ``device``."""
    if mode == "off":
        return
    if mode == "fp16" and device != "gpu":
        raise ConfigError(f"train.amp=fp16 needs a GPU (float16 training runs on CUDA only); this run is on "
                          f"{device}: set train.amp=off")
    if not autocast_works(device, DTYPES[mode]):
        why = ("Paddle's autocast does nothing on CPU and its CPU conv2d has no bfloat16 kernel"
               if device == "cpu" else "this GPU or Paddle build runs no convolution in that type")
        raise ConfigError(f"train.amp={mode}: Paddle {paddle.__version__} cannot train in {DTYPES[mode]} on "
                          f"{device} ({why}); set train.amp=off")


@dataclass
class AmpPlan:
    """How a step runs: the autocast context, and the loss scaler for fp16 (None otherwise)."""

    mode: str = "off"
    scaler: Any = None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's precision context (a no-op when AMP is off)."""
        if self.mode == "off":
            yield
            return
        with paddle.amp.auto_cast(enable=True, dtype=DTYPES[self.mode], level="O1"):
            yield

    def backward(self, loss: paddle.Tensor) -> None:
        """Backpropagate ``loss`` (scaled first under fp16)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: Any) -> None:
        """Apply the accumulated gradients (unscaled, overflow-checked under fp16) and clear them."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.clear_grad()

    def state(self) -> dict[str, Any] | None:
        """The loss scaler's state as JSON-able values (None without a scaler)."""
        if self.scaler is None:
            return None
        state = dict(self.scaler.state_dict())
        if "scale" in state:
            state["scale"] = [float(x) for x in paddle.to_tensor(state["scale"]).numpy().reshape(-1)]
        return state

    def restore(self, state: dict[str, Any] | None) -> None:
        """Load a state written by :meth:`state` (nothing to do without a scaler or a state)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_amp_plan(value: Any, device: str) -> AmpPlan:
    """The :class:`AmpPlan` for ``train.amp`` on ``device``, after :func:`check_amp`."""
    mode = amp_mode(value)
    check_amp(mode, device)
    scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15) if mode == "fp16" else None
    return AmpPlan(mode, scaler)
