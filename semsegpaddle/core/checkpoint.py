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


def label_space(dataset: Any) -> dict[str, Any]:
    """What a checkpoint records of its dataset, so prediction and export need no dataset on disk."""
    return {"num_classes": int(dataset.num_classes),
            "class_names": list(dataset.class_names) or [str(i) for i in range(dataset.num_classes)],
            "palette": np.asarray(dataset.palette).astype(int).tolist()}


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


def _rename_accumulators(state: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Replace parameter-name prefixes of optimizer accumulator keys (longest match first)."""
    ordered = sorted(names, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        match = next((n for n in ordered if key.startswith(n + "_")), None)
        out[names[match] + key[len(match):] if match else key] = value
    return out


def portable_optimizer_state(optimizer: Any, model: paddle.nn.Layer) -> dict[str, Any]:
    """The optimizer state keyed by structured parameter names (``backbone.conv1.weight_velocity_0``).

    Paddle keys accumulators by auto-generated names (``conv2d_22.w_0``) that depend on how many
    layers the process built before; structured names survive a restart or a second model.
    """
    return _rename_accumulators(optimizer.state_dict(), {p.name: n for n, p in model.named_parameters()})


def restore_optimizer_state(optimizer: Any, model: paddle.nn.Layer, state: dict[str, Any]) -> None:
    """Load a state written by :func:`portable_optimizer_state` into ``optimizer``."""
    optimizer.set_state_dict(_rename_accumulators(state, {n: p.name for n, p in model.named_parameters()}))


def save_train_state(path: str | Path, step: int, optimizer: Any, scheduler: Any, model: paddle.nn.Layer,
                     extra: dict[str, Any]) -> None:
    """Save what resuming needs beyond the weights: step, optimizer and scheduler state."""
    state = {"step": step, "optimizer": portable_optimizer_state(optimizer, model),
             "scheduler": scheduler.state_dict(), "extra": json.dumps(extra)}
    with atomic_path(path) as tmp:
        paddle.save(state, str(tmp))


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_train_state`."""
    state = paddle.load(str(path))
    state["extra"] = json.loads(state.get("extra", "{}"))
    return state
