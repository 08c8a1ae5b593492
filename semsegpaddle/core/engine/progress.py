"""What a run shows and measures as it goes: the progress bar (loss, lr, it/s, ETA, data wait) and
step / data-wait times averaged between log records."""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm


def timed(batches: Iterable[Any]) -> Iterator[tuple[float, Any]]:
    """Yield ``(seconds spent waiting for the batch, batch)``."""
    iterator = iter(batches)
    while True:
        tic = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - tic, batch


class Progress:
    """The training progress bar and the timing means of the current log interval.

    tqdm gives it/s and the ETA; the postfix shows the last loss, the lr and the mean time each
    step waited for its batch (high values: raise ``train.num_workers``).
    """

    def __init__(self, total: int, start: int, show: bool) -> None:
        self.bar = tqdm(total=total, initial=start, desc="train", unit="it", disable=not show, dynamic_ncols=True)
        self.began = time.perf_counter()
        self._reset()
        self.data_ema: float | None = None

    def _reset(self) -> None:
        self.steps, self.data_sum, self.interval_start = 0, 0.0, time.perf_counter()

    def update(self, loss: float, lr: float, data_wait: float) -> None:
        """Account one finished step."""
        self.steps += 1
        self.data_sum += data_wait
        self.data_ema = data_wait if self.data_ema is None else 0.8 * self.data_ema + 0.2 * data_wait
        postfix = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "data": f"{self.data_ema:.3f}s"}
        self.bar.set_postfix(postfix, refresh=False)  # a mapping keeps this order (keywords get sorted)
        self.bar.update(1)

    def interval_times(self) -> dict[str, float]:
        """Mean seconds per step and per data wait since the previous call, and seconds since the start."""
        now = time.perf_counter()
        steps = max(1, self.steps)
        out = {"seconds": round(now - self.began, 3), "step_time": round((now - self.interval_start) / steps, 4),
               "data_time": round(self.data_sum / steps, 4)}
        self._reset()
        return out

    def write(self, text: str) -> None:
        """Print a line above the bar."""
        self.bar.write(text)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
