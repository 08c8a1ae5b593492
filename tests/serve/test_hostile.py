"""Malformed and hostile requests against the real server: each gets its documented answer
(docs/serving.md), slow and vanishing clients are cut off, a full queue answers 503, and the server
then still answers a good request with its memory back near where it started."""
from __future__ import annotations

import io
import socket
import struct
import time
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.helpers.server import metric, png_bytes, rgb, rss_kib, start_server

httpx = pytest.importorskip("httpx")

MAX_BODY = 300_000
MAX_PIXELS = 250_000
READ_TIMEOUT = 2
MAX_QUEUE = 3


@pytest.fixture(scope="module")
def server(served_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    running = start_server(folder, "--weights", served_run / "model_best.safetensors", "--max-body-bytes", MAX_BODY,
                           "--max-image-pixels", MAX_PIXELS, "--read-timeout", READ_TIMEOUT, "--max-queue", MAX_QUEUE,
                           "--max-batch", 2)
    yield running
    assert running.terminate() == 0


# -------------------------------------------------------------------------------------------------
# building hostile bodies
# -------------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A valid-looking gray PNG header of ``width``×``height`` whose data holds only ``rows`` rows."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data = _chunk(b"IDAT", zlib.compress(b"\0" * (rows * (width + 1))))
    return b"\x89PNG\r\n\x1a\n" + header + data + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to claim ``width``×``height``."""
    data = bytearray(png_bytes(rgb(0, (16, 16)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_png() -> bytes:
    """6000×6000 one-bit pixels (36 MP) compressed into a few kilobytes."""
    out = io.BytesIO()
    Image.new("1", (6000, 6000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def tiff(bands: int) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, np.zeros((16, 16, bands), np.uint8), planarconfig="contig")
    return out.getvalue()


def corrupt_crc(data: bytes) -> bytes:
    at = data.index(b"IDAT")
    body = bytearray(data)
    body[at + 6] ^= 0xFF
    return bytes(body)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> tuple[bytes, str]:
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def http(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
         content_length: bool = True) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"
    if content_length and body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def post(body: bytes, content_type: str | None = "image/png", query: str = "") -> bytes:
    return http("POST", f"/predict{query}", body, {"Content-Type": content_type} if content_type else {})


def chunked(body: bytes, piece: int = 65536) -> bytes:
    out = b""
    for start in range(0, len(body), piece):
        part = body[start:start + piece]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def send_raw(server, request: bytes, timeout: float = 30) -> tuple[int | None, bytes]:
    """Send bytes, read the answer until the server closes: (status or None if it closed silently, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        try:
            conn.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) and closed before the whole body was sent
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    if not received.startswith(b"HTTP/1."):
        return None, received
    return int(received.split(b" ", 2)[1]), received.partition(b"\r\n\r\n")[2]


# -------------------------------------------------------------------------------------------------
# the corpus: (name, request bytes, expected status)
# -------------------------------------------------------------------------------------------------

GOOD_PNG = png_bytes(rgb(0))
GOOD_JPEG = png_bytes(rgb(0), "JPEG")
TWO_FILES = multipart([("image", "a.png", GOOD_PNG), ("image", "b.png", GOOD_PNG)])
NO_IMAGE_FIELD = multipart([("picture", "a.png", GOOD_PNG)])
TEXT_FIELD = multipart([("image", None, b"just text")])

CORPUS = [
    ("truncated PNG", post(GOOD_PNG[: len(GOOD_PNG) // 2]), 400),
    ("truncated JPEG", post(GOOD_JPEG[: len(GOOD_JPEG) // 2], "image/jpeg"), 400),
    ("PNG with a corrupt data CRC", post(corrupt_crc(GOOD_PNG)), 400),
    ("PNG signature only", post(GOOD_PNG[:8]), 400),
    ("PNG claiming zero width", post(png_claiming(0, 48)), 400),
    ("decompression bomb PNG (36 MP in KB)", post(bomb_png()), 413),
    ("PNG header claiming 100000x100000", post(png_claiming(100_000, 100_000)), 413),
    ("JPEG header claiming 30000x30000", post(jpeg_claiming(30_000, 30_000), "image/jpeg"), 413),
    ("empty body", post(b""), 400),
    ("random bytes", post(np.random.default_rng(0).bytes(5000)), 400),
    ("GIF image", post(png_bytes(rgb(0), "GIF"), "image/gif"), 400),
    ("SVG sent as PNG", post(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), 400),
    ("5-band TIFF", post(tiff(5), "image/tiff"), 400),
    ("2-band TIFF", post(tiff(2), "image/tiff"), 400),
    ("text/plain", post(GOOD_PNG, "text/plain"), 400),
    ("application/json", post(b'{"path": "/etc/passwd"}', "application/json"), 400),
    ("form-urlencoded (curl --data default)", post(GOOD_PNG, "application/x-www-form-urlencoded"), 400),
    ("no content type", post(GOOD_PNG, None), 400),
    ("multipart with two files", http("POST", "/predict", TWO_FILES[0], {"Content-Type": TWO_FILES[1]}), 400),
    ("multipart without an image field", http("POST", "/predict", NO_IMAGE_FIELD[0],
                                              {"Content-Type": NO_IMAGE_FIELD[1]}), 400),
    ("multipart image as a text field", http("POST", "/predict", TEXT_FIELD[0], {"Content-Type": TEXT_FIELD[1]}), 400),
    ("multipart without a boundary", post(b"--x\r\n\r\n", "multipart/form-data"), 400),
    ("body over the limit (Content-Length)", post(b"\0" * (MAX_BODY + 1)), 413),
    ("body over the limit (chunked)", http("POST", "/predict", chunked(b"\0" * (MAX_BODY + 70_000)),
                                          {"Content-Type": "image/png", "Transfer-Encoding": "chunked"},
                                          content_length=False), 413),
    ("Content-Length that is not a number", http("POST", "/predict", GOOD_PNG,
                                                 {"Content-Type": "image/png", "Content-Length": "abc"},
                                                 content_length=False), 400),
    ("broken chunked encoding", http("POST", "/predict", b"zz\r\nhello\r\n0\r\n\r\n",
                                     {"Content-Type": "image/png", "Transfer-Encoding": "chunked"},
                                     content_length=False), 400),
    ("huge header (64 KiB)", http("GET", "/healthz", headers={"X-Big": "a" * 65536}), 431),
    ("many headers (20 KiB)", http("GET", "/healthz", headers={f"X-{i}": "a" * 30 for i in range(600)}), 431),
    ("malformed request line", b"GARBAGE\r\n\r\n", 400),
    ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    ("GET /predict", http("GET", "/predict"), 405),
    ("PUT /predict", post(GOOD_PNG).replace(b"POST", b"PUT", 1), 405),
    ("DELETE /", http("DELETE", "/"), 405),
    ("POST /metrics", http("POST", "/metrics", b"x"), 405),
    ("path traversal", http("GET", "/../../etc/passwd"), 404),
    ("encoded path traversal", http("GET", "/%2e%2e/%2e%2e/etc/passwd"), 404),
    ("traversal below a route", http("GET", "/predict/..%2f..%2fetc%2fpasswd"), 404),
    ("absolute file URL as target", http("GET", "file:///etc/passwd"), 404),
    ("a query naming a file", post(GOOD_PNG, query="?file=/etc/passwd"), 400),
    ("a scale beyond the limit", post(GOOD_PNG, query="?scales=100"), 400),
    ("more views than allowed", post(GOOD_PNG, query="?scales=1,1,1,1,1&flip=1"), 400),
    ("a scale that exceeds the pixel limit", post(png_bytes(np.zeros((400, 500, 3), np.uint8)), query="?scales=2"), 400),
    ("alpha out of range", post(GOOD_PNG, query="?format=overlay&alpha=2"), 400),
    ("an option given twice", post(GOOD_PNG, query="?format=png&format=json"), 400),
    ("not a flag", post(GOOD_PNG, query="?flip=maybe"), 400),
]


@pytest.mark.parametrize("name, request_bytes, status", CORPUS, ids=[c[0] for c in CORPUS])
def test_each_hostile_request_gets_its_documented_status(server, name, request_bytes, status):
    got, body = send_raw(server, request_bytes)
    assert got == status, (name, body[:300])
    if status in (400, 413) and body.startswith(b"{"):
        import json

        reason = json.loads(body)["error"]
        assert reason and "\n" not in reason and "/tmp" not in reason


def test_the_corpus_is_large_enough_and_the_server_survives_it(server):
    assert len(CORPUS) >= 30
    good = httpx.post(server.url("/predict"), content=GOOD_PNG, headers={"Content-Type": "image/png"}, timeout=60)
    assert good.status_code == 200 and Image.open(io.BytesIO(good.content)).size == (64, 48)


def test_a_slow_upload_gets_408_and_a_silent_client_is_disconnected(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(post(GOOD_PNG)[:-len(GOOD_PNG) // 2])  # headers and half the body, then nothing
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in answer
    assert time.monotonic() - started < 20
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a head that never ends
        assert conn.recv(4096) == b""  # closed without an answer
    assert time.monotonic() - started < 20
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"GET /hea")  # trickled slowly: the deadline is for the whole head
        for piece in (b"lthz HTTP/1.1\r\n", b"Host: 127", b".0.0.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
            time.sleep(0.45)
            try:
                conn.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        assert conn.recv(4096) == b""
    assert time.monotonic() - started < 20


def test_a_client_vanishing_mid_upload_frees_its_place(server):
    closed = 'semseg_requests_total{path="/predict",status="499"}'

    def count() -> float:
        text = httpx.get(server.url("/metrics")).text
        return metric(text, closed) if closed in text else 0.0

    before = count()
    for index in range(MAX_QUEUE + 2):  # more than the queue holds: each place must come back
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(post(GOOD_PNG)[:200])
        deadline = time.monotonic() + 20
        while count() < before + index + 1:
            assert time.monotonic() < deadline, f"disconnect {index + 1} was not noticed"
            time.sleep(0.05)
    assert metric(httpx.get(server.url("/metrics")).text, "semseg_queue_depth") == 0
    good = httpx.post(server.url("/predict"), content=GOOD_PNG, headers={"Content-Type": "image/png"}, timeout=60)
    assert good.status_code == 200


def test_a_full_queue_answers_503_with_retry_after(server):
    holders = []
    try:
        for _ in range(MAX_QUEUE):  # each admitted request holds its place while its body trickles in
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            conn.sendall(post(GOOD_PNG)[:300])
            holders.append(conn)
        deadline = time.monotonic() + READ_TIMEOUT
        while metric(httpx.get(server.url("/metrics")).text, "semseg_queue_depth") < MAX_QUEUE:
            assert time.monotonic() < deadline, "the slow uploads were not admitted"
            time.sleep(0.05)
        refused = httpx.post(server.url("/predict"), content=GOOD_PNG, headers={"Content-Type": "image/png"})
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1 and "queue full" in refused.json()["error"]
        assert httpx.get(server.url("/healthz")).status_code == 200  # the other endpoints still answer
    finally:
        for conn in holders:
            conn.close()
    deadline = time.monotonic() + 20
    while metric(httpx.get(server.url("/metrics")).text, "semseg_queue_depth") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    good = httpx.post(server.url("/predict"), content=GOOD_PNG, headers={"Content-Type": "image/png"}, timeout=60)
    assert good.status_code == 200


def test_memory_returns_near_its_baseline_after_the_corpus(server):
    def good() -> None:
        answer = httpx.post(server.url("/predict"), content=GOOD_PNG, headers={"Content-Type": "image/png"}, timeout=60)
        assert answer.status_code == 200

    for _ in range(3):
        good()
    baseline = rss_kib(server.process.pid)
    for _ in range(2):
        for _, request_bytes, _ in CORPUS:
            send_raw(server, request_bytes)
    good()
    after = rss_kib(server.process.pid)
    assert after - baseline < 64 * 1024, f"RSS grew from {baseline} KiB to {after} KiB"
