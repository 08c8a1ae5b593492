"""Run the application under uvicorn, in this process or in ``workers`` processes.

Timeouts: a connection must complete each request's headers within ``read_timeout`` seconds of
opening (or of its previous answer), else it is closed; the body then has ``read_timeout``
seconds (408, see :mod:`semsegpaddle.core.serve.limits`); an idle keep-alive connection is closed
after ``keep_alive`` seconds; a request head (request line and headers) may hold at most
:data:`MAX_HEADER_BYTES` (more is answered 431). SIGTERM (or Ctrl-C) stops accepting, lets in-flight requests finish for at most
``shutdown_timeout`` seconds, and the process exits 0.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from semsegpaddle.core.serve.limits import MAX_HEADER_BYTES
from semsegpaddle.core.serve.options import ServeOptions

__all__ = ["run_app", "run_workers", "GuardedH11Protocol", "SPEC_VARIABLE", "MAX_HEADER_BYTES"]

#: the environment variable carrying what worker processes load (JSON)
SPEC_VARIABLE = "SEMSEG_SERVE_SPEC"
_REASON = b'{"error": "the request head exceeds 16384 bytes"}'
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                  b"connection: close\r\ncontent-length: " + str(len(_REASON)).encode() + b"\r\n\r\n" + _REASON)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request heads: a connection that has not sent a
    complete request head ``read_timeout`` seconds (the uvicorn config's ``semseg_read_timeout``)
    after it opened, or after its last answer, is closed (a slow client cannot hold a connection by
    trickling headers); a head still incomplete after :data:`MAX_HEADER_BYTES` is answered 431."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._read_timeout = float(getattr(config, "semseg_read_timeout", 30.0))
        self._head_timer: Any = None
        self._seen_cycle: Any = None
        self._head_bytes = 0

    def connection_made(self, transport: Any) -> None:  # noqa: D102
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._read_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def data_received(self, data: bytes) -> None:  # noqa: D102
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # a complete request head arrived
            self._head_bytes = 0
            self._disarm()
        elif self.cycle is None or self.cycle.response_complete:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse_head()
                return
            self._arm()  # bytes of a next request head: it has read_timeout to complete

    def _refuse_head(self) -> None:
        """Answer 431 to a head still incomplete after MAX_HEADER_BYTES, and close."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()

    def on_response_complete(self) -> None:  # noqa: D102
        super().on_response_complete()
        self._head_bytes = 0
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._disarm()
        super().connection_lost(exc)


def uvicorn_config(app: Any, options: ServeOptions, **extra: Any) -> uvicorn.Config:
    """uvicorn's settings for ``options``."""
    config = uvicorn.Config(app, host=options.host, port=options.port, http=GuardedH11Protocol,
                            lifespan="on", timeout_keep_alive=options.keep_alive,
                            timeout_graceful_shutdown=max(1, round(options.shutdown_timeout)),
                            h11_max_incomplete_event_size=16 * MAX_HEADER_BYTES, server_header=False,
                            limit_concurrency=max(64, 4 * options.max_queue), access_log=False, ws="none",
                            log_level="info", **extra)
    config.semseg_read_timeout = options.read_timeout
    return config


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM/SIGINT marks the app as draining (``/readyz`` answers 503)
    and, once drained, returns instead of re-raising the signal: the process exits 0."""

    def __init__(self, config: uvicorn.Config, state: Any = None) -> None:
        super().__init__(config)
        self.serve_state = state

    def handle_exit(self, sig: int, frame: Any) -> None:  # noqa: D102
        if self.serve_state is not None:
            self.serve_state.draining = True
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def run_app(app: Any, options: ServeOptions) -> None:
    """Serve ``app`` (from :func:`semsegpaddle.core.serve.app.create_app`) in this process until
    SIGTERM/SIGINT; returns once drained."""
    server = DrainingServer(uvicorn_config(app, options), getattr(app, "state", None))
    server.run()
    if not server.started:
        raise OSError(f"cannot serve on {options.host}:{options.port} (see the message above)")


def run_workers(spec: dict[str, Any], options: ServeOptions) -> None:
    """Serve in ``options.workers`` processes sharing one socket; each loads the model described by
    ``spec`` once (:func:`app_from_environment`). Returns when SIGTERM/SIGINT has stopped them all."""
    from uvicorn.supervisors import Multiprocess

    class DrainingSupervisor(Multiprocess):
        """On SIGTERM/SIGINT the parent's copy of the listening socket closes first, so that once
        the workers close theirs new connections are refused while in-flight requests finish."""

        def handle_term(self) -> None:
            self._close_sockets()
            super().handle_term()

        def handle_int(self) -> None:
            self._close_sockets()
            super().handle_int()

        def _close_sockets(self) -> None:
            for sock in self.sockets:
                sock.close()

    os.environ[SPEC_VARIABLE] = json.dumps({"spec": spec, "options": options.to_dict()})
    config = uvicorn_config("semsegpaddle.core.serve.runner:app_from_environment", options, factory=True,
                            workers=options.workers)
    listening = config.bind_socket()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        DrainingSupervisor(config, sockets=[listening]).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        listening.close()


def app_from_environment() -> Any:
    """The application of a worker process: the model described in :data:`SPEC_VARIABLE`, loaded
    once here."""
    from semsegpaddle.core.config.loader import config_from_dict
    from semsegpaddle.core.serve.app import create_app
    from semsegpaddle.core.serve.model import load_served_model

    payload = json.loads(os.environ[SPEC_VARIABLE])
    spec, options = payload["spec"], ServeOptions.from_dict(payload["options"])
    config = config_from_dict(spec["config"], source=spec["config_name"] or "serve")
    # importing paddle installs its own fatal-signal handlers over uvicorn's: put uvicorn's back, so
    # SIGTERM drains this worker instead of aborting it
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        model = load_served_model(config, spec["weights"], backend=spec["backend"], model_dir=spec["model_dir"],
                                  config_name=spec["config_name"])
    except Exception as exc:
        print(f"Error: worker {os.getpid()} cannot load the model: {exc}", file=sys.stderr)
        raise
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return create_app(model, options)
