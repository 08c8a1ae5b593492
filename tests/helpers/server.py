"""The real ``semseg serve`` in a child process on a free loopback port, for the serving tests."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.helpers.cli import SEMSEG

#: a small model of the built-in plugins (so the child process can build it) and its training run
from tests.inference.test_predict_export_hardening import SMALL_RUN  # noqa: E402  (one definition of it)

__all__ = ["SMALL_RUN", "ServerProcess", "start_server", "free_port", "png_bytes", "rgb", "rss_kib", "metric"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rgb(seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A random uint8 H×W×3 picture."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def png_bytes(image: np.ndarray, format: str = "PNG", **save: Any) -> bytes:
    """``image`` encoded in memory."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=format, **save)
    return out.getvalue()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, exactly as exposed) in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


class ServerProcess:
    """A running server: its process, port, log file; :meth:`url` of a path."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (killed after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_server(log_dir: Path, *args: Any, ready_timeout: float = 180, headers: dict[str, str] | None = None
                 ) -> ServerProcess:
    """``semseg serve ARGS --port P`` in a child process, once ``/readyz`` answers 200."""
    import httpx

    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([*SEMSEG, "serve", *map(str, args), "--port", str(port)], stdout=sink,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = ServerProcess(process, port, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"semseg serve exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if httpx.get(server.url("/readyz"), headers=headers, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise AssertionError(f"semseg serve was not ready within {ready_timeout} s:\n{server.log_text()[-3000:]}")
