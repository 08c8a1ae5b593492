"""Capture what native libraries print: Paddle's glog lines, paddle2onnx's C++ and Python chatter.

Native code writes to the process's file descriptors 1 and 2 directly, past ``sys.stdout``; only
redirecting the descriptors themselves (and ``sys.stdout``/``sys.stderr`` for Python code) keeps
a command's console output to what it means to say.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from typing import Iterator


def _flush_all() -> None:
    """Flush Python's streams and the C library's stdio buffers (native code may print via printf)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


class Captured:
    """The text captured so far (readable during the ``with`` block too)."""

    def __init__(self) -> None:
        self._sink_fd: int | None = None
        self._final = ""

    @property
    def text(self) -> str:
        """Everything captured up to now."""
        if self._sink_fd is None:
            return self._final
        _flush_all()
        size = os.fstat(self._sink_fd).st_size
        return os.pread(self._sink_fd, size, 0).decode("utf-8", errors="replace")


@contextlib.contextmanager
def captured_output(enabled: bool = True) -> Iterator[Captured]:
    """Send everything written to stdout and stderr (Python and native) into a buffer.

    With ``enabled`` False, output passes through untouched (for ``--debug``).
    """
    captured = Captured()
    if not enabled:
        yield captured
        return
    _flush_all()
    saved = [os.dup(1), os.dup(2)]
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile(mode="w+b") as sink:
        # sys.stdout may not be fd 1 (click's test runner, pytest): Python-level writes go to the
        # same file through a duplicate descriptor, which shares the offset, so the order is kept
        python_sink = os.fdopen(os.dup(sink.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            sys.stdout = sys.stderr = python_sink
            captured._sink_fd = sink.fileno()
            yield captured
        finally:
            _flush_all()
            sys.stdout, sys.stderr = streams
            python_sink.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            captured._final = captured.text
            captured._sink_fd = None
