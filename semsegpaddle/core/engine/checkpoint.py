"""Checkpoints: one safetensors file per checkpoint, holding everything a resume needs.

A training checkpoint (``model_last.safetensors``) holds the model's state dict, the optimizer's
accumulators (tensor names prefixed ``optimizer/``) and, in the metadata, the step, the scheduler
state, the config and the label space. Being one file written atomically (temporary file, fsync,
rename), it is always a consistent unit: a kill at any moment leaves either the previous
checkpoint or the new one, never weights of one step beside optimizer state of another.

Weights-only files (``model_best.safetensors``) have the same layout without ``optimizer/``
tensors. Non-finite weights are never written and never loaded.

The metadata is one JSON document (sorted keys) under a single key, so identical runs write
byte-identical files (safetensors stores several metadata keys in a random order).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from semsegpaddle.core.common.atomic import atomic_path
from semsegpaddle.core.common.errors import SemsegError

FORMAT = "semsegpaddle-model"
META_KEY = "semsegpaddle"
OPTIMIZER_PREFIX = "optimizer/"


class NonFiniteWeightsError(SemsegError):
    """Weights holding NaN or Inf: never written, never loaded."""


def _non_finite(state: dict[str, np.ndarray]) -> list[str]:
    return [k for k, v in state.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]


def _model_arrays(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: paddle.nn.Layer, config: dict[str, Any] | None = None, *,
                    optimizer: Any = None, scheduler: Any = None, **meta: Any) -> None:
    """Write the model (and, if given, optimizer and scheduler state) to one safetensors file.

    ``config`` and ``meta`` (JSON-serialisable) go into the metadata. Raises
    :class:`NonFiniteWeightsError` and writes nothing if a weight is NaN or Inf.
    """
    state = _model_arrays(model)
    bad = _non_finite(state)
    if bad:
        raise NonFiniteWeightsError(
            f"weights became NaN/Inf in {len(bad)} tensors (e.g. {bad[0]}) at step {meta.get('step', '?')}; "
            f"not saved, so {Path(path).name} keeps the last finite weights; lower train.lr")
    document: dict[str, Any] = {"format": FORMAT, **meta}
    if config is not None:
        document["config"] = config
    if optimizer is not None:
        accumulators, scheduler_in_optimizer = portable_optimizer_state(optimizer, model)
        state.update({OPTIMIZER_PREFIX + k: v for k, v in accumulators.items()})
        document["optimizer_extra"] = scheduler_in_optimizer
        document["optimizer_type"] = type(optimizer).__name__
        document["trainable"] = _trainable(model)
    if scheduler is not None:
        document["scheduler"] = scheduler.state_dict()
    metadata = {META_KEY: json.dumps(document, sort_keys=True, default=_json_default)}
    with atomic_path(path, size=_file_size(state, metadata)) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _file_size(state: dict[str, np.ndarray], metadata: dict[str, str]) -> int:
    """The size of the safetensors file of ``state`` and ``metadata``: the 8-byte header length,
    the JSON header (one entry per tensor, padded to 8 bytes) and the tensors' bytes."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in sorted(state):
        array = state[name]
        header[name] = {"dtype": _SAFETENSORS_DTYPES.get(array.dtype.str[1:], "F32"), "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":"))
    return 8 + len(text.encode()) + (-len(text.encode())) % 8 + offset


_SAFETENSORS_DTYPES = {"f4": "F32", "f8": "F64", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
                       "u1": "U8", "b1": "BOOL", "u2": "U16", "u4": "U32", "u8": "U64"}


def publish_copy(source: str | Path, destination: str | Path) -> None:
    """Make ``destination`` an atomic, fsynced copy of the finished file ``source``.

    A hard link where the file system allows it (no bytes copied: checkpoint files are never
    changed in place, only replaced), else a byte copy.
    """
    with atomic_path(destination) as tmp:
        try:
            tmp.unlink()
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def training_step(path: str | Path) -> int:
    """The step of a complete training checkpoint (readable to its last byte, with training
    state); a one-line SemsegError otherwise."""
    meta = read_metadata(path)  # safetensors refuses a file shorter than its header announces
    if "scheduler" not in meta or "step" not in meta:
        raise SemsegError(f"{path}: holds weights only, no training state to resume from")
    return int(meta["step"])


def newest_complete_checkpoint(paths: list[Path]) -> Path:
    """Of ``paths`` (the last checkpoint first), the complete training checkpoint of the highest
    step; a damaged one is passed over with a warning. If none is complete, the first path's
    error is raised."""
    found: list[tuple[int, int, Path]] = []
    errors: list[SemsegError] = []
    for order, path in enumerate(paths):
        try:
            found.append((training_step(path), -order, path))
        except SemsegError as exc:
            errors.append(exc)
    if not found:
        raise errors[0] if errors else SemsegError("no checkpoint to resume from")
    for exc in errors:
        warnings.warn(f"passed over an unusable checkpoint: {exc}", stacklevel=2)
    return max(found)[2]


def save_weights(model: paddle.nn.Layer, path: str | Path, config: dict[str, Any] | None = None,
                 **meta: Any) -> None:
    """Save the model's weights only (no training state); ``config`` and ``meta`` go into the metadata."""
    save_checkpoint(path, model, config, **meta)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, paddle.Tensor):
        return value.numpy().tolist()
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def label_space(dataset: Any) -> dict[str, Any]:
    """What a checkpoint records of its dataset, so prediction and export need no dataset on disk."""
    return {"num_classes": int(dataset.num_classes),
            "class_names": list(dataset.class_names) or [str(i) for i in range(dataset.num_classes)],
            "palette": np.asarray(dataset.palette).astype(int).tolist()}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint written by :func:`save_checkpoint` (JSON values decoded).

    Files of the earlier layout (one JSON value per metadata key) are read as well.
    """
    path = Path(path)
    if not path.is_file():
        raise SemsegError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
        if META_KEY in raw:
            return json.loads(raw[META_KEY])
        return {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}
    except Exception as exc:
        raise SemsegError(f"{path}: not a semsegpaddle safetensors checkpoint ({exc})") from None


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint, with a one-line error for unreadable files."""
    try:
        return load_file(str(path))
    except Exception as exc:
        raise SemsegError(f"{path}: cannot read the checkpoint's tensors ({exc})") from None


def model_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The model's tensors of a checkpoint (training state left out), refusing NaN/Inf weights."""
    read_metadata(path)  # clear error for missing / non-safetensors files
    state = {k: v for k, v in read_tensors(path).items() if not k.startswith(OPTIMIZER_PREFIX)}
    bad = _non_finite(state)
    if bad:
        raise NonFiniteWeightsError(f"{path}: {len(bad)} tensors hold NaN/Inf (e.g. {bad[0]}); "
                                    f"these weights cannot be used")
    return state


def load_weights(model: paddle.nn.Layer, path: str | Path) -> None:
    """Load a checkpoint's model weights strictly (every key present, every shape equal)."""
    from semsegpaddle.core.model.weights import load_into

    load_into(model, model_tensors(path), strict=True, source=str(path))


def _rename_accumulators(state: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Replace parameter-name prefixes of optimizer accumulator keys (longest match first)."""
    ordered = sorted(names, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        match = next((n for n in ordered if key.startswith(n + "_")), None)
        out[names[match] + key[len(match):] if match else key] = value
    return out


def portable_optimizer_state(optimizer: Any, model: paddle.nn.Layer) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The optimizer's accumulators keyed by structured parameter names, and its non-tensor entries.

    Paddle keys accumulators by auto-generated names (``conv2d_22.w_0``) that depend on how many
    layers the process built before; structured names (``backbone.conv1.weight_velocity_0``)
    survive a restart or a second model.
    """
    renamed = _rename_accumulators(optimizer.state_dict(), {p.name: n for n, p in model.named_parameters()})
    tensors = {k: np.ascontiguousarray(v.numpy()) for k, v in renamed.items() if isinstance(v, paddle.Tensor)}
    others = {k: v for k, v in renamed.items() if not isinstance(v, paddle.Tensor)}
    return tensors, others


def restore_training_state(path: str | Path, model: paddle.nn.Layer, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load a training checkpoint into model, optimizer and scheduler; return its metadata.

    Everything is checked before anything is changed: a checkpoint without training state, or
    whose optimizer state does not fit this optimizer (a changed ``train.optimizer``, frozen
    stages, model), raises a one-line error and leaves the objects as they were.
    """
    from semsegpaddle.core.model.weights import load_into

    meta = read_metadata(path)
    if "scheduler" not in meta or "step" not in meta:
        raise SemsegError(f"{path}: holds weights only, no training state to resume from")
    hint = f"resume with the run's own settings ({Path(path).parent / 'config.yaml'}) or start a new run"
    kind, trainable = type(optimizer).__name__, _trainable(model)
    if meta.get("optimizer_type") != kind:
        raise SemsegError(f"{path}: was trained with optimizer {meta.get('optimizer_type')}, this run builds {kind}; {hint}")
    if meta.get("trainable") != trainable:
        raise SemsegError(f"{path}: its trainable parameters differ from this run's "
                          f"({len(meta.get('trainable', []))} vs {len(trainable)}: frozen stages or model changed); {hint}")
    tensors = read_tensors(path)
    saved = {k[len(OPTIMIZER_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
    load_into(model, model_tensors(path), strict=True, source=str(path))
    restored: dict[str, Any] = {k: paddle.to_tensor(v) for k, v in
                                _rename_accumulators(saved, {n: p.name for n, p in model.named_parameters()}).items()}
    restored.update(meta.get("optimizer_extra", {}))
    try:
        with warnings.catch_warnings():
            # LinearWarmup nests its inner schedule's state, which Paddle then calls "unused values"
            warnings.filterwarnings("ignore", message="There are some unused values in state_dict")
            optimizer.set_state_dict(restored)
            scheduler.set_state_dict(meta["scheduler"])
    except Exception as exc:  # Paddle asserts on mismatches the checks above did not foresee
        raise SemsegError(f"{path}: cannot restore the optimizer state ({type(exc).__name__}: {exc}); {hint}") from None
    return meta


def _trainable(model: paddle.nn.Layer) -> list[str]:
    return [n for n, p in model.named_parameters() if not p.stop_gradient]
