"""Resuming with another number of processes: the global batch and the schedule are kept.

A checkpoint records the job's process count and its global batch (``train.batch_size`` ×
``train.accumulate`` × processes). A resume with another process count sets the per-process
``train.batch_size`` to global batch / (accumulate × processes), so every step still draws the
same images (draws s·G … (s+1)·G − 1 for global batch G, shared out among the processes) with the
same learning rate; a global batch that does not divide is refused, naming the keys to change.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any

from semsegpaddle.core.common.errors import SemsegError


def global_batch(config: dict[str, Any], world_size: int) -> int:
    """Images per optimizer step over all processes."""
    train = config["train"]
    return int(train["batch_size"]) * int(train["accumulate"]) * world_size


def world_record(config: dict[str, Any], world_size: int) -> dict[str, int]:
    """What a checkpoint records about the job's size."""
    return {"world_size": world_size, "global_batch": global_batch(config, world_size)}


def keep_global_batch(config: dict[str, Any], meta: dict[str, Any], world_size: int) -> dict[str, Any]:
    """``config`` for resuming the checkpoint of ``meta`` with ``world_size`` processes.

    Unchanged when the process count is the checkpoint's (or it recorded none); otherwise a copy
    whose per-process ``train.batch_size`` keeps the checkpoint's global batch, with a warning.
    """
    saved_world, saved_batch = meta.get("world_size"), meta.get("global_batch")
    if saved_world is None or saved_batch is None or int(saved_world) == world_size:
        return config
    if global_batch(config, world_size) == saved_batch:
        return config
    accumulate = int(config["train"]["accumulate"])
    per_process, rest = divmod(int(saved_batch), accumulate * world_size)
    if rest or per_process < 1:
        raise SemsegError(
            f"the checkpoint was trained by {saved_world} processes with a global batch of {saved_batch} "
            f"(train.batch_size × train.accumulate × processes); {world_size} processes cannot keep it with "
            f"train.accumulate={accumulate}: change train.accumulate or the process count so that "
            f"{accumulate} × {world_size} divides {saved_batch}")
    adjusted = copy.deepcopy(config)
    adjusted["train"]["batch_size"] = per_process
    warnings.warn(f"resuming a run of {saved_world} processes with {world_size}: train.batch_size "
                  f"{config['train']['batch_size']} → {per_process} per process keeps the global batch of "
                  f"{saved_batch}", stacklevel=2)
    return adjusted
