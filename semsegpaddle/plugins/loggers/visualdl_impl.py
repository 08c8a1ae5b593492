"""The VisualDL logger: one record file in ``output_dir/visualdl``.

VisualDL shows one record file per folder, the newest. A resumed session therefore starts a new
file holding the earlier session's scalars up to the resume step, then removes the older files:
the folder always shows exactly one run, as the JSON logs do.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from visualdl import LogWriter

from semsegpaddle.plugins.loggers.common import (ARTIFACT_TAG, PARAMS_TAG, WriterLogger, image_array, is_image,
                                                params_markdown)

FOLDER = "visualdl"


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


class VisualDLLogger(WriterLogger):
    """Scalars, the config as text and the final files (images, text) in a VisualDL record file."""

    def start(self, run: Any, params: dict[str, Any], resume_step: int) -> None:
        """Open a new record file holding the earlier session's scalars up to ``resume_step``."""
        folder = Path(run.folder) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        earlier = record_files(folder)
        history = read_scalars(earlier[-1]) if earlier and resume_step > 0 else {}
        name = f"vdlrecords.{time.time_ns() // 1_000_000:014d}.log"
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()  # VisualDL prints a notice when appending to an existing file
        self.writer = LogWriter(logdir=str(folder), file_name=name, flush_secs=self.flush_secs)
        self.writer.add_text(PARAMS_TAG, params_markdown(params), 0)
        for tag, records in history.items():
            for step, value, walltime in records:
                if step <= resume_step:
                    self.writer.add_scalar(tag, value, step, walltime=walltime)
        self.writer.flush()
        for old in earlier:
            if old.name != name:
                old.unlink()
        self.last_step = resume_step

    def artifact(self, path: Path) -> None:
        """An image file as an image, any other file as text, at the last step."""
        tag = f"{ARTIFACT_TAG}/{path.stem}"
        if is_image(path):
            self.writer.add_image(tag, image_array(path), self.last_step)
        else:
            self.writer.add_text(tag, path.read_text(encoding="utf-8", errors="replace"), self.last_step)
