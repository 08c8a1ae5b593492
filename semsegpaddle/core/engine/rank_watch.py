"""One data-parallel process's health: a progress watchdog and a record of how the process ended.

Every process beats as it goes (each batch loaded, each step, each image evaluated). One that
makes no progress for ``runtime.collective_timeout`` seconds, being hung itself or blocked in a
collective waiting for a hung peer, records why and exits; a thread does it, since Paddle releases
the GIL while a collective waits. A process in a phase that may wait for its peers gets a few
more seconds, so the hung process reports first and is the one named.

The records are small JSON files in the folder the launcher supervisor gives in
``$SEMSEG_RANK_DIR`` (none without it): ``rank-R.json`` when the process starts (its pid, which
the supervisor watches and cleans up), ``rank-R.end.json`` when it fails (the reason, a one-line
message, the step and phase), read by :mod:`semsegpaddle.core.engine.supervisor` to say in one
line which process ended the job.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from semsegpaddle.core.common.errors import SemsegError

RANK_DIR_ENV = "SEMSEG_RANK_DIR"
#: extra seconds before a process that may be waiting for its peers reports a timeout
PEER_GRACE_MAX = 10.0
#: words of the errors gloo raises when a peer's connection breaks (a peer died)
PEER_LOST_WORDS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Socket closed",
                   "Connection refused", "Read error", "Write error", "gloo/transport")


class PeerLost(SemsegError):
    """A collective failed because another process of the job went away."""


def start_record_path(folder: Path, rank: int) -> Path:
    """Where process ``rank`` writes its pid when it starts."""
    return folder / f"rank-{rank}.json"


def end_record_path(folder: Path, rank: int) -> Path:
    """Where process ``rank`` writes why it failed."""
    return folder / f"rank-{rank}.end.json"


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (None if it does not exist):
    with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    return message if len(message) <= 300 else message[:297] + "..."


def is_peer_lost(exc: BaseException) -> bool:
    """True for the error a collective raises when a peer's connection broke."""
    return isinstance(exc, (RuntimeError, OSError)) and any(word in str(exc) for word in PEER_LOST_WORDS)


class RankWatch:
    """Beats, the watchdog thread and the records of process ``rank`` of ``world_size``."""

    def __init__(self, rank: int, world_size: int, timeout: float, folder: Path | None) -> None:
        self.rank, self.world_size, self.timeout, self.folder = rank, world_size, float(timeout), folder
        self.step, self.phase, self.waits_for_peers = 0, "starting", True
        self.last_beat = time.monotonic()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- beats ---------------------------------------------------------------------------------
    def beat(self, step: int, phase: str, waits_for_peers: bool = True) -> None:
        """Progress: now in ``phase`` of ``step``."""
        self.step, self.phase, self.waits_for_peers = step, phase, waits_for_peers
        self.last_beat = time.monotonic()

    def batches(self, loader: Iterable[Any], start: int) -> Iterator[Any]:
        """``loader``'s items, beating before each load (no peer to wait for) and after it."""
        iterator = iter(loader)
        step = start
        while True:
            step += 1
            self.beat(step, "loading its batch", waits_for_peers=False)
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.beat(step, "computing (forward, backward, gradient all-reduce)")
            yield item

    def dataset(self, dataset: Any, step: int) -> Any:
        """``dataset`` seen through a view that beats at each sample read (for evaluation)."""
        return _BeatingDataset(dataset, self, step)

    # -- the watchdog --------------------------------------------------------------------------
    def start(self) -> None:
        """Write the start record and start the watchdog (when ``timeout`` > 0)."""
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            end_record_path(self.folder, self.rank).unlink(missing_ok=True)
            pid = os.getpid()
            _write_json(start_record_path(self.folder, self.rank),
                        {"rank": self.rank, "world_size": self.world_size, "pid": pid,
                         "start_ticks": process_start_ticks(pid)})
        if self.timeout > 0:
            self._thread = threading.Thread(target=self._watch, name="semseg-rank-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog (the loop is over)."""
        self._done.set()

    def _limit(self) -> float:
        return self.timeout + (min(PEER_GRACE_MAX, self.timeout / 2) if self.waits_for_peers else 0.0)

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 10)):
            idle = time.monotonic() - self.last_beat
            if idle > self._limit():
                self._time_out(idle)

    def _time_out(self, idle: float) -> None:
        message = (f"rank {self.rank} (pid {os.getpid()}): no progress for {idle:.0f} s while {self.phase} in "
                   f"step {self.step} (runtime.collective_timeout={self.timeout:g})")
        self.record("timeout", message)
        print(f"{message}; stopping", file=sys.stderr, flush=True)
        os._exit(1)  # the main thread may be blocked in a collective: nothing else would end it

    # -- records -------------------------------------------------------------------------------
    def record(self, reason: str, message: str, exit_code: int = 1) -> None:
        """Write the end record: ``reason`` is error, timeout, peer or stopped."""
        if self.folder is None:
            return
        try:
            _write_json(end_record_path(self.folder, self.rank),
                        {"rank": self.rank, "pid": os.getpid(), "reason": reason, "message": message,
                         "step": self.step, "phase": self.phase, "time": time.time(), "exit_code": exit_code})
        except OSError:
            pass  # a record is a courtesy: never hide the failure behind a second one


class _BeatingDataset:
    """A dataset view whose sample reads beat the watch (everything else is the dataset's)."""

    def __init__(self, dataset: Any, watch: RankWatch, step: int) -> None:
        self._dataset, self._watch, self._step = dataset, watch, step

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, index: int) -> Any:
        self._watch.beat(self._step, "evaluating")
        return self._dataset[index]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


@contextmanager
def watch_rank(rank: int, world_size: int, timeout: float) -> Iterator[RankWatch]:
    """A started :class:`RankWatch` for the block (inert with one process). An exception leaving
    the block is recorded; a collective that failed because a peer went away becomes
    :class:`PeerLost`, one line saying so."""
    from semsegpaddle.core.engine.interrupt import TrainingStopped

    folder = os.environ.get(RANK_DIR_ENV)
    watch = RankWatch(rank, world_size, timeout if world_size > 1 else 0.0,
                      Path(folder) if folder and world_size > 1 else None)
    watch.start()
    try:
        yield watch
    except TrainingStopped as stopped:
        watch.record("stopped", str(stopped), stopped.exit_code)
        raise
    except BaseException as exc:
        if is_peer_lost(exc):
            message = (f"rank {rank} (pid {os.getpid()}) lost contact with another process of the job while "
                       f"{watch.phase} in step {watch.step} ({one_line(exc)})")
            watch.record("peer", message)
            raise PeerLost(message) from None
        watch.record("error", f"rank {rank} (pid {os.getpid()}) failed in step {watch.step}: {one_line(exc)}")
        raise
    finally:
        watch.stop()
