"""Exceptions that carry a one-line, user-facing message (the CLI prints them without traceback)."""
from __future__ import annotations

import difflib
from typing import Iterable


class SemsegError(Exception):
    """Base class of errors caused by bad input: the message alone tells the user what to fix."""


class UnknownComponentError(SemsegError, KeyError):
    """A backbone, decoder or dataset name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class DuplicateComponentError(SemsegError):
    """A plugin registered a name another plugin registered first (the first one keeps it)."""


class ConfigError(SemsegError):
    """A config file, key or value that is not valid."""


class DataError(SemsegError):
    """A dataset file or sample that is missing or malformed."""


#: names other frameworks (mmseg, PaddleSeg, detectron2, timm, HF) use for our keys; tried before
#: fuzzy matching, which cannot see that ``learning_rate`` means ``lr``
SYNONYMS: dict[str, str] = {
    "learning_rate": "lr", "base_lr": "lr", "lr0": "lr", "initial_lr": "lr",
    "max_iters": "iters", "total_iters": "iters", "max_iter": "iters", "num_iters": "iters",
    "iterations": "iters", "max_steps": "iters", "total_steps": "iters", "steps": "iters",
    "batch_size_per_gpu": "batch_size", "samples_per_gpu": "batch_size", "imgs_per_gpu": "batch_size",
    "ims_per_batch": "batch_size", "per_device_train_batch_size": "batch_size", "batch": "batch_size",
    "workers_per_gpu": "num_workers", "workers": "num_workers",
    "warmup_steps": "warmup_iters", "warmup_iter": "warmup_iters", "warmup": "warmup_iters",
    "wd": "weight_decay", "decay": "weight_decay",
    "work_dir": "output_dir", "save_dir": "output_dir", "out_dir": "output_dir", "output": "output_dir",
    "random_seed": "seed", "manual_seed": "seed",
    "val_interval": "eval_interval", "eval_every": "eval_interval",
    "checkpoint_interval": "save_interval", "save_every": "save_interval", "log_every": "log_interval",
    "crop": "crop_size", "optim": "optimizer", "opt": "optimizer",
    "num_threads": "threads", "pretrained_weights": "pretrained", "init_weights": "pretrained",
}


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate ``word`` is a known synonym of, else the closest one (difflib ratio ≥ 0.5)."""
    candidates = list(candidates)
    synonym = SYNONYMS.get(word.lower()) if isinstance(word, str) else None
    if synonym in candidates:
        return synonym
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for error messages, or '' when nothing is close."""
    match = closest(word, candidates)
    return f" (did you mean '{match}'?)" if match else ""
