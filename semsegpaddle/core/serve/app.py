"""The Starlette application: routes, and one ASGI layer in front of them that checks the token,
counts every answer and times it.

Routes: ``GET /`` (the page), ``GET /healthz``, ``GET /readyz``, ``GET /v1/model``,
``GET /metrics``, ``POST /predict``. Errors are JSON ``{"error": "<one line>"}``.
"""
from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.serve.auth import OPEN_PATHS, bearer_matches
from semsegpaddle.core.serve.batching import MicroBatcher, QueueFull
from semsegpaddle.core.serve.limits import MAX_HEADER_BYTES, Rejected, image_from_body, inspect_image, read_body
from semsegpaddle.core.serve.metrics import ServerMetrics
from semsegpaddle.core.serve.model import (ServedModel, check_mode_pixels, decode_upload, mask_png,
                                           overlay_bytes)
from semsegpaddle.core.serve.options import ServeOptions, read_token
from semsegpaddle.core.serve.page import page_html
from semsegpaddle.core.serve.query import parse_query

__all__ = ["create_app", "ServerState"]

#: status recorded when the client went away before its answer (nginx's convention)
CLIENT_CLOSED = 499
#: headers on every answer
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                    "Referrer-Policy": "no-referrer"}


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error answer ``{"error": reason}``."""
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


class ServerState:
    """What the routes share: the model, the batcher, the metrics, the options."""

    def __init__(self, model: ServedModel, options: ServeOptions) -> None:
        self.model = model
        self.options = options
        self.token = read_token(options.token_file)
        self.metrics = ServerMetrics(lambda: self.batcher.depth)
        self.batcher = MicroBatcher(model.masks, max_batch=options.max_batch, max_wait=options.max_wait_ms / 1000,
                                    max_queue=options.max_queue, on_batch=self.metrics.observe_batch,
                                    thread_setup=model.prepare_thread)
        self.draining = False
        self.workdir: str | None = None


class Guard:
    """ASGI layer before the routes: the bearer token (every path but the open ones), the
    in-flight count, and the status and latency of every answer for the metrics."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": CLIENT_CLOSED}

        async def counted_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        metrics = self.state.metrics
        metrics.in_flight += 1
        try:
            head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + sum(
                len(key) + len(value) + 4 for key, value in scope.get("headers", []))
            if head > MAX_HEADER_BYTES:  # a head that arrived whole (the protocol refuses one arriving in parts)
                await error(431, f"the request head exceeds {MAX_HEADER_BYTES} bytes")(scope, receive, counted_send)
                return
            if self.state.token is not None and scope["path"] not in OPEN_PATHS and not bearer_matches(
                    _header(scope, b"authorization"), self.state.token):
                response = error(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                 {"WWW-Authenticate": 'Bearer realm="semseg"'})
                await response(scope, receive, counted_send)
                return
            await self.app(scope, receive, counted_send)
        finally:
            metrics.in_flight -= 1
            metrics.observe_request(scope["path"], status["code"], time.perf_counter() - started)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


# -------------------------------------------------------------------------------------------------
# routes
# -------------------------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    """The web page (self-contained: no external assets)."""
    return HTMLResponse(page_html(), headers={
        "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                   "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"})


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the model is loaded and the server is not shutting down."""
    state: ServerState = request.app.state.serve
    if state.draining:
        return error(503, "shutting down")
    return JSONResponse({"status": "ready", "backend": state.model.backend_name})


async def model_info(request: Request) -> Response:
    """Classes, palette, config, backend, input channels, default inference mode and the limits."""
    state: ServerState = request.app.state.serve
    options = state.options
    limits = {"max_image_pixels": options.max_image_pixels, "max_body_bytes": options.max_body_bytes,
              "max_batch": options.max_batch, "max_queue": options.max_queue, "max_views": options.max_views}
    return JSONResponse({**state.model.describe(), "limits": limits})


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    state: ServerState = request.app.state.serve
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def predict(request: Request) -> Response:
    """Segment the image sent (raw body or multipart field ``image``); see docs/serving.md."""
    state: ServerState = request.app.state.serve
    if state.draining:
        return error(503, "shutting down", {"Retry-After": "1", "Connection": "close"})
    try:
        ticket = state.batcher.admit()
    except QueueFull as exc:
        return error(503, str(exc), {"Retry-After": str(exc.retry_after)})
    try:
        return await _predict(request, state, ticket)
    except Rejected as exc:
        return error(exc.status, exc.reason, exc.headers)
    except ClientDisconnect:
        return error(CLIENT_CLOSED, "the client closed the connection")
    except SemsegError as exc:  # bad options or an undecodable image: the request's fault
        return error(400, str(exc).splitlines()[0])
    finally:
        ticket.release()


async def _predict(request: Request, state: ServerState, ticket: Any) -> Response:
    model, options = state.model, state.options
    started = time.perf_counter()
    query = parse_query(request.query_params, model.default_mode, model.crop_size, model.stride, options.max_views)
    body = await read_body(request.stream(), request.headers.get("content-length"), options.max_body_bytes,
                           options.read_timeout)
    data = await image_from_body(request.headers, body)
    del body
    header = inspect_image(data, model.in_channels, options.max_image_pixels)
    check_mode_pixels(header.height, header.width, query.mode, options.max_image_pixels)
    image = await asyncio.to_thread(decode_upload, data, header.format, model.in_channels, state.workdir)
    del data
    decoded = time.perf_counter()
    try:
        result = await state.batcher.predict(ticket, image, query.mode)
    except SemsegError as exc:
        return error(500, f"the model failed: {str(exc).splitlines()[0]}")
    timings = {"decode_ms": 1000 * (decoded - started), "queue_ms": 1000 * result.queued,
               "inference_ms": 1000 * result.inference}
    headers = {"X-Batch-Size": str(result.batch_size), "X-Inference-Ms": f"{timings['inference_ms']:.1f}"}
    if query.format == "png":
        content = await asyncio.to_thread(mask_png, result.mask, model.palette)
        return Response(content, media_type="image/png", headers=headers)
    if query.format == "overlay":
        content = await asyncio.to_thread(overlay_bytes, image, result.mask, model.palette, query.alpha,
                                          query.encoding, model.in_channels)
        return Response(content, media_type=f"image/{query.encoding}", headers=headers)
    answer = _json_answer(model, result.mask, query.mode.describe(), result.batch_size)
    if query.include_mask:
        answer["mask_png"] = base64.b64encode(await asyncio.to_thread(mask_png, result.mask, model.palette)).decode()
    answer["timings"] = {**{k: round(v, 2) for k, v in timings.items()},
                         "total_ms": round(1000 * (time.perf_counter() - started), 2)}
    return JSONResponse(answer, headers=headers)


def _json_answer(model: ServedModel, mask: np.ndarray, mode: str, batch_size: int) -> dict[str, Any]:
    """Image size, the class list and each class's pixel count (and share, for the present ones)."""
    counts = np.bincount(mask.ravel(), minlength=len(model.class_names))
    total = int(mask.size)
    present = [{"id": int(c), "name": model.class_names[c] if c < len(model.class_names) else str(c),
                "pixels": int(n), "share": round(float(n) / total, 6),
                "color": [int(v) for v in model.palette[min(c, len(model.palette) - 1)]]}
               for c, n in enumerate(counts) if n]
    present.sort(key=lambda row: -row["pixels"])
    return {"width": int(mask.shape[1]), "height": int(mask.shape[0]), "class_names": list(model.class_names),
            "counts": [int(n) for n in counts], "present": present, "mode": mode, "batch_size": batch_size}


# -------------------------------------------------------------------------------------------------
# the application
# -------------------------------------------------------------------------------------------------


def create_app(model: ServedModel, options: ServeOptions) -> Any:
    """The ASGI application serving ``model`` under ``options`` (the model is already loaded)."""
    state = ServerState(model, options)
    # Pillow's own decompression-bomb guard, a second line behind the header check
    Image.MAX_IMAGE_PIXELS = options.max_image_pixels

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.workdir = tempfile.mkdtemp(prefix="semseg-serve-")  # private (0700): decoded uploads only
        state.batcher.start()
        try:
            yield
        finally:
            state.draining = True
            await state.batcher.stop()
            shutil.rmtree(state.workdir, ignore_errors=True)

    routes = [Route("/", index, methods=["GET"]), Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"]), Route("/v1/model", model_info, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"]), Route("/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.serve = state
    return Guard(app, state)
