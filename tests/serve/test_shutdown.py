"""The exported model served by Paddle Inference in two worker processes: the same masks as
``semseg predict`` with that backend; SIGTERM lets an in-flight request finish, refuses new
connections and exits 0."""
from __future__ import annotations

import io
import signal
import socket
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import invoke
from tests.helpers.server import metric, png_bytes, rgb, start_server

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def export_dir(served_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "exported"
    result = invoke("export", "--weights", served_run / "model_best.safetensors", "--output", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("drain"), "--backend", "paddle-inference", "--model-dir", export_dir,
                           "--read-timeout", 30, "--shutdown-timeout", 30, "--workers", 2)
    yield running
    running.terminate()


def test_masks_of_the_export_equal_semseg_predict_with_that_backend(server, export_dir, tmp_path):
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    Image.fromarray(rgb(11)).save(images[0])
    Image.fromarray(rgb(12, (36, 52))).save(images[1])
    result = invoke("predict", *map(str, images), "--backend", "paddle-inference", "--model-dir", export_dir,
                    "--output", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    assert "in 2 worker processes" in server.log_text()
    info = httpx.get(server.url("/v1/model")).json()
    assert info["backend"] == "paddle-inference" and info["config"] == "exported"
    for image in images:
        answer = httpx.post(server.url("/predict"), content=image.read_bytes(), headers={"Content-Type": "image/png"},
                            timeout=60)
        assert answer.status_code == 200
        expected = np.asarray(Image.open(tmp_path / "masks" / f"{image.stem}.png"))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), expected)


def test_sigterm_finishes_the_request_in_flight_then_exits_0(server):
    body = png_bytes(rgb(13))
    expected = httpx.post(server.url("/predict"), content=body, headers={"Content-Type": "image/png"}, timeout=60)
    request = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nConnection: close\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    half = len(request) - len(body) // 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
        conn.sendall(request[:half])  # in flight: admitted, its body still arriving
        deadline = time.monotonic() + 30
        while metric(httpx.get(server.url("/metrics")).text, "semseg_queue_depth") < 1:  # per worker: one holds it
            assert time.monotonic() < deadline, "the request was not admitted"
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while True:  # the listening socket closes: new connections are refused
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert server.process.poll() is None  # still draining
        conn.sendall(request[half:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert answer.partition(b"\r\n\r\n")[2] == expected.content
    assert server.process.wait(60) == 0
    log = server.log_text()
    assert log.count("Finished server process") == 2 and "Termination signal" not in log
