"""The TensorBoard logger: event files written by tensorboardX in ``output_dir/tensorboard``.

TensorBoard reads every event file of a folder as one run. A resumed session first cuts each
existing file back to the events of steps up to the resume step (the records are copied as they
are, each file replaced atomically), then writes its own file beside them: replayed steps appear
once, whatever reads the files.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Iterator

from semsegpaddle.plugins.loggers.common import (ARTIFACT_TAG, PARAMS_TAG, WriterLogger, image_array, is_image,
                                                params_markdown)

FOLDER = "tensorboard"
_HEADER = struct.Struct("<QI")  # record length, masked CRC of the length


def event_files(folder: Path) -> list[Path]:
    """The event files of ``folder`` in the order TensorBoard reads them (by name)."""
    return sorted(p for p in folder.glob("*tfevents*") if p.is_file()) if folder.is_dir() else []


def raw_records(path: Path) -> Iterator[bytes]:
    """Each whole record of an event file (length, CRCs and data, as stored); a torn last record,
    left by a process killed while writing, is left out."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, _ = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length + 4
        if end > len(data):
            return
        yield data[offset:end]
        offset = end


def record_event(record: bytes) -> Any:
    """The ``Event`` protobuf held by one raw record."""
    from tensorboardX.proto.event_pb2 import Event

    return Event.FromString(record[_HEADER.size:-4])


def cut_after(folder: Path, step: int) -> list[str]:
    """Keep only events of steps ≤ ``step`` in every event file of ``folder``; the tags of text
    summaries kept are returned."""
    texts = []
    for path in event_files(folder):
        kept = []
        for record in raw_records(path):
            event = record_event(record)
            if event.step <= step:
                kept.append(record)
                texts += [v.tag for v in event.summary.value if v.tag.startswith(PARAMS_TAG)]
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(b"".join(kept))
        os.replace(temporary, path)
    return texts


class TensorBoardLogger(WriterLogger):
    """Scalars, the config as text and the final files (images, text) as TensorBoard events."""

    def start(self, run: Any, params: dict[str, Any], resume_step: int) -> None:
        """Cut the earlier sessions' files back to ``resume_step`` (a fresh run removes them) and open
        this session's file."""
        from tensorboardX import SummaryWriter

        folder = Path(run.folder) / FOLDER
        texts: list[str] = []
        if resume_step > 0:
            texts = cut_after(folder, resume_step)
        else:
            for old in event_files(folder):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        # the suffix orders two sessions started within the same second (file names hold seconds)
        self.writer = SummaryWriter(logdir=str(folder), flush_secs=self.flush_secs,
                                    filename_suffix=f".from{resume_step:010d}")
        if not texts:
            self.writer.add_text(PARAMS_TAG, params_markdown(params), 0)
        self.last_step = resume_step

    def artifact(self, path: Path) -> None:
        """An image file as an image, any other file as text, at the last step."""
        tag = f"{ARTIFACT_TAG}/{path.stem}"
        if is_image(path):
            self.writer.add_image(tag, image_array(path), self.last_step, dataformats="HWC")
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
            self.writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()), self.last_step)
