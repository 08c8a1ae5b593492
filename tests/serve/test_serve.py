"""``semseg serve`` as a real process: the same masks as ``semseg predict``, answers in every format,
micro-batching under concurrency, the bearer token, the limits, and the web page in Chromium."""
from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import invoke
from tests.inference.test_report import CHROMIUM
from tests.helpers.server import metric, png_bytes, rgb, start_server

httpx = pytest.importorskip("httpx")

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 400_000
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def server(served_run, tmp_path_factory):
    """The checkpoint served with a token, batching up to 8 images within 100 ms."""
    folder = tmp_path_factory.mktemp("serve")
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    running = start_server(folder, "--weights", served_run / "model_best.safetensors", "--token-file", token_file,
                           "--max-batch", 8, "--max-wait-ms", 100, "--max-body-bytes", MAX_BODY,
                           "--max-image-pixels", MAX_PIXELS, headers=AUTH)
    yield running
    assert running.terminate() == 0


def post(server, body: bytes, query: str = "", content_type: str = "image/png", headers=AUTH, **kwargs):
    return httpx.post(server.url(f"/predict{query}"), content=body,
                      headers={"Content-Type": content_type, **(headers or {})}, timeout=60, **kwargs)


def predicted(served_run, images: list[Path], out: Path, *options: str) -> list[Image.Image]:
    """The masks ``semseg predict`` writes for ``images`` (the real command line, in this process)."""
    result = invoke("predict", *map(str, images), "--weights", served_run / "model_best.safetensors", "--output", out,
                    *options)
    assert result.exit_code == 0, result.output
    return [Image.open(out / f"{image.stem}.png") for image in images]


def test_healthz_is_open_and_every_other_endpoint_needs_the_token(server):
    assert httpx.get(server.url("/healthz")).json() == {"status": "ok"}
    for path in ("/readyz", "/v1/model", "/metrics"):
        missing = httpx.get(server.url(path))
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert "bearer token" in missing.json()["error"]
        wrong = httpx.get(server.url(path), headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert wrong.status_code == 401
        assert httpx.get(server.url(path), headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert httpx.get(server.url(path), headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert post(server, png_bytes(rgb(0)), headers=None).status_code == 401
    assert post(server, png_bytes(rgb(0)), headers={"Authorization": "Bearer"}).status_code == 401
    page = httpx.get(server.url("/"))  # the static page holds no data: it asks for the token itself
    assert page.status_code == 200 and "<title>semseg serve</title>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_model_endpoint_describes_the_checkpoint(server, served_run):
    from semsegpaddle.core.engine.checkpoint import read_metadata

    info = httpx.get(server.url("/v1/model"), headers=AUTH).json()
    meta = read_metadata(served_run / "model_best.safetensors")
    assert info["class_names"] == meta["class_names"] and info["palette"] == meta["palette"]
    assert info["backend"] == "dynamic" and info["input_channels"] == 3 and info["default_mode"] == "whole"
    assert info["config"] == "model_best.safetensors (stored config)"
    assert info["limits"]["max_image_pixels"] == MAX_PIXELS and info["limits"]["max_body_bytes"] == MAX_BODY


def test_masks_equal_semseg_predict_for_raw_and_multipart_uploads(server, served_run, tmp_path):
    images = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"]
    Image.fromarray(rgb(1)).save(images[0])
    Image.fromarray(rgb(2, (40, 56))).save(images[1], quality=85)
    Image.fromarray(rgb(3)[:, :, 0]).save(images[2])  # gray: read as RGB by both
    expected = predicted(served_run, images, tmp_path / "masks")
    raw = post(server, images[0].read_bytes())
    multipart = httpx.post(server.url("/predict"), files={"image": ("b.jpg", images[1].read_bytes(), "image/jpeg")},
                           headers=AUTH, timeout=60)
    octets = post(server, images[2].read_bytes(), content_type="application/octet-stream")
    for answer, mask in zip((raw, multipart, octets), expected):
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        got = Image.open(io.BytesIO(answer.content))
        assert got.mode == "P" and got.getpalette() == mask.getpalette()
        np.testing.assert_array_equal(np.asarray(got), np.asarray(mask))


def test_mode_options_match_the_same_options_of_predict(server, served_run, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(rgb(4, (44, 60))).save(image)
    expected = predicted(served_run, [image], tmp_path / "masks", "--flip", "--scales", "0.75,1.25")[0]
    answer = post(server, image.read_bytes(), "?flip=1&scales=0.75,1.25")
    assert answer.status_code == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), np.asarray(expected))
    plain = np.asarray(Image.open(io.BytesIO(post(server, image.read_bytes()).content)))
    assert (plain != np.asarray(expected)).any()  # the options did change the prediction


def test_json_counts_and_overlay_match_the_mask_and_predicts_overlay(server, served_run, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(rgb(5)).save(image)
    mask = np.asarray(predicted(served_run, [image], tmp_path / "masks", "--overlay")[0])
    answer = post(server, image.read_bytes(), "?format=json&include_mask=1")
    assert answer.status_code == 200
    data = answer.json()
    classes = httpx.get(server.url("/v1/model"), headers=AUTH).json()["class_names"]
    assert data["class_names"] == classes and (data["width"], data["height"]) == (64, 48)
    assert data["counts"] == np.bincount(mask.ravel(), minlength=len(classes)).tolist()
    assert sum(row["pixels"] for row in data["present"]) == mask.size
    assert abs(sum(row["share"] for row in data["present"]) - 1) < 1e-4
    assert set(data["timings"]) == {"decode_ms", "queue_ms", "inference_ms", "total_ms"}

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(data["mask_png"])))), mask)
    overlay = post(server, image.read_bytes(), "?format=overlay&encoding=png")
    assert overlay.headers["content-type"] == "image/png"
    expected = np.asarray(Image.open(tmp_path / "masks" / "a_overlay.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(overlay.content))), expected)
    jpeg = post(server, image.read_bytes(), "?format=overlay&alpha=0.3")
    assert jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).size == (64, 48)


def test_concurrent_requests_are_batched_and_batching_changes_no_mask(server):
    bodies = [png_bytes(rgb(100 + i)) for i in range(8)]
    alone = [np.asarray(Image.open(io.BytesIO(post(server, body).content))) for body in bodies]
    before = httpx.get(server.url("/metrics"), headers=AUTH).text
    batched_before = metric(before, "semseg_batch_size_count") - metric(before, 'semseg_batch_size_bucket{le="1"}')
    for _ in range(3):  # a loaded machine may serialise one round; three rounds all serialised would be a bug
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: post(server, body), bodies))
        assert all(a.status_code == 200 for a in answers)
        for answer, expected in zip(answers, alone):
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), expected)
        text = httpx.get(server.url("/metrics"), headers=AUTH).text
        if metric(text, "semseg_batch_size_count") - metric(text, 'semseg_batch_size_bucket{le="1"}') > batched_before:
            break
    assert metric(text, "semseg_batch_size_count") - metric(text, 'semseg_batch_size_bucket{le="1"}') > batched_before
    assert metric(text, 'semseg_requests_total{path="/predict",status="200"}') >= 2 * len(bodies)
    assert metric(text, "semseg_queue_depth") == 0


def test_body_and_pixel_limits_answer_413_and_bad_requests_400(server):
    too_long = post(server, b"\0" * (MAX_BODY + 1))
    assert too_long.status_code == 413 and f"at most {MAX_BODY}" in too_long.json()["error"]
    huge = png_bytes(np.zeros((1000, 1001), np.uint8))  # small file, 1001000 pixels
    assert len(huge) < MAX_BODY
    answer = post(server, huge)
    assert answer.status_code == 413 and "--max-image-pixels" in answer.json()["error"]
    for body, query, content_type, words in [
        (b"not an image at all", "", "image/png", "not a readable PNG"),
        (png_bytes(rgb(0)), "", "text/plain", "content type 'text/plain' is not accepted"),
        (png_bytes(rgb(0)), "?format=gif", "image/png", "format='gif' is invalid"),
        (png_bytes(rgb(0)), "?mode=slide", "image/png", "mode=slide needs eval.crop_size"),
    ]:
        bad = post(server, body, query, content_type)
        assert bad.status_code == 400, (query, bad.text)
        reason = bad.json()["error"]
        assert words in reason and "\n" not in reason


def test_the_page_segments_an_upload_in_a_real_browser(server, tmp_path):
    """Chromium: the token asked for, an image picked, the overlay and legend shown; a screenshot kept."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} not found (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser driver: the playwright Python package is not installed (pip install -e '.[test]')")
    image = tmp_path / "photo.png"
    Image.fromarray(rgb(7)).save(image)
    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            viewport={"width": 1000, "height": 700},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.url("/"), wait_until="load")
            page.locator("#auth").wait_for(state="visible", timeout=20_000)  # the server has a token
            page.fill("#token", TOKEN)
            page.set_input_files("#file", str(image))
            page.locator("#legend li").first.wait_for(timeout=60_000)
            rows = page.locator("#legend li").all_inner_texts()
            size = page.evaluate("[document.getElementById('mask').naturalWidth, document.getElementById('mask').naturalHeight]")
            page.locator("#opacity").fill("80")
            opacity = page.evaluate("getComputedStyle(document.getElementById('mask')).opacity")
            download = page.get_attribute("#download", "href")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert size == [64, 48] and float(opacity) == pytest.approx(0.8)
    assert download.startswith("blob:") and rows and all("%" in row for row in rows)
    shares = [float(row.split()[-2]) for row in rows]
    assert abs(sum(shares) - 100) < 0.5
    assert Image.open(shot).size[0] == 1000
    print(f"screenshot: {shot}")
