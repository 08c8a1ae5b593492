"""The run report: a self-contained HTML page whose figures match the run's metrics."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from semsegpaddle.api import train
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.inference.segmenter import InferenceMode
from semsegpaddle.core.engine.report import REPORT, predict_split, report_run
from semsegpaddle.core.engine.report_html import SECTIONS
from semsegpaddle.core.plugin import manager as plugin_module

from tests.helpers.tiny import TINY_CONFIG, TinyPlugin
from tests.helpers.cli import invoke

CHROMIUM = Path("/usr/bin/chromium")
WORST = 3


class PageParser(HTMLParser):
    """Collects what the tests look at: sections, metric figures, sample figures, sources."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}  # id -> tags inside
        self.metrics: list[tuple[dict[str, str], str]] = []  # (attributes, text) of data-metric elements
        self.cells: list[tuple[dict[str, str], str]] = []  # confusion-matrix cells
        self.samples: list[list[dict[str, str]]] = []  # per sample figure, its <img> attributes
        self.sources: list[str] = []  # every src / href
        self.tags: list[str] = []
        self._section: str | None = None
        self._capture: tuple[str, dict[str, str]] | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "section":
            self._section = a["id"]
            self.sections[a["id"]] = []
        elif self._section:
            self.sections[self._section].append(tag)
        if tag == "figure" and "sample" in a.get("class", ""):
            self.samples.append([])
        if tag == "img" and self._section == "worst-images":
            self.samples[-1].append(a)
        self.sources += [v for k, v in a.items() if k in ("src", "href")]
        if "data-metric" in a:
            self._capture, self._text = ("metric", a), ""
        elif "data-row" in a:
            self._capture, self._text = ("cell", a), ""

    def handle_data(self, data):
        if self._capture:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        if self._capture:
            kind, attrs = self._capture
            (self.metrics if kind == "metric" else self.cells).append((attrs, self._text.strip()))
            self._capture = None


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def as_shown(key, value):
    """Kappa is shown as is, every other figure as a percentage."""
    return ("-" if value is None else f"{value:.4f}") if key == "kappa" else pct(value)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step run of the tiny model (6 validation images) and its report with the 3 worst images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test")])
    plugin_module.reset_plugins(state)
    try:
        run = tmp_path_factory.mktemp("run")
        data = json.loads(json.dumps(TINY_CONFIG))
        data["train"].update(iters=3, log_interval=1)
        data["dataset"]["count"] = 6
        data["runtime"]["output_dir"] = str(run)
        train(config_from_dict(data))
        done = report_run(run, worst=WORST)
        yield run, done
    finally:
        plugin_module.reset_plugins(None)


def test_report_holds_every_section_and_matches_metrics_json(tiny_run):
    run, done = tiny_run
    assert done.path == run / REPORT and done.path.is_file()
    page = parse(done.path)
    assert list(page.sections) == list(SECTIONS)
    assert all("h2" in tags for tags in page.sections.values())
    assert "svg" in page.sections["per-class-iou"] and "svg" in page.sections["confusion-matrix"]
    assert page.sections["curves"].count("svg") == 3  # loss, learning rate, validation IoU
    # self-contained: nothing is fetched
    assert "script" not in page.tags and "link" not in page.tags
    assert page.sources and all(s.startswith("data:image/png;base64,") for s in page.sources)

    saved = json.loads((run / "metrics.json").read_text())
    shown = {}
    for attrs, text in page.metrics:
        shown.setdefault((attrs["data-metric"], attrs.get("data-class")), []).append(text)
    summary = [k for k, v in saved.items() if k != "pixels" and not isinstance(v, (dict, list))]
    assert {"mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU"} <= set(summary)
    for key in summary:
        assert shown.pop((key, None)) == [as_shown(key, saved[key])], key
    for name, scores in saved["per_class"].items():
        iou = shown.pop(("IoU", name))  # in the table and beside its bar
        assert set(iou) == {pct(scores["IoU"])} and len(iou) == (2 if scores["IoU"] is not None else 1), name
        for key in set(scores) - {"IoU"}:
            assert shown.pop((key, name)) == [as_shown(key, scores[key])], (name, key)
    assert shown == {}  # no figure without its counterpart in metrics.json
    # the confusion matrix rows are normalised: the diagonal is each class's accuracy
    diagonal = {int(a["data-row"]): t for a, t in page.cells if a["data-row"] == a["data-col"]}
    for i, scores in enumerate(saved["per_class"].values()):
        expected = "0.0" if scores["accuracy"] is None else f"{100 * scores['accuracy']:.1f}"
        assert diagonal[i] == expected
    rows = {}
    for a, t in page.cells:
        rows.setdefault(a["data-row"], []).append(float(t))
    assert all(sum(r) == pytest.approx(100, abs=0.2) or sum(r) == 0 for r in rows.values())


def test_report_embeds_the_worst_images(tiny_run):
    run, _ = tiny_run
    page = parse(run / REPORT)
    assert len(page.samples) == WORST
    for images in page.samples:
        assert [i["alt"].split(" of ")[0] for i in images] == ["input", "ground truth", "prediction", "errors"]
        for img in images:
            data = base64.b64decode(img["src"].split(",", 1)[1])
            picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (32, 32, 3)  # stored at the image's size, shown enlarged
            assert (img["width"], img["height"]) == ("128", "128")
    text = (run / REPORT).read_text()
    scores = [float(text.split(f"#{k} ", 1)[1].split("image mIoU ", 1)[1].split(" %")[0]) for k in range(1, WORST + 1)]
    assert scores == sorted(scores)


class StoredPredictions:
    """A segmenter returning fixed predictions per image (found by the image's first pixel)."""

    mode = InferenceMode()

    def __init__(self, predictions):
        self.predictions = predictions

    def masks(self, images):
        return np.stack([self.predictions[int(image[0, 0, 0])] for image in images])


class Labels:
    num_classes, ignore_index, class_names = 3, 255, ("a", "b", "c")

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return np.full((*self.labels[index].shape, 3), index, np.uint8), self.labels[index]

    def describe(self, index):
        return f"image {index}"


def test_worst_images_are_ranked_by_image_miou_and_the_matrix_sums_all():
    labels = [np.array([[0, 0], [1, 1]]), np.array([[0, 0], [1, 255]]), np.array([[2, 2], [2, 2]]),
              np.array([[0, 1], [2, 0]])]
    predictions = [np.array([[0, 0], [1, 1]]),   # perfect: mIoU 1
                   np.array([[0, 1], [0, 0]]),   # ignore pixel not counted: IoU 0 (class 0 1/3, class 1 0) -> 1/6
                   np.array([[2, 2], [2, 0]]),   # class 2: 3/4, class 0: 0 -> 3/8
                   np.array([[1, 0], [0, 2]])]   # every pixel wrong: 0
    matrix, worst = predict_split(StoredPredictions(predictions), Labels(labels), worst=3, batch_size=2,
                                  progress=False)
    assert [s.name for s in worst] == ["image 3", "image 1", "image 2"]
    assert [s.miou for s in worst] == pytest.approx([0.0, 1 / 6, 3 / 8])
    assert [s.pixel_error for s in worst] == pytest.approx([1.0, 2 / 3, 1 / 4])
    expected = np.zeros((3, 3), np.int64)
    for p, l in zip(predictions, labels):
        keep = l != 255
        np.add.at(expected, (l[keep], p[keep]), 1)
    assert np.array_equal(matrix.matrix, expected)
    _, by_error = predict_split(StoredPredictions(predictions), Labels(labels), worst=2, rank_by="error",
                                progress=False)
    assert [s.name for s in by_error] == ["image 3", "image 1"]


def test_eval_report_writes_the_page_where_there_are_no_logs(tiny_run, tmp_path, tiny_plugins):
    run, _ = tiny_run
    result = invoke("eval", str(run / "config.yaml"), f"runtime.output_dir={tmp_path}",
                                      "--weights", str(run / "model_best.safetensors"), "--report")
    assert result.exit_code == 0, result.output
    assert f"report written to {tmp_path / REPORT}" in result.output
    saved = json.loads((tmp_path / "eval_metrics.json").read_text())
    page = parse(tmp_path / REPORT)
    assert list(page.sections) == list(SECTIONS)
    assert [t for a, t in page.metrics if a["data-metric"] == "mIoU"] == [pct(saved["mIoU"])]
    text = (tmp_path / REPORT).read_text()
    assert f"no training records in {tmp_path / 'train_log.jsonl'}" in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "semsegpaddle.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_report_of_an_incomplete_run_folder_names_what_is_missing(tmp_path):
    (tmp_path / "model_best.safetensors").write_bytes(b"")
    done = run_cli("report", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: {tmp_path}: cannot report on this run: missing train_log.jsonl, "
                                   f"eval_log.jsonl (a run folder written by `semseg train` holds them)")
    (tmp_path / "train_log.jsonl").write_text("")
    (tmp_path / "eval_log.jsonl").write_text("")
    (tmp_path / "model_best.safetensors").unlink()
    done = run_cli("report", str(tmp_path))
    assert done.returncode == 1 and "missing model_best.safetensors (" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("report", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and "nowhere: no such folder" in done.stderr
    assert not (tmp_path / REPORT).exists()


def test_report_in_a_real_browser(tiny_run, tmp_path):
    """Chromium loads the page without console errors and shows every section; a screenshot is kept."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} not found (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser driver: the playwright Python package is not installed (pip install -e '.[test]')")
    run, _ = tiny_run
    errors = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(  # a fresh profile folder of its own
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            viewport={"width": 1200, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: errors.append(f"failed request {request.url}"))
            page.goto((run / REPORT).resolve().as_uri(), wait_until="load")
            for section in SECTIONS:
                assert page.locator(f"#{section}").is_visible(), section
                assert page.locator(f"#{section} h2").is_visible(), section
            loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth)")
            assert len(loaded) == 4 * WORST and all(w == 32 for w in loaded)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert cv2.imread(str(shot)).shape[1] == 1200
    print(f"screenshot: {shot}")
