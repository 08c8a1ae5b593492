"""``semseg predict`` inputs (files, folders, list files), ``--format cityscapes`` (labelId PNGs named
for the official server) and ``--alpha`` overlays."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.prediction import expand_inputs, predict_files, submission_format
from semsegpaddle.plugins.datasets.cityscapes_labels import TRAIN_LABELS
from tests.inference.test_predict_export_hardening import SMALL_RUN

SIZE = (16, 24)


class ColourBackend:
    """Logits whose argmax is the image's red value // 10 (mod num_classes): a known answer."""

    def __init__(self, num_classes: int = 19) -> None:
        self.num_classes = num_classes

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        classes = (batch[:, 0] // 10).astype(np.int64) % self.num_classes
        return np.eye(self.num_classes, dtype=np.float32)[classes].transpose(0, 3, 1, 2)


def image(path: Path, red: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SIZE, 3), (red, 40, 90), np.uint8)).save(path)
    return path


def test_inputs_from_files_folders_and_list_files(tmp_path):
    a = image(tmp_path / "imgs" / "a.png", 0)
    b = image(tmp_path / "imgs" / "deep" / "b.jpg", 10)
    (tmp_path / "imgs" / "notes.md").write_text("not an image")
    c = image(tmp_path / "c.png", 20)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("# images\n../c.png labels/c.png\n\n../imgs/a.png\n")
    (tmp_path / "lists" / "seed.lst").write_text("../imgs/deep/b.jpg\n")
    assert expand_inputs([tmp_path / "imgs"]) == [a, b]
    assert expand_inputs([f"@{tmp_path / 'lists' / 'val.txt'}"]) == [tmp_path / "lists" / "../c.png",
                                                                    tmp_path / "lists" / "../imgs/a.png"]
    assert [p.resolve() for p in expand_inputs([str(c), tmp_path / "lists" / "seed.lst"])] == [c, b]
    with pytest.raises(FileNotFoundError, match="input not found"):
        expand_inputs([tmp_path / "nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemsegError, match="no images"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="list file not found"):
        expand_inputs(["@" + str(tmp_path / "missing.txt")])
    (tmp_path / "blank.txt").write_text("# nothing\n")
    with pytest.raises(SemsegError, match="names no images"):
        expand_inputs([tmp_path / "blank.txt"])


def test_cityscapes_format_writes_label_ids_named_for_the_server(tmp_path):
    fmt = submission_format("cityscapes", 19)
    inputs = [image(tmp_path / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png", 130),  # class 13 car
              image(tmp_path / "test" / "bonn" / "bonn_000012_000019.png", 0),  # road
              image(tmp_path / "mainz_000001_000033_extra.jpg", 180)]  # class 18 bicycle
    written = predict_files(ColourBackend(), inputs, tmp_path / "submit", np.zeros((19, 3), np.uint8),
                            progress=False, submission=fmt)
    names = sorted(p.name for p in (tmp_path / "submit").iterdir())
    assert names == ["berlin_000000_000019_leftImg8bit.png", "bonn_000012_000019_leftImg8bit.png",
                     "mainz_000001_000033_leftImg8bit.png"]
    assert len(written) == 3
    expected = {"berlin": 26, "bonn": 7, "mainz": 33}  # official labelIds of car, road, bicycle
    for path in written:
        with Image.open(path) as saved:
            assert saved.mode == "L" and saved.size == (SIZE[1], SIZE[0])
            assert np.unique(np.asarray(saved)).tolist() == [expected[path.name.split("_")[0]]]
    assert fmt.ids.tolist() == [label.id for label in TRAIN_LABELS]


def test_cityscapes_format_refuses_bad_names_clashes_overlays_and_other_label_spaces(tmp_path):
    fmt = submission_format("cityscapes", 19)
    palette = np.zeros((19, 3), np.uint8)
    odd = [image(tmp_path / "aachen_000000_000019_leftImg8bit.png", 0), image(tmp_path / "holiday.png", 0)]
    with pytest.raises(SemsegError, match=r"--format cityscapes: 1 input\(s\) are not named .*holiday.png"):
        predict_files(ColourBackend(), odd, tmp_path / "out", palette, progress=False, submission=fmt)
    twins = [image(tmp_path / "x" / "ulm_000001_000002_leftImg8bit.png", 0),
             image(tmp_path / "y" / "ulm_000001_000002.png", 0)]
    with pytest.raises(SemsegError, match="would both write"):
        predict_files(ColourBackend(), twins, tmp_path / "out", palette, progress=False, submission=fmt)
    with pytest.raises(SemsegError, match="would overwrite an input"):
        predict_files(ColourBackend(), odd[:1], tmp_path, palette, progress=False, submission=fmt)
    with pytest.raises(SemsegError, match="drop --overlay"):
        predict_files(ColourBackend(), odd[:1], tmp_path / "out", palette, overlay=True, progress=False,
                      submission=fmt)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SemsegError, match="19 classes|has 7 classes"):
        submission_format("cityscapes", 7)
    with pytest.raises(SemsegError, match="unknown --format 'voc'.*cityscapes"):
        submission_format("voc", 21)


def test_alpha_sets_the_mask_opacity_in_overlays(tmp_path):
    palette = np.array([[200, 0, 0], [0, 200, 0]], np.uint8)
    source = image(tmp_path / "in.png", 10)  # class 1, colour (0, 200, 0); pixels (10, 40, 90)
    for alpha in (0.0, 0.25, 1.0):
        out = tmp_path / f"a{alpha}"
        predict_files(ColourBackend(2), [source], out, palette, overlay=True, progress=False, alpha=alpha)
        pixel = np.asarray(Image.open(out / "in_overlay.png"))[0, 0]
        expected = (np.array([10, 40, 90]) * (1 - alpha) + np.array([0, 200, 0]) * alpha).astype(np.uint8)
        assert pixel.tolist() == expected.tolist()
    with pytest.raises(SemsegError, match="alpha=1.5"):
        predict_files(ColourBackend(2), [source], tmp_path / "bad", palette, overlay=True, alpha=1.5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_formats")
    result = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "train", *SMALL_RUN,
                             f"runtime.output_dir={root / 'run'}"], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return root / "run" / "model_best.safetensors"


def semseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semsegpaddle.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_cli_predicts_folders_and_lists_with_alpha_and_reports_bad_images_last(checkpoint, tmp_path):
    image(tmp_path / "imgs" / "a.png", 0)
    image(tmp_path / "imgs" / "sub" / "b.png", 50)
    image(tmp_path / "c.png", 90)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "list.txt").write_text("c.png\nbroken.png\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.png")}
    result = semseg("predict", "imgs", "@list.txt", "--weights", str(checkpoint), "--output", "out",
                    "--alpha", "0.3", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: 1 of 4 images unreadable (3 masks written")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png", "a_overlay.png", "b.png", "b_overlay.png", "c.png", "c_overlay.png"]
    assert {p: p.read_bytes() for p in before} == before
    # the synthetic model's 5 classes are not Cityscapes' 19: one line, nothing written
    result = semseg("predict", "imgs", "--weights", str(checkpoint), "--output", "cs", "--format", "cityscapes",
                    cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "submission ids cover" in result.stderr
    assert not (tmp_path / "cs").exists()
    result = semseg("predict", "nope.png", "--weights", str(checkpoint), "--output", "x", cwd=tmp_path)
    assert result.returncode == 1 and "input not found" in result.stderr and "nope.png" in result.stderr
