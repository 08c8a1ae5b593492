"""Checkpoints: model weights in safetensors (with the config in the metadata) and training state.

Every file is written atomically (temporary file + rename), so a crash never leaves a torn file
and never destroys the previous checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from semsegpaddle.core.atomic import atomic_path
from semsegpaddle.core.errors import SemsegError

FORMAT = "semsegpaddle-model"


def save_weights(model: paddle.nn.Layer, path: str | Path, config: dict[str, Any] | None = None,
                 **meta: Any) -> None:
    """Save the model's state dict as .safetensors; ``config`` and ``meta`` go into the metadata."""
    state = {k: np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    if config is not None:
        metadata["config"] = json.dumps(config)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file written by :func:`save_weights` (JSON values decoded)."""
    path = Path(path)
    if not path.is_file():
        raise SemsegError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:
        raise SemsegError(f"{path}: not a safetensors checkpoint ({exc})") from None
    return {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}


def load_weights(model: paddle.nn.Layer, path: str | Path) -> None:
    """Load a .safetensors model checkpoint strictly (every key present, every shape equal)."""
    from semsegpaddle.core.weights import load_into

    read_metadata(path)  # clear error for missing / non-safetensors files
    load_into(model, load_file(str(path)), strict=True, source=str(path))


def save_train_state(path: str | Path, step: int, optimizer: Any, scheduler: Any, extra: dict[str, Any]) -> None:
    """Save what resuming needs beyond the weights: step, optimizer and scheduler state."""
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "extra": json.dumps(extra)}
    with atomic_path(path) as tmp:
        paddle.save(state, str(tmp))


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_train_state`."""
    state = paddle.load(str(path))
    state["extra"] = json.loads(state.get("extra", "{}"))
    return state
