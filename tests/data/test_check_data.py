"""``semseg check-data``: each data problem is found, named with its file, and its fix suggested; clean data
passes with the right class counts; paddle and cv2 are never imported (real CLI, fresh interpreter)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.probe import CLI, Run, assert_light, run_probed

SIZE = 32
#: check-data builds no model: it never imports paddle (OpenCV may decode the files)
NO_MODEL = ("paddle",)


def mask_of(index: int, num_classes: int = 3) -> np.ndarray:
    """Class ids 0..num_classes-1 in vertical bands whose widths depend on ``index``; one ignore pixel."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for cls in range(1, num_classes):
        mask[:, 8 * cls + index:] = cls
    mask[0, 0] = 255
    return mask


def write(path: Path, array: np.ndarray, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)
    return path


def make_tree(root: Path, masks=mask_of, train: int = 3, val: int = 1) -> dict[str, list[np.ndarray]]:
    """images/<split>/iN.png + masks/<split>/iN.png; returns the masks written, per split."""
    written: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for split, count, offset in (("train", train, 0), ("val", val, 10)):
        for i in range(count):
            image = np.full((SIZE, SIZE, 3), 40 * (i + 1), np.uint8)
            write(root / f"images/{split}/i{i}.png", image)
            mask = masks(offset + i)
            write(root / f"masks/{split}/i{i}.png", mask)
            written[split].append(mask)
    return written


@pytest.fixture
def check(tmp_path):
    """``semseg check-data`` on the folder dataset at ROOT with 3 classes, plus extra arguments."""
    def run(root: Path, *extra: str) -> Run:
        return run_probed(CLI, "check-data", "dataset.name=folder", f"dataset.root={root}", "dataset.num_classes=3",
                    *extra, tmp=tmp_path)
    return run


def problems(run: Run) -> list[str]:
    """The PROBLEM blocks of the output, one string each."""
    blocks = run.stdout.split("\n\n")
    return [b for b in blocks if b.startswith("PROBLEM")]


def assert_failed(run: Run, count: int = 1) -> list[str]:
    assert run.returncode == 1, run.stdout + run.stderr
    found = problems(run)
    assert len(found) == count, run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(f"check-data: {count} problem(s) found"), last
    assert_light(run, NO_MODEL)
    return found


# -- clean data --------------------------------------------------------------------------------------


def test_clean_tree_passes_with_class_counts(tmp_path, check):
    root = tmp_path / "data"
    written = make_tree(root)
    report_path = tmp_path / "report.json"
    run = check(root, "dataset.class_names=[sky,road,car]", "--json", str(report_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert not problems(run)
    assert run.stdout.strip().splitlines()[-1] == "check-data: OK, 4 samples in split(s) train, val, no problems"
    assert_light(run, NO_MODEL)
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["problems"] == [] and report["dataset"] == "folder"
    for split, masks in written.items():
        stacked = np.stack(masks)
        got = report["splits"][split]
        assert got["samples"] == len(masks)
        assert got["class_pixels"] == [int((stacked == c).sum()) for c in range(3)]
        assert got["class_images"] == [sum(int((m == c).any()) for m in masks) for c in range(3)]
        assert got["ignored_pixels"] == len(masks) and got["other_pixels"] == 0
    pixels = report["splits"]["train"]["class_pixels"]
    table = run.stdout.split("split 'train'")[1]
    for cls, name in enumerate(["sky", "road", "car"]):
        assert f"{cls}  {name}" in table and f"{pixels[cls]:,}" in table


def test_only_the_requested_split(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    run = check(root, "--split", "val")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "split 'val': 1 samples" in run.stdout and "split 'train'" not in run.stdout


# -- files -------------------------------------------------------------------------------------------


def test_missing_listed_files(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    (root / "val.txt").write_text("images/val/i0.png masks/val/i0.png\nimages/val/gone.png masks/val/gone.png\n")
    (block,) = assert_failed(check(root, "dataset.val_list=val.txt"))
    assert "[val]" in block and "2 listed files of split 'val' not found" in block
    assert str(root / "images/val/gone.png") in block and "fix: paths are relative to" in block


def test_unpaired_images(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    write(root / "images/train/stray.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    run = check(root)
    (block,) = assert_failed(run)
    assert "1 of 4 images has no mask" in block and str(root / "images/train/stray.png") in block
    assert "split 'train': 3 samples" in run.stdout  # the pairs that match are still checked


def test_truncated_image(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    path = root / "images/train/i1.png"
    path.write_bytes(path.read_bytes()[:60])
    (block,) = assert_failed(check(root))
    assert "cannot be read" in block and str(path) in block
    assert "truncated or corrupt" in block and "fix: copy the files again" in block


def test_size_mismatch(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    write(root / "masks/val/i0.png", np.zeros((SIZE, SIZE // 2), np.uint8))
    (block,) = assert_failed(check(root))
    assert "[val] 1 mask(s) differ in size from their image (first: mask 16×32, image 32×32)" in block
    assert str(root / "masks/val/i0.png") in block and "nearest-neighbour" in block


# -- mask values ---------------------------------------------------------------------------------------


def binary(index: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:20, 4 + index % 5:20] = 255
    return mask


def test_binary_0_255_masks_suggest_label_map_and_the_fix_works(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root, binary)
    for block in assert_failed(check(root, "dataset.num_classes=2"), count=2):  # train and val
        assert "only the values 0 and 255 (= ignore_index): every non-zero pixel is ignored" in block
        assert "class 1 never occurs" in block and "fix: dataset.label_map={255: 1}" in block
    fixed = check(root, "dataset.num_classes=2", "dataset.label_map={255: 1}")
    assert fixed.returncode == 0, fixed.stdout


def test_binary_masks_with_another_ignore_index_are_out_of_range(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root, binary)
    train, val = assert_failed(check(root, "dataset.num_classes=2", "dataset.ignore_index=254"), count=2)
    assert "[train] 3 mask(s) hold values 255, neither classes 0..1 nor ignore_index 254" in train
    assert "[val] 1 mask(s) hold values 255" in val
    assert "fix: dataset.label_map={255: 1}" in train


def zero_based_background(index: int) -> np.ndarray:
    """ADE20K-like: 0 = unlabelled, classes 1..3 (one more than num_classes=3)."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, 4:] = 1 + index % 3
    mask[:, 20:] = 3
    return mask


def test_values_0_to_c_suggest_reduce_zero_label_and_the_fix_works(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root, zero_based_background)
    train, _ = assert_failed(check(root), count=2)
    assert "hold values 3, neither classes 0..2 nor ignore_index 255" in train
    assert "0 looks like unlabelled background" in train
    assert "fix: dataset.reduce_zero_label=true" in train
    fixed = check(root, "dataset.reduce_zero_label=true")
    assert fixed.returncode == 0, fixed.stdout


def test_values_far_above_num_classes_suggest_num_classes(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root, lambda i: np.where(mask_of(i) == 2, 7, mask_of(i)).astype(np.uint8))
    train, val = assert_failed(check(root), count=2)
    assert "[train] 3 mask(s) hold values 7," in train and str(root / "masks/train/i0.png") in train
    assert "[val] 1 mask(s) hold values 7," in val and str(root / "masks/val/i0.png") in val
    assert "fix: dataset.num_classes=8 if they are classes; or dataset.label_map={7: 255}" in train


def test_jpeg_masks_are_flagged(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    (root / "masks/train/i2.png").unlink()
    write(root / "masks/train/i2.jpg", mask_of(2) * 60, quality=50)
    found = assert_failed(check(root), count=2)
    jpeg = next(b for b in found if "JPEG" in b)
    assert "1 mask(s) are JPEG files" in jpeg and str(root / "masks/train/i2.jpg") in jpeg
    assert "save masks losslessly (PNG)" in jpeg
    values = next(b for b in found if "hold values" in b)
    assert "lossy (JPEG)" in values


def test_rgb_masks_in_palette_colours_suggest_color_masks_and_the_fix_works(tmp_path, check):
    root = tmp_path / "data"
    voc = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.uint8)
    written = make_tree(root, lambda i: voc[np.minimum(mask_of(i), 2)])  # the 255 pixel becomes class 2 here
    train, val = assert_failed(check(root), count=2)
    assert "[train] 3 mask(s) are colour images (3 colours" in train and str(root / "masks/train/i0.png") in train
    assert "[val] 1 mask(s) are colour images" in val
    assert "fix: dataset.color_masks=true (every colour is in the dataset's palette)" in train
    report = tmp_path / "fixed.json"
    fixed = check(root, "dataset.color_masks=true", "--json", str(report))
    assert fixed.returncode == 0, fixed.stdout
    ids = [np.minimum(mask_of(i), 2) for i in range(3)]
    assert json.loads(report.read_text())["splits"]["train"]["class_pixels"] == \
        [int(sum((m == c).sum() for m in ids)) for c in range(3)]
    assert len(written["train"]) == 3


def test_rgb_masks_in_other_colours_suggest_a_palette(tmp_path, check):
    root = tmp_path / "data"
    colours = np.array([[10, 10, 10], [200, 30, 30], [30, 30, 200]], np.uint8)
    make_tree(root, lambda i: colours[np.minimum(mask_of(i), 2)])
    block, _ = assert_failed(check(root), count=2)
    assert "fix: dataset.color_masks=true dataset.palette=[" in block
    suggested = block.split("dataset.palette=")[1].split(" ")[0]
    fixed = check(root, "dataset.color_masks=true", f"dataset.palette={suggested}")
    assert fixed.returncode == 0, fixed.stdout


def test_colours_outside_the_palette(tmp_path, check):
    root = tmp_path / "data"
    voc = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.uint8)

    def painted(i: int) -> np.ndarray:
        rgb = voc[np.minimum(mask_of(i), 2)]
        rgb[0, 0] = (255, 255, 255)
        return rgb

    make_tree(root, painted)
    block, _ = assert_failed(check(root, "dataset.color_masks=true"), count=2)
    assert "colours (255, 255, 255) are not in the dataset's palette" in block
    assert "dataset.ignore_colors" in block
    assert check(root, "dataset.color_masks=true", "dataset.ignore_colors=[[255,255,255]]").returncode == 0


def test_several_problems_at_once_are_all_reported(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    write(root / "masks/val/i0.png", np.full((SIZE, SIZE), 9, np.uint8))
    path = root / "images/train/i0.png"
    path.write_bytes(b"not a png")
    found = assert_failed(check(root), count=2)
    assert any("[train]" in b and str(path) in b for b in found)
    assert any("[val]" in b and "hold values 9" in b for b in found)


# -- config errors -------------------------------------------------------------------------------------


def test_bad_config_is_one_line(tmp_path, check):
    run = run_probed(CLI, "check-data", "dataset.name=folder", "dataset.num_classes=3", tmp=tmp_path)
    assert run.returncode == 1
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "dataset.root is required by dataset 'folder'" in lines[0], lines
    assert_light(run, NO_MODEL)


def test_missing_split_is_a_problem_of_that_split(tmp_path, check):
    root = tmp_path / "data"
    make_tree(root)
    (block,) = assert_failed(check(root, "dataset.val_split=test"))
    assert "[test] cannot build the dataset" in block and "test_list is not set" in block


def test_datasets_other_than_files_are_checked_through_their_samples(tmp_path):
    report = tmp_path / "synthetic.json"
    run = run_probed(CLI, "check-data", "dataset.num_train=3", "dataset.num_val=2", "dataset.image_size=48", "--json", str(report), tmp=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(report.read_text())
    assert data["dataset"] == "synthetic" and [s["samples"] for s in data["splits"].values()] == [3, 2]
    train = data["splits"]["train"]
    assert train["class_names"][0] == "background" and train["class_pixels"][0] > 0
    assert sum(train["class_pixels"]) + train["ignored_pixels"] == 3 * 48 * 48
