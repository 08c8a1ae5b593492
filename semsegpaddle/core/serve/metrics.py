"""Server metrics in the Prometheus text exposition format (written by hand: a few counters,
gauges and histograms need no client library). Per worker process."""
from __future__ import annotations

import threading
from typing import Callable, Sequence

__all__ = ["Histogram", "ServerMetrics", "ROUTES"]

#: paths counted under their own name; any other path is counted as "other" (bounded label values)
ROUTES = ("/", "/healthz", "/readyz", "/v1/model", "/metrics", "/predict")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus histograms are exposed."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count ``value`` in every bucket whose bound it does not exceed."""
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        """Its exposition lines (``labels`` like ``path="/predict"``, without braces)."""
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{_number(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]


def _number(value: float) -> str:
    return f"{value:g}"


class ServerMetrics:
    """Requests by path and status, request latency, batch sizes and model time; the queue depth and
    requests in flight are read when rendered (``queue_depth`` is a callable)."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)
        self.in_flight = 0
        self.queue_depth = queue_depth

    @staticmethod
    def route(path: str) -> str:
        """The label value of ``path``."""
        return path if path in ROUTES else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        """Count a finished request and its latency."""
        route = self.route(path)
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Count a batch the model ran."""
        with self._lock:
            self.batch_size.observe(size)
            self.batch_seconds.observe(seconds)

    def render(self) -> str:
        """Everything, in the text format (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP semseg_requests_total HTTP requests answered, by path and status.",
                     "# TYPE semseg_requests_total counter"]
            lines += [f'semseg_requests_total{{path="{p}",status="{s}"}} {n}'
                      for (p, s), n in sorted(self.requests.items())]
            lines += ["# HELP semseg_request_duration_seconds Time from request to response, by path.",
                      "# TYPE semseg_request_duration_seconds histogram"]
            for path, histogram in sorted(self.latency.items()):
                lines += histogram.lines("semseg_request_duration_seconds", f'path="{path}"')
            lines += ["# HELP semseg_batch_size Images per model batch.", "# TYPE semseg_batch_size histogram",
                      *self.batch_size.lines("semseg_batch_size"),
                      "# HELP semseg_batch_duration_seconds Model time per batch.",
                      "# TYPE semseg_batch_duration_seconds histogram",
                      *self.batch_seconds.lines("semseg_batch_duration_seconds"),
                      "# HELP semseg_queue_depth Prediction requests holding a queue place.",
                      "# TYPE semseg_queue_depth gauge", f"semseg_queue_depth {self.queue_depth()}",
                      "# HELP semseg_requests_in_flight Requests being answered.",
                      "# TYPE semseg_requests_in_flight gauge", f"semseg_requests_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"
