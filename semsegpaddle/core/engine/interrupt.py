"""Stop a training run cleanly on SIGTERM or Ctrl-C: finish the step, checkpoint, exit.

Schedulers (Slurm, Kubernetes, ``docker stop``) send SIGTERM before killing a job; Paddle's own
handler answers it with a C++ crash dump. Here the first SIGTERM or SIGINT only sets a flag that
the training loop reads between steps; a second SIGINT interrupts at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from semsegpaddle.core.common.errors import SemsegError


class TrainingStopped(SemsegError):
    """Training stopped on a signal after saving a checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopFlag:
    """Which signal asked the run to stop (None while none did)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within the block, SIGTERM / the first SIGINT set the yielded flag; handlers restored after.

    Outside the main thread (where Python cannot install handlers) the flag never rises.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request_stop(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and flag.signum is not None:
            raise KeyboardInterrupt
        flag.signum = signum

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
