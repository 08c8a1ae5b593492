"""Experiment loggers: the interface a logger plugin implements and the fan-out the trainer drives.

A logger is a component of kind ``logger`` (hook ``semseg_register_loggers``), chosen by
``runtime.loggers`` (``runtime.visualdl: true`` adds ``visualdl``). Only the main process (rank 0)
builds and calls loggers. A logger that raises (server down, disk full) is reported once, in one
line naming it and the error, and left out for the rest of the run: training goes on. The run's
JSON-lines logs (``train_log.jsonl``, ``eval_log.jsonl``) are not loggers: the run folder writes
them always, and a failure to write them stops the run.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from semsegpaddle.core.common.errors import ConfigError, SemsegError
from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.plugin.failures import describe

#: ``finish(status)`` values
FINISHED, FAILED, STOPPED = "finished", "failed", "stopped"
ALIAS_KEY = "runtime.visualdl"
ERROR_LENGTH = 300  #: a tracker's error message is cut to this many characters in the warning


@dataclass(frozen=True)
class RunInfo:
    """What a logger learns about the run at :meth:`Logger.start`."""

    folder: Path  #: the run folder; a logger keeps its local files in a sub-folder of it
    name: str  #: the run folder's name
    resumed: bool  #: a ``--resume`` session
    world_size: int = 1
    config: dict[str, Any] = field(default_factory=dict)  #: the resolved config


class Logger:
    """The logger interface, with methods that do nothing; a plugin's logger overrides what it needs.

    Calls come in this order: ``start`` once, then ``scalars`` (rising steps) and ``flush`` (at every
    checkpoint), ``artifact`` for the final files, and ``finish`` once. Any of them may raise: the
    logger is then reported once and not called again.
    """

    def start(self, run: RunInfo, params: dict[str, Any], resume_step: int) -> None:
        """Open the run. ``params`` is the resolved config flattened to ``dotted.key -> value`` (str,
        int, float, bool or None). ``resume_step`` is 0 for a fresh run; on ``--resume`` the step of the
        checkpoint: steps after it are trained (and logged) again, so records of those steps written
        by an earlier session must not appear twice."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` (tag -> number) at ``step``."""

    def artifact(self, path: Path) -> None:
        """Keep a copy of the file ``path`` (final metrics JSON, confusion-matrix PNG)."""

    def flush(self) -> None:
        """Write what is buffered (called at every checkpoint)."""

    def finish(self, status: str) -> None:
        """Close the run: ``status`` is ``finished``, ``failed`` or ``stopped`` (SIGTERM / Ctrl-C)."""


class LoggerWarning(UserWarning):
    """A logger failed and was turned off; the training run goes on."""


class LoggerSet:
    """The configured loggers, called together; one that raises is reported once and dropped."""

    def __init__(self, loggers: list[tuple[str, Any]] = ()) -> None:
        self.active: list[tuple[str, Any]] = list(loggers)
        self.failed: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.active)

    @property
    def names(self) -> list[str]:
        """Names of the loggers still on."""
        return [name for name, _ in self.active]

    def _call(self, method: str, *args: Any) -> None:
        for name, logger in list(self.active):
            call = getattr(logger, method, None)
            if call is None:  # the interface's methods are optional
                continue
            try:
                call(*args)
            except Exception as exc:  # a tracker's failure must never stop training
                self.active.remove((name, logger))
                self.failed.append(name)
                error = describe(exc)
                error = error if len(error) <= ERROR_LENGTH else error[:ERROR_LENGTH - 1] + "…"
                warnings.warn(f"logger '{name}' failed in {method}() and is off for the rest of this run: {error}",
                              LoggerWarning, stacklevel=3)

    def start(self, run: RunInfo, params: dict[str, Any], resume_step: int) -> None:
        """:meth:`Logger.start` of every logger."""
        self._call("start", run, params, resume_step)

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        """:meth:`Logger.scalars` of every logger, with the values that are numbers (None left out)."""
        numbers = {tag: float(v) for tag, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            self._call("scalars", step, numbers)

    def artifact(self, path: Path) -> None:
        """:meth:`Logger.artifact` of every logger."""
        self._call("artifact", Path(path))

    def flush(self) -> None:
        """:meth:`Logger.flush` of every logger."""
        self._call("flush")

    def finish(self, status: str) -> None:
        """:meth:`Logger.finish` of every logger."""
        self._call("finish", status)

    @contextlib.contextmanager
    def running(self, run: RunInfo, params: dict[str, Any], resume_step: int) -> Iterator["LoggerSet"]:
        """Start the loggers, and finish them with the way the block ends (finished, failed, stopped)."""
        from semsegpaddle.core.engine.interrupt import TrainingStopped

        self.start(run, params, resume_step)
        try:
            yield self
        except TrainingStopped:
            self.finish(STOPPED)
            raise
        except BaseException:
            self.finish(FAILED)
            raise
        self.finish(FINISHED)

    def final_artifacts(self, metrics_file: Path, metrics: Any) -> None:
        """Hand the final metrics file and the confusion-matrix PNG to the loggers."""
        if not self.active:
            return
        if Path(metrics_file).is_file():
            self.artifact(metrics_file)
        if getattr(metrics, "confusion", None) is None:
            return
        from semsegpaddle.core.inference.metrics import save_confusion_png

        with tempfile.TemporaryDirectory(prefix="semseg-artifacts-") as scratch:
            picture = Path(scratch) / "confusion.png"
            save_confusion_png(metrics.confusion, metrics.class_names, picture)
            self.artifact(picture)


# -------------------------------------------------------------------------------------------------
# building the configured loggers
# -------------------------------------------------------------------------------------------------


def logger_sections(runtime: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config key, section) of every configured logger: ``runtime.loggers``, then ``visualdl`` when
    ``runtime.visualdl`` is true and the list does not name it."""
    sections = [(f"runtime.loggers.{i}", section) for i, section in enumerate(runtime.get("loggers") or [])]
    names = [section["name"] for _, section in sections]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"runtime.loggers names {', '.join(repr(n) for n in repeated)} more than once; "
                          f"give each logger once")
    if runtime.get("visualdl") and "visualdl" not in names:
        sections.append((ALIAS_KEY, {"name": "visualdl"}))
    return sections


def build_loggers(config: dict[str, Any]) -> LoggerSet:
    """Build every configured logger (call on the main process only). A logger whose package is not
    installed, or a bad option, is a one-line ConfigError naming the key, before anything is written."""
    built = []
    for key, section in logger_sections(config["runtime"]):
        if key == ALIAS_KEY:
            try:
                logger = build_component({"runtime": {"visualdl": section}}, key, "logger")
            except SemsegError as exc:
                raise ConfigError(f"runtime.visualdl is true but {exc} (or set runtime.visualdl=false)") from None
        else:
            try:
                logger = build_component(config, key, "logger")
            except ConfigError:
                raise
            except SemsegError as exc:  # e.g. the logger's package is missing
                source = config.source_of(key) if hasattr(config, "source_of") else "config"
                raise ConfigError(f"{source}: {key} (logger '{section['name']}'): {exc}") from None
        built.append((section["name"], logger))
    return LoggerSet(built)


# -------------------------------------------------------------------------------------------------
# what is logged
# -------------------------------------------------------------------------------------------------


def flat_params(config: Any, prefix: str = "") -> dict[str, Any]:
    """The resolved config as ``dotted.key -> value``: mappings and lists of mappings are opened
    (``loss.main.0.name``), other lists become JSON text, paths text."""
    out: dict[str, Any] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            out.update(flat_params(value, dotted + "."))
        elif isinstance(value, (list, tuple)):
            out[dotted] = json.dumps(list(value), default=str)
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[dotted] = value
        else:
            out[dotted] = str(value)
    return out


def train_scalars(loss: float, lr: float, times: dict[str, float], terms: list[float],
                  images_per_step: int) -> dict[str, float]:
    """Tags of a training log step: loss and its terms, lr, step and data time, throughput."""
    step_time = times.get("step_time") or 0.0
    return {"train/loss": loss, "train/lr": lr, "train/step_time": step_time, "train/data_time": times.get("data_time"),
            "train/images_per_second": images_per_step / step_time if step_time > 0 else None,
            **{f"train/loss_{'main' if i == 0 else f'aux{i}'}": t for i, t in enumerate(terms)}}


def eval_scalars(metrics_json: dict[str, Any]) -> dict[str, float]:
    """Tags of an evaluation: mIoU, accuracies, and IoU per class."""
    out = {f"eval/{key}": metrics_json.get(key) for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU")}
    for name, scores in metrics_json.get("per_class", {}).items():
        out[f"eval/IoU/{name}"] = scores.get("IoU")
    return out
