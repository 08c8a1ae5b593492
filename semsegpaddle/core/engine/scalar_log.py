"""VisualDL scalars of a run (``runtime.visualdl``): loss terms, lr, step and data time, mIoU,
per-class IoU. Needs the ``visualdl`` extra (``pip install 'semsegpaddle[visualdl]'``).

VisualDL shows one record file per folder, the newest. A resumed session therefore starts a new
file holding the earlier session's records up to the resume step, then removes the older files:
the folder always shows exactly one run, as the JSON logs do.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from semsegpaddle.core.common.errors import ConfigError

MISSING = ("runtime.visualdl is true but VisualDL is not installed: pip install 'semsegpaddle[visualdl]' "
           "(or set runtime.visualdl=false)")


def require_visualdl() -> None:
    """A one-line ConfigError if VisualDL cannot be imported."""
    try:
        import visualdl  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING) from None


def record_files(folder: Path) -> list[Path]:
    """VisualDL record files of ``folder``, oldest first (their names sort by creation time)."""
    return sorted(p for p in folder.glob("*vdlrecords*") if p.is_file()) if folder.is_dir() else []


def read_scalars(path: Path) -> dict[str, list[tuple[int, float, int]]]:
    """Every scalar of a record file: tag → [(step, value, wall time in ms)], with VisualDL's reader."""
    from visualdl import LogReader

    reader = LogReader(file_path=str(path))
    # the reader keys tags with '/' stored as '%' (a character tags may not hold)
    tags = [os.path.relpath(p, reader.reader.dir).replace("%", "/") for p, kind in reader.tags().items()
            if kind == "scalar"]
    return {tag: [(int(r.id), float(r.value), int(r.timestamp)) for r in reader.get_data("scalar", tag)]
            for tag in tags}


class ScalarLog:
    """Writes scalars to a new VisualDL record file in ``folder`` for a session starting at ``start``."""

    def __init__(self, folder: Path, start: int) -> None:
        from visualdl import LogWriter

        folder.mkdir(parents=True, exist_ok=True)
        earlier = record_files(folder)
        history = read_scalars(earlier[-1]) if earlier and start > 0 else {}
        name = f"vdlrecords.{time.time_ns() // 1_000_000:014d}.log"
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()  # VisualDL prints a notice when appending to an existing file
        self.writer = LogWriter(logdir=str(folder), file_name=name, flush_secs=30)
        for tag, records in history.items():
            for step, value, walltime in records:
                if step <= start:
                    self.writer.add_scalar(tag, value, step, walltime=walltime)
        self.writer.flush()
        for old in earlier:
            if old.name != name:
                old.unlink()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Add one value per tag at ``step`` (non-numbers such as None are left out)."""
        for tag, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), step)

    def flush(self) -> None:
        """Write pending records to disk (done at every checkpoint)."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the record file."""
        self.writer.close()


class NoScalarLog:
    """Stands in for :class:`ScalarLog` when ``runtime.visualdl`` is off (or on ranks other than 0)."""

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        """Do nothing."""

    def flush(self) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def eval_scalars(metrics_json: dict[str, Any]) -> dict[str, float]:
    """VisualDL tags of an evaluation: mIoU, accuracies, and IoU per class."""
    out = {f"eval/{key}": metrics_json.get(key) for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU")}
    for name, scores in metrics_json.get("per_class", {}).items():
        out[f"eval/IoU/{name}"] = scores.get("IoU")
    return out
