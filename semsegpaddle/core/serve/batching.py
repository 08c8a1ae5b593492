"""Micro-batching with admission control.

A request first takes a place in the queue (:meth:`MicroBatcher.admit`); when ``max_queue``
places are taken it is refused at once (:class:`QueueFull`, answered 503 with Retry-After), so
memory and waiting time stay bounded however fast requests come. An admitted request then reads
and decodes its image and submits it. One loop gathers submitted images of the same size, dtype and
inference mode, up to ``max_batch`` of them or until ``max_wait`` seconds after the first, and runs
the model on them in one worker thread, off the event loop; a place is freed when its image enters
a batch (or its request ends first).
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

__all__ = ["MicroBatcher", "QueueFull", "Ticket", "Result"]


class QueueFull(Exception):
    """Every queue place is taken; ``retry_after`` is a whole number of seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy: queue full; retry after {retry_after} s")
        self.retry_after = retry_after


class Ticket:
    """A request's place in the queue; :meth:`release` frees it (idempotent)."""

    def __init__(self, batcher: "MicroBatcher") -> None:
        self._batcher = batcher
        self.released = False

    def release(self) -> None:
        """Give the place back (once)."""
        if not self.released:
            self.released = True
            self._batcher._admitted -= 1


@dataclass
class Result:
    """A mask with its timings: seconds queued (submitted → batch start), in the model, and the batch size."""

    mask: np.ndarray
    queued: float
    inference: float
    batch_size: int


@dataclass
class _Job:
    key: Hashable
    image: np.ndarray
    mode: Any
    ticket: Ticket
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Batches images for ``run(images, mode) -> N×H×W masks``; ``on_batch(size, seconds)`` is told
    of every batch run (metrics); ``thread_setup`` runs first in the model's thread."""

    def __init__(self, run: Callable[[Sequence[np.ndarray], Any], np.ndarray], *, max_batch: int, max_wait: float,
                 max_queue: int, on_batch: Callable[[int, float], None] | None = None,
                 thread_setup: Callable[[], None] | None = None) -> None:
        self._run = run
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self._on_batch = on_batch
        self._pending: list[_Job] = []
        self._admitted = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="semseg-model", initializer=thread_setup)
        #: recent seconds per batch (an average), for Retry-After
        self._batch_seconds = 0.1

    @property
    def depth(self) -> int:
        """Requests holding a queue place (reading, decoding or waiting for the model)."""
        return self._admitted

    def start(self) -> None:
        """Start the batching loop (in the running event loop)."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; a batch already in the model finishes first."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def admit(self) -> Ticket:
        """A queue place, or :class:`QueueFull` when all ``max_queue`` are taken."""
        if self._admitted >= self.max_queue:
            raise QueueFull(self.retry_after())
        self._admitted += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: its batches at the recent pace, at least 1."""
        batches = math.ceil(max(1, self._admitted) / self.max_batch)
        return max(1, math.ceil(batches * self._batch_seconds))

    async def predict(self, ticket: Ticket, image: np.ndarray, mode: Hashable) -> Result:
        """The mask of ``image`` in ``mode``, batched with other images of its size and mode."""
        future = asyncio.get_running_loop().create_future()
        key = (image.shape, image.dtype.str, mode)
        self._pending.append(_Job(key, image, mode, ticket, future))
        self._wakeup.set()
        return await future

    def _take(self, key: Hashable, room: int) -> list[_Job]:
        """Up to ``room`` pending jobs of ``key``, oldest first, removed from the queue (abandoned ones dropped)."""
        taken, kept = [], []
        for job in self._pending:
            if job.future.done():
                continue
            (taken if job.key == key and len(taken) < room else kept).append(job)
        self._pending = kept
        return taken

    async def _gather(self) -> list[_Job]:
        """The next batch: the oldest job and those of its key arriving within ``max_wait``."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._pending[0].key
        batch = self._take(key, self.max_batch)
        deadline = time.monotonic() + self.max_wait
        while batch and len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
            batch += self._take(key, self.max_batch - len(batch))
        return [job for job in batch if not job.future.done()]

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            for job in batch:
                job.ticket.release()
            started = time.perf_counter()
            try:
                masks = await loop.run_in_executor(self._executor, self._run, [j.image for j in batch], batch[0].mode)
            except Exception as exc:  # the model failed: every request of the batch is told
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
            for job, mask in zip(batch, masks):
                if not job.future.done():
                    job.future.set_result(Result(mask, started - job.submitted, seconds, len(batch)))
