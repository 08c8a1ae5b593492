"""Load training batches in this process or in worker processes, with errors that reach the user.

Paddle's DataLoader hides a failing sample: with ``num_workers=0`` it loads in a thread that
never hands the exception over (the loop blocks for ever, Ctrl-C included); with workers it
exits with pages of tracebacks. Batches here are loaded either in the calling thread or by a
pool of forked processes in order, and any error raised while loading a sample is re-raised in
the caller as one :class:`DataError` naming the sample.
"""
from __future__ import annotations

import collections
import multiprocessing
import signal
import sys
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import numpy as np

from semsegpaddle.core.common.errors import DataError

#: the sample function of the pool being started; forked workers inherit it (no pickling needed)
_worker_load: Callable[[Any], tuple[np.ndarray, ...]] | None = None


def collate(samples: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Stack a list of equally shaped samples field by field; a field that is not an array
    (e.g. notes about the sample) becomes the list of its values."""
    return tuple(np.stack(field) if isinstance(field[0], np.ndarray) else list(field) for field in zip(*samples))


def _load_batch(keys: list[Hashable]) -> tuple[np.ndarray, ...]:
    assert _worker_load is not None
    return collate([_worker_load(key) for key in keys])


def _quiet_worker() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone decides what to do
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fork_pool(num_workers: int) -> Any:
    """A pool of forked workers whose OpenCV runs on one thread: the workers are the parallelism.

    Set in the parent around the fork: calling ``cv2.setNumThreads`` in a forked child whose parent
    had started OpenCV's thread pool deadlocks.
    """
    cv2 = sys.modules.get("cv2")
    threads = cv2.getNumThreads() if cv2 is not None else None
    if cv2 is not None:
        cv2.setNumThreads(1)
    try:
        return multiprocessing.get_context("fork").Pool(num_workers, initializer=_quiet_worker)
    finally:
        if cv2 is not None:
            cv2.setNumThreads(threads)


def iterate_batches(load: Callable[[Any], tuple[np.ndarray, ...]], batches: Iterable[list[Hashable]],
                    num_workers: int = 0, prefetch: int = 2) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield ``collate([load(key) for key in batch])`` for each batch, in order.

    ``num_workers`` > 0 loads up to ``num_workers × prefetch`` batches ahead in forked worker
    processes. ``load`` should raise :class:`DataError` naming the sample; anything else it raises
    is wrapped in one. Workers stop when the iterator is closed or garbage-collected.
    """
    if num_workers <= 0:
        for keys in batches:
            yield collate([_checked(load, key) for key in keys])
        return
    global _worker_load
    _worker_load = lambda key: _checked(load, key)  # noqa: E731 - inherited by the forked workers
    pool = _fork_pool(num_workers)
    try:
        pending: collections.deque = collections.deque()
        source = iter(batches)
        for keys in source:
            pending.append(pool.apply_async(_load_batch, (keys,)))
            if len(pending) >= num_workers * prefetch:
                break
        while pending:
            batch = pending.popleft().get()
            next_keys = next(source, None)
            if next_keys is not None:
                pending.append(pool.apply_async(_load_batch, (next_keys,)))
            yield batch
    finally:
        pool.terminate()
        pool.join()
        _worker_load = None


def _checked(load: Callable[[Any], tuple[np.ndarray, ...]], key: Any) -> tuple[np.ndarray, ...]:
    try:
        return load(key)
    except DataError:
        raise
    except Exception as exc:  # a plugin's own error: name the sample, keep the message
        raise DataError(f"sample {key}: {type(exc).__name__}: {exc}") from None
