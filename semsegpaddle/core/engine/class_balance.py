"""Class balance in a training run: losses' ``class_weights: auto`` and ``train.sampler: rare_class``.

Both come from one pass over the training split's labels (:mod:`semsegpaddle.core.data.class_stats`,
cached under ``train.cache_dir`` when set, else in the run folder), made before the run starts.
A loss section with ``class_weights: auto`` gets the weights its ``class_weights_method``,
``class_weights_max`` and ``class_weights_enet_c`` describe (:mod:`semsegpaddle.core.data.class_balance`)
in place of ``auto`` when it is built. Rank 0 prints the table (class, pixels, share, images,
weights, sampling probability) and writes it to ``class_balance.json``; training checkpoints record
the weights, so ``--resume`` keeps them even if the data changed since (and says so).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semsegpaddle.core.common.atomic import write_text_atomic
from semsegpaddle.core.data import class_stats as stats_cache
from semsegpaddle.core.data.class_balance import (DEFAULT_ENET_C, DEFAULT_MAX_WEIGHT, DEFAULT_METHOD,
                                                  check_weight_options, class_weights, rare_class_probabilities)
from semsegpaddle.core.data.class_stats import ClassStats
from semsegpaddle.core.engine.run_folder import CLASS_BALANCE, RunFolder
from semsegpaddle.core.plugin.manager import get_registry

AUTO = "auto"
#: the loss options that describe ``class_weights: auto`` and the defaults used when a loss does not declare them
AUTO_OPTIONS = {"class_weights_method": DEFAULT_METHOD, "class_weights_max": DEFAULT_MAX_WEIGHT,
                "class_weights_enet_c": DEFAULT_ENET_C}


class ClassBalanceWarning(UserWarning):
    """Something to know about a run's class balance: classes without pixels, or a resume keeping its
    checkpoint's weights although the data or the options changed since."""


@dataclass(frozen=True)
class WeightRequest:
    """A loss section asking for ``class_weights: auto``: where it is and how to compute them."""

    key: str  # e.g. loss.main.0
    method: str
    max_weight: float
    enet_c: float

    def options(self) -> dict[str, Any]:
        """The options as recorded in the checkpoint and ``class_balance.json``."""
        return {"method": self.method, "max": float(self.max_weight), "enet_c": float(self.enet_c)}


def weight_requests(config: dict[str, Any]) -> list[WeightRequest]:
    """The loss sections of ``config`` whose ``class_weights`` is ``auto``, their options checked."""
    requests = []
    for part in ("main", "aux"):
        for index, section in enumerate(config.get("loss", {}).get(part, [])):
            if section.get("class_weights") != AUTO:
                continue
            declared = get_registry("loss").get(section["name"]).defaults()
            method, max_weight, enet_c = (section.get(name, declared.get(name, default))
                                          for name, default in AUTO_OPTIONS.items())
            key = f"loss.{part}.{index}"
            check_weight_options(key, method, max_weight, enet_c)
            requests.append(WeightRequest(key, method, max_weight, enet_c))
    return requests


def sampler_wanted(config: dict[str, Any]) -> bool:
    """True when ``train.sampler`` is ``rare_class``."""
    return config["train"].get("sampler", "uniform") == "rare_class"


@dataclass
class ClassBalance:
    """The class statistics of a run and what it uses of them."""

    stats: ClassStats
    cached: bool  # read from the cache file (False: counted in this session)
    class_names: list[str]
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> options, weights, source
    sampler: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def loss_overrides(self) -> dict[str, dict[str, Any]]:
        """``{loss.main.0: {class_weights: [...]}}`` for the loss builder."""
        return {key: {"class_weights": entry["weights"]} for key, entry in self.weights.items()}

    def loader_options(self) -> dict[str, Any]:
        """Keyword arguments of ``train_loader``: the class counts when the rare-class sampler needs them."""
        return {"class_counts": self.stats.counts} if self.sampler is not None else {}

    def checkpoint_meta(self) -> dict[str, Any]:
        """What training checkpoints record, so a resume keeps the weights and can tell changed data."""
        weights = {key: {k: v for k, v in entry.items() if k != "source"} for key, entry in self.weights.items()}
        return {"class_balance": {"identity": self.stats.identity, "pixels": self.stats.pixels.tolist(),
                                  "presence_sha256": self.stats.presence_digest(), "class_weights": weights,
                                  "sampler": self.sampler}}

    def record(self) -> dict[str, Any]:
        """The content of ``class_balance.json``."""
        pixels, images = self.stats.pixels, self.stats.images
        total = max(1, int(pixels.sum()))
        rows = [{"class": name, "pixels": int(p), "share": float(p) / total, "images": int(i)}
                for name, p, i in zip(self.class_names, pixels, images)]
        return {"identity": self.stats.identity, "num_images": int(self.stats.counts.shape[0]),
                "classes": rows, "class_weights": self.weights, "sampler": self.sampler}

    def table(self) -> str:
        """The per-class table printed at the start of a run."""
        pixels, images = self.stats.pixels, self.stats.images
        total = max(1, int(pixels.sum()))
        headers = ["class", "pixels", "share", "images"]
        columns: list[list[float]] = []
        for key, entry in self.weights.items():
            headers.append("weight" if len(self.weights) == 1 else f"weight {key[len('loss.'):]}")
            columns.append(entry["weights"])
        if self.sampler is not None:
            headers.append("P(class)")
            columns.append(self.sampler["class_probabilities"])
        rows = [[name, str(int(p)), f"{100 * p / total:.2f}%", str(int(i)), *(f"{col[c]:.4g}" for col in columns)]
                for c, (name, p, i) in enumerate(zip(self.class_names, pixels, images))]
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(headers, widths)))]
        lines += ["  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths)))
                  for r in rows]
        uses = [f"{key}: {e['method']}, max {e['max']:g} ({e['source']})" for key, e in self.weights.items()]
        if self.sampler is not None:
            uses.append(f"rare-class sampling T={self.sampler['temperature']:g}")
        source = "cached" if self.cached else "counted"
        images = self.stats.counts.shape[0]
        title = f"class balance of the training split ({images} images, {source}; {', '.join(uses)})"
        return "\n".join([title, *lines])


def plan_class_balance(config: dict[str, Any], dataset: Any, folder: RunFolder, saved: dict[str, Any] | None,
                       progress: bool = False) -> ClassBalance | None:
    """The class balance ``config`` asks for over the training split ``dataset``, or None.

    ``saved`` is the ``class_balance`` record of the checkpoint a resume starts from: its weights
    are kept (with a note when the data or the options changed since).
    """
    requests = weight_requests(config)
    wants_sampler = sampler_wanted(config)
    if not requests and not wants_sampler:
        return None
    train = config["train"]
    cache_folder = train.get("cache_dir") or folder.path
    stats, cached = stats_cache.class_stats(
        dataset, config.get("dataset", {}), cache_folder, num_workers=train.get("num_workers", 0),
        skip_bad=bool(train.get("skip_bad_samples", False)), decoded_cache=train.get("cache_dir"), progress=progress)
    names = list(dataset.class_names) or [str(i) for i in range(dataset.num_classes)]
    balance = ClassBalance(stats, cached, names)
    saved = saved or {}
    data_changed = "pixels" in saved and saved["pixels"] != stats.pixels.tolist()
    kept = saved.get("class_weights", {})
    for request in requests:
        entry = kept.get(request.key)
        if entry is None:
            weights = class_weights(stats.counts, request.method, request.max_weight, request.enet_c)
            balance.weights[request.key] = {**request.options(), "weights": weights.tolist(), "source": "computed"}
            continue
        balance.weights[request.key] = {**{k: entry[k] for k in ("method", "max", "enet_c")},
                                        "weights": list(entry["weights"]), "source": "checkpoint"}
        if {k: entry[k] for k in ("method", "max", "enet_c")} != request.options():
            balance.notes.append(f"{request.key}: the class_weights options differ from the checkpoint's "
                                 f"({entry['method']}, max {entry['max']:g}); the resumed run keeps the checkpoint's "
                                 f"class weights")
    if data_changed and kept:
        balance.notes.append("the training data changed since the checkpoint (its class pixel counts differ); the "
                             "resumed run keeps the class weights of its checkpoint")
    if wants_sampler:
        temperature = train["sampler_temperature"]
        balance.sampler = {"name": "rare_class", "temperature": float(temperature),
                           "class_probabilities": rare_class_probabilities(stats.counts, temperature).tolist()}
        before = saved.get("presence_sha256")
        if before is not None and before != stats.presence_digest():
            balance.notes.append("the training data changed since the checkpoint (which image holds which class "
                                 "differs): rare-class sampling draws from the current data, so the batches after "
                                 "the resume differ from those of an uninterrupted run")
    absent = [names[c] for c in np.flatnonzero(stats.pixels == 0)]
    if absent:
        balance.notes.append(f"classes without any pixel in the training split: {', '.join(absent)}")
    return balance


def publish(balance: ClassBalance, folder: RunFolder, cache_dir: str | None) -> None:
    """On rank 0 once the run starts: save freshly counted statistics to the cache, write
    ``class_balance.json``, print the table and any notes."""
    if not balance.cached:
        stats_cache.save(balance.stats, cache_dir or folder.path)
    write_text_atomic(folder / CLASS_BALANCE, json.dumps(balance.record(), indent=2) + "\n")
    print(balance.table(), flush=True)
    for note in balance.notes:
        warnings.warn(note, ClassBalanceWarning, stacklevel=2)
