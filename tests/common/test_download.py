"""fetch_weights against a real HTTP server on 127.0.0.1: cache layout, no second request,
resuming with Range, atomic final names, and one-line errors (404, wrong hash, unreachable)."""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from semsegpaddle.core.common.download import fetch_weights, weights_cache_path
from semsegpaddle.core.common.errors import SemsegError

REPO = Path(__file__).resolve().parents[2]
SOURCE = bytes(range(256)) * 1000  # 256,000 bytes: several read chunks
SOURCE_SHA = hashlib.sha256(SOURCE).hexdigest()


@dataclass
class Behaviour:
    """What the server does; the handler reads it and records every request."""

    files: dict = field(default_factory=lambda: {"/w/model.pdparams": SOURCE, "/v/model.pdparams": SOURCE[::-1]})
    drop_after: int | None = None  # send this many body bytes, then cut the connection...
    drops: int = 0  # ...for this many requests
    ignore_range: bool = False  # always answer 200 with the whole file
    wrong_content: bytes | None = None  # served instead of the file
    stall: threading.Event | None = None  # after some bytes, wait for this event
    requests: list = field(default_factory=list)  # (path, Range header or None)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        plan = self.server.behaviour
        plan.requests.append((self.path, self.headers.get("Range")))
        if self.path not in plan.files:
            self.send_error(404, "Not Found")
            return
        body = plan.wrong_content if plan.wrong_content is not None else plan.files[self.path]
        start = 0
        requested = self.headers.get("Range")
        if requested and not plan.ignore_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if plan.drops > 0 and plan.drop_after is not None:
            plan.drops -= 1
            self.wfile.write(payload[: plan.drop_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if plan.stall is not None:
            self.wfile.write(payload[:1000])
            self.wfile.flush()
            plan.stall.wait(10)
            return
        self.wfile.write(payload)


@pytest.fixture
def server(monkeypatch):
    """A ThreadingHTTPServer on a free port of 127.0.0.1; yields (base URL, Behaviour)."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.behaviour
    finally:
        if httpd.behaviour.stall is not None:
            httpd.behaviour.stall.set()
        httpd.shutdown()
        httpd.server_close()


def fetch(url, cache, **options):
    return fetch_weights(url, cache_dir=cache, progress=False, timeout=5, **options)


def assert_nothing_final(path: Path) -> None:
    assert not path.exists()


def test_download_cache_layout_and_no_second_request(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    path = fetch(url, tmp_path, sha256=SOURCE_SHA)
    assert path == tmp_path / "weights" / hashlib.sha256(url.encode()).hexdigest()[:16] / "model.pdparams"
    assert path.read_bytes() == SOURCE
    assert not path.with_name("model.pdparams.part").exists()
    assert plan.requests == [("/w/model.pdparams", None)]
    assert fetch(url, tmp_path, sha256=SOURCE_SHA) == path
    assert fetch(url, tmp_path) == path
    assert len(plan.requests) == 1  # served from the cache both times


def test_same_file_name_from_two_urls_does_not_collide(server, tmp_path):
    base, _ = server
    first = fetch(f"{base}/w/model.pdparams", tmp_path)
    second = fetch(f"{base}/v/model.pdparams", tmp_path)
    assert first.name == second.name == "model.pdparams" and first.parent != second.parent
    assert first.read_bytes() == SOURCE and second.read_bytes() == SOURCE[::-1]


def test_cache_folder_from_environment_and_default(monkeypatch, tmp_path):
    url = "https://example.org/zoo/resnet50.pdparams"
    folder = hashlib.sha256(url.encode()).hexdigest()[:16]
    monkeypatch.setenv("SEMSEG_CACHE", str(tmp_path / "env"))
    assert weights_cache_path(url) == tmp_path / "env" / "weights" / folder / "resnet50.pdparams"
    assert weights_cache_path(url, cache_dir=tmp_path / "arg").parent.parent.parent == tmp_path / "arg"
    monkeypatch.delenv("SEMSEG_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_cache_path(url) == tmp_path / "home" / ".cache" / "semsegpaddle" / "weights" / folder / "resnet50.pdparams"


def test_dropped_connection_resumes_with_range(server, tmp_path):
    base, plan = server
    plan.drop_after, plan.drops = 100_000, 1
    path = fetch(f"{base}/w/model.pdparams", tmp_path, sha256=SOURCE_SHA)
    assert plan.requests == [("/w/model.pdparams", None), ("/w/model.pdparams", "bytes=100000-")]
    assert path.read_bytes() == SOURCE


def test_later_call_resumes_the_part_file(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    plan.drop_after, plan.drops = 30_000, 3  # every connection of the first call drops
    with pytest.raises(SemsegError) as error:
        fetch(url, tmp_path)
    final = weights_cache_path(url, cache_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"cannot download {url}: the connection dropped after 90000 bytes")
    assert f"put the file at {final} to use it offline" in message and "\n" not in message
    assert_nothing_final(final)
    assert final.with_name("model.pdparams.part").read_bytes() == SOURCE[:90_000]
    assert [r for _, r in plan.requests] == [None, "bytes=30000-", "bytes=60000-"]

    assert fetch(url, tmp_path, sha256=SOURCE_SHA).read_bytes() == SOURCE
    assert plan.requests[-1] == ("/w/model.pdparams", "bytes=90000-") and len(plan.requests) == 4


def test_server_ignoring_range_starts_over(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    plan.ignore_range = True
    final = weights_cache_path(url, cache_dir=tmp_path)
    final.parent.mkdir(parents=True)
    final.with_name("model.pdparams.part").write_bytes(b"stale bytes of some earlier file")
    assert fetch(url, tmp_path, sha256=SOURCE_SHA).read_bytes() == SOURCE
    assert plan.requests == [("/w/model.pdparams", "bytes=32-")]


def test_part_file_longer_than_the_file_starts_over(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    final = weights_cache_path(url, cache_dir=tmp_path)
    final.parent.mkdir(parents=True)
    final.with_name("model.pdparams.part").write_bytes(b"x" * (len(SOURCE) + 5))  # answered with 416
    assert fetch(url, tmp_path).read_bytes() == SOURCE
    assert [r for _, r in plan.requests] == [f"bytes={len(SOURCE) + 5}-", None]


def test_http_404(server, tmp_path):
    base, plan = server
    url = f"{base}/missing/model.pdparams"
    with pytest.raises(SemsegError) as error:
        fetch(url, tmp_path)
    assert str(error.value) == f"cannot download {url}: HTTP 404 Not Found"
    final = weights_cache_path(url, cache_dir=tmp_path)
    assert_nothing_final(final)
    assert not final.with_name("model.pdparams.part").exists()


def test_wrong_content_for_sha256_is_removed(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    plan.wrong_content = b"not the weights you asked for" * 10
    with pytest.raises(SemsegError) as error:
        fetch(url, tmp_path, sha256=SOURCE_SHA.upper())
    actual = hashlib.sha256(plan.wrong_content).hexdigest()
    assert str(error.value) == (f"{url}: sha256 mismatch: expected {SOURCE_SHA}, got {actual} "
                                f"(the download was removed)")
    final = weights_cache_path(url, cache_dir=tmp_path)
    assert_nothing_final(final)
    assert not final.with_name("model.pdparams.part").exists()


def test_cached_copy_with_wrong_hash_is_fetched_again(server, tmp_path):
    base, plan = server
    url = f"{base}/w/model.pdparams"
    final = weights_cache_path(url, cache_dir=tmp_path)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"damaged")
    assert fetch(url, tmp_path).read_bytes() == b"damaged"  # no hash given: the copy is trusted
    assert plan.requests == []
    assert fetch(url, tmp_path, sha256=SOURCE_SHA).read_bytes() == SOURCE
    assert len(plan.requests) == 1


def test_unreachable_server_names_the_offline_path(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/zoo/model.pdparams"
    final = weights_cache_path(url, cache_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(SemsegError) as error:
        fetch(url, tmp_path)
    message = str(error.value)
    assert message.startswith(f"cannot download {url}: ") and "refused" in message.lower()
    assert message.endswith(f"put the file at {final} to use it offline") and "\n" not in message
    assert time.monotonic() - started < 5
    assert_nothing_final(final)


def test_read_timeout_is_bounded(server, tmp_path):
    base, plan = server
    plan.stall = threading.Event()
    url = f"{base}/w/model.pdparams"
    started = time.monotonic()
    with pytest.raises(SemsegError, match=r"connection dropped after \d+ bytes \(timed out\)"):
        fetch_weights(url, cache_dir=tmp_path, progress=False, timeout=0.3)
    assert time.monotonic() - started < 5
    assert_nothing_final(weights_cache_path(url, cache_dir=tmp_path))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/model.pdparams", "model.pdparams"])
def test_only_http_urls(tmp_path, url):
    with pytest.raises(SemsegError) as error:
        fetch(url, tmp_path)
    assert str(error.value) == (f"cannot download {url}: only http:// and https:// URLs are fetched "
                                f"(for a local file, give its path instead)")
    assert not (tmp_path / "weights").exists()


def test_url_without_file_name_and_bad_sha256(tmp_path):
    with pytest.raises(SemsegError, match=r"the URL names no file"):
        fetch("https://example.org/zoo/", tmp_path)
    with pytest.raises(SemsegError, match=r"invalid sha256 'abc': expected 64 hexadecimal digits"):
        fetch("https://example.org/zoo/model.pdparams", tmp_path, sha256="abc")
    assert not (tmp_path / "weights").exists()


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    base, _ = server
    fetch_weights(f"{base}/w/model.pdparams", cache_dir=tmp_path, timeout=5)
    captured = capsys.readouterr()
    assert captured.out == "" and "model.pdparams" in captured.err and "250k" in captured.err
    fetch_weights(f"{base}/v/model.pdparams", cache_dir=tmp_path, timeout=5, progress=False)
    assert capsys.readouterr().err == ""


def test_import_is_light():
    code = ("import sys\nimport semsegpaddle.core.common.download\n"
            "print(sorted(m for m in ('paddle', 'torch', 'tqdm', 'urllib.request') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
