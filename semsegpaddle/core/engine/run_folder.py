"""The run folder: what a training run writes, guarded so that it always describes exactly one run.

- One training process at a time: an exclusive lock (``.lock``, released by the OS when the
  process ends, however it ends).
- Checkpoints are single files written atomically (see :mod:`semsegpaddle.core.engine.checkpoint`), so
  resuming always finds a consistent one; temporaries of a killed writer are swept away.
- Logs hold the records of one run: ``--overwrite`` removes the earlier run's files, and a
  resume drops the records of steps after its checkpoint before replaying them.
- ``runtime.keep_last``: numbered checkpoints ``model_STEP.safetensors`` beside the last one;
  ``--resume`` starts from the newest complete checkpoint of the set.
- ``versions.json``: per training session, the versions of Python, Paddle, semsegpaddle and
  every plugin that ran it.
- ``class_balance.json``: the class statistics and the class weights / sampling probabilities a
  run uses (``class_weights: auto``, ``train.sampler: rare_class``); the statistics' cache file
  ``class_stats-<identity>.npz`` stays here (unless ``train.cache_dir`` holds it) across
  ``--overwrite``, being named by the data it describes.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from semsegpaddle.core.common.atomic import write_text_atomic
from semsegpaddle.core.common.disk import check_writable, disk_full_error, is_disk_full
from semsegpaddle.core.common.errors import SemsegError

LAST = "model_last.safetensors"
BEST = "model_best.safetensors"
CONFIG = "config.yaml"
TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
METRICS = "metrics.json"
VERSIONS = "versions.json"
CLASS_BALANCE = "class_balance.json"
VISUALDL = "visualdl"
LOCK = ".lock"
#: files a run writes; ``--overwrite`` removes exactly these, the numbered checkpoints and the
#: VisualDL folder (and nothing else of the folder)
RUN_FILES = (LAST, BEST, CONFIG, TRAIN_LOG, EVAL_LOG, METRICS, VERSIONS, CLASS_BALANCE, "eval_metrics.json",
             "train_state.pdstate")
STEP_CHECKPOINT = re.compile(r"model_(\d+)\.safetensors")


def step_checkpoint_name(step: int) -> str:
    """The file name of the numbered checkpoint of ``step`` (``model_STEP.safetensors``)."""
    return f"model_{step}.safetensors"


class RunFolder:
    """The folder ``runtime.output_dir`` of one training run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_handle: Any = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def check_usable(self) -> None:
        """A one-line error if the path exists but is not a folder."""
        if self.path.exists() and not self.path.is_dir():
            raise SemsegError(f"runtime.output_dir {self.path} is a file, not a folder; choose another output_dir")

    def check_writable(self) -> None:
        """A one-line error if no file can be created in the folder (read-only, no permission)."""
        self.check_usable()
        check_writable(self.path, "runtime.output_dir")

    def check_start(self, resume: bool, overwrite: bool) -> None:
        """One-line errors if a run cannot start here: a fresh run in a folder holding one (without
        ``overwrite``), a resume with nothing to resume from."""
        self.check_writable()
        if resume and overwrite:
            raise SemsegError("--resume and --overwrite exclude each other")
        if resume and not self.resume_candidates():
            raise SemsegError(f"cannot resume: {self.path / LAST} does not exist")
        if not resume and not overwrite and self.holds_run():
            raise SemsegError(f"{self.path} already holds a training run; continue it with --resume, replace it "
                              f"with --overwrite, or set runtime.output_dir to another folder")

    def holds_run(self) -> bool:
        """True if a training run already wrote checkpoints here."""
        return any((self.path / name).exists() for name in (LAST, BEST, "train_state.pdstate")) or \
            bool(self.step_checkpoints())

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """The numbered checkpoints here, as (step, path), oldest first."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := STEP_CHECKPOINT.fullmatch(p.name))]
        return sorted(found)

    def resume_candidates(self) -> list[Path]:
        """Checkpoints a resume may start from: the last one, then the numbered ones, newest first."""
        numbered = [path for _, path in reversed(self.step_checkpoints())]
        return ([self.path / LAST] if (self.path / LAST).is_file() else []) + numbered

    def prune_step_checkpoints(self, keep: int) -> None:
        """Remove numbered checkpoints but the ``keep`` newest."""
        for _, path in self.step_checkpoints()[:-keep] if keep > 0 else self.step_checkpoints():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def drop_step_checkpoints_after(self, step: int) -> None:
        """Remove numbered checkpoints of steps after ``step`` (a resume from ``step`` redoes them)."""
        for number, path in self.step_checkpoints():
            if number > step:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator["RunFolder"]:
        """Hold the folder's exclusive lock (creating the folder); a second holder is refused."""
        self.check_usable()
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise SemsegError(f"{self.path} is in use by another training process (pid {owner}); "
                                  f"wait for it or choose another runtime.output_dir") from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        try:
            yield self
        finally:
            self._lock_handle = None
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def sweep_temporaries(self) -> list[Path]:
        """Remove temporary files left by a writer that was killed before its rename."""
        removed = []
        for tmp in self.path.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
        return removed

    def clear(self) -> None:
        """Remove the files of the run held here (for ``--overwrite``); other files stay."""
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        for _, path in self.step_checkpoints():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        shutil.rmtree(self.path / VISUALDL, ignore_errors=True)

    def truncate_logs(self, step: int) -> None:
        """Keep only log records of steps ≤ ``step`` (a resume replays the later ones)."""
        for name in (TRAIN_LOG, EVAL_LOG):
            path = self.path / name
            if not path.exists():
                continue
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) <= step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    def append_log(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON record to a log (one line; a torn last line is dropped on resume).

        A line that does not fit (full disk, file-size limit) is taken back whole and raises
        :class:`~semsegpaddle.core.common.disk.DiskFullError`.
        """
        line = (json.dumps(record) + "\n").encode("utf-8")
        with open(self.path / name, "ab", buffering=0) as handle:
            end = handle.tell()
            try:
                done = 0
                while done < len(line):  # a raw write may write part of the line
                    done += handle.write(line[done:])
            except OSError as exc:
                with contextlib.suppress(OSError):
                    handle.truncate(end)
                if is_disk_full(exc):
                    raise disk_full_error(self.path / name, len(line), exc) from None
                raise

    def record_versions(self, record: dict[str, Any]) -> None:
        """Add a session's versions record to ``versions.json`` (a list, one record per session);
        records of sessions that started at or after this one's step are replaced."""
        path = self.path / VERSIONS
        sessions: list[Any] = []
        with contextlib.suppress(FileNotFoundError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            sessions = loaded if isinstance(loaded, list) else []
        sessions = [s for s in sessions if isinstance(s, dict) and s.get("start_step", 0) < record["start_step"]]
        write_text_atomic(path, json.dumps([*sessions, record], indent=2) + "\n")

    def write_config(self, text: str) -> None:
        """Write the run's resolved config."""
        write_text_atomic(self.path / CONFIG, text)


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a torn or foreign line: dropped
