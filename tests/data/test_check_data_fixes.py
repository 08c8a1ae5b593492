"""``semseg check-data --write-config``: from a folder of images and masks to a config that passes
check-data and trains. Binary 0/255 masks, colour masks with thin 'unlabelled' rims and 1-based
masks are fixed; an ambiguous mask set is asked about, not guessed; mean/std match numpy's; an
existing file is never replaced unless asked, the checked config never."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle import api
from semsegpaddle.core.config.loader import load_yaml
from semsegpaddle.core.data.check import DataReport, SplitStats, region_values
from semsegpaddle.core.data.config_fixes import infer_fixes, render_config
from tests.helpers.cli import invoke
from tests.helpers.probe import CLI, assert_light, run_probed

SIZE = 32
COLOURS = np.array([[10, 10, 10], [200, 30, 30], [30, 30, 200]], np.uint8)
RIM = (224, 224, 192)
TRAIN = ["model.backbone.name=resnet", "model.backbone.depth=18", "model.decoder.channels=16", "train.iters=4",
         "train.batch_size=2", "train.crop_size=[32,32]", "runtime.progress=false", "runtime.threads=2"]


def ids_of(index: int) -> np.ndarray:
    """Class ids 0..2 in large blocks whose borders move with ``index``."""
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[:, 10 + index:] = 1
    ids[16:, :] = 2
    return ids


def binary(index: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:20, 6 + index:24] = 255
    return mask


def coloured(index: int) -> np.ndarray:
    """Colour masks whose class borders are painted in a 1-pixel 'unlabelled' colour."""
    mask = COLOURS[ids_of(index)]
    mask[15, :] = RIM
    mask[:, 9 + index] = RIM
    return mask


def one_based(index: int) -> np.ndarray:
    """Ids 1..3 for the classes, 0 for an unlabelled corner."""
    mask = ids_of(index) + 1
    mask[:6, :6] = 0
    return mask


def ambiguous(index: int) -> np.ndarray:
    """Ids 0..3 and no unlabelled value: 0 may be a class or 'unlabelled'."""
    mask = ids_of(index)
    mask[:8, :8] = 3
    return mask


def rims_254(index: int) -> np.ndarray:
    mask = ids_of(index)
    mask[15, :] = 254
    mask[:, 9 + index] = 254
    return mask


def make_folder(root: Path, masks, train: int = 4, val: int = 2, seed: int = 0) -> list[np.ndarray]:
    """images/<split>/iN.png and masks/<split>/iN.png; returns the train images."""
    rng = np.random.default_rng(seed)
    images = []
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            image = rng.integers(0, 256, (SIZE, SIZE + 8 * (i % 2), 3), dtype=np.uint8)
            mask = masks(i)
            if mask.shape[1] != image.shape[1]:
                mask = np.concatenate([mask, np.repeat(mask[:, -1:], image.shape[1] - SIZE, axis=1)], axis=1)
            for kind, array in (("images", image), ("masks", mask)):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / kind / split / f"i{i}.png")
            if split == "train":
                images.append(image)
    return images


def check(tmp_path: Path, *args: str):
    run = run_probed(CLI, "check-data", *args, tmp=tmp_path)
    assert_light(run, ("paddle",))
    return run


def leaf_lines_are_commented(text: str) -> None:
    for line in text.splitlines():
        if re.match(r"^\s*(- |[\w\d_]+: \S)", line) and not line.lstrip().startswith("#"):
            assert "  # " in line, f"line without its reason: {line!r}"


CASES = {
    "binary": (binary, [], "0/255 binary masks", 2,
               {"num_classes": 2, "label_map": {255: 1}, "class_names": ["background", "foreground"]}),
    "colour": (coloured, [], "mask(s) are colour images", 3,
               {"num_classes": 3, "color_masks": True, "palette": [[10, 10, 10], [30, 30, 200], [200, 30, 30]],
                "ignore_colors": [list(RIM)], "class_names": ["class_0", "class_1", "class_2"]}),
    "one_based": (one_based, ["dataset.num_classes=3"], "0 looks like unlabelled background", 3,
                  {"num_classes": 3, "reduce_zero_label": True, "class_names": ["class_0", "class_1", "class_2"]}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_written_config_fixes_the_data_and_trains(case, tmp_path):
    masks, extra, cause, classes, expected = CASES[case]
    root, out = tmp_path / "data", tmp_path / "fixed.yaml"
    make_folder(root, masks)
    first = check(tmp_path, "dataset.name=folder", f"dataset.root={root}", *extra, "--write-config", str(out))
    assert first.returncode == 1, first.stdout + first.stderr
    assert cause in first.stdout and "PROBLEM" in first.stdout
    assert f"config written to {out}" in first.stdout

    text = out.read_text()
    leaf_lines_are_commented(text)
    written = load_yaml(text)
    assert written["_base_"] == "synthetic_deeplabv3"
    dataset = written["dataset"]
    assert dataset.pop("name") == "folder" and dataset.pop("root") == str(root)
    assert dataset == expected
    assert set(written["model"]) == {"mean", "std"}

    again = check(tmp_path, str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().endswith("check-data: OK, 6 samples in split(s) train, val, no problems")

    run = tmp_path / "run"
    trained = invoke("train", str(out), *TRAIN, f"runtime.output_dir={run}")
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["per_class"]) == classes and math.isfinite(metrics["mIoU"])


def test_ambiguous_masks_are_asked_about_not_guessed(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fixed.yaml"
    make_folder(root, ambiguous)
    run = check(tmp_path, "dataset.name=folder", f"dataset.root={root}", "--write-config", str(out))
    assert run.returncode == 1
    question = run.stdout.split("QUESTION ")[1]
    assert question.startswith("dataset.num_classes (left out of") and "is 0 a class, or unlabelled?" in question
    assert "  0 is a class: dataset.num_classes=4\n" in question
    assert ": dataset.num_classes=3 dataset.reduce_zero_label=true\n" in question
    text = out.read_text()
    dataset = load_yaml(text)["dataset"]
    assert "num_classes" not in dataset and "reduce_zero_label" not in dataset and "label_map" not in dataset
    assert "  # dataset.num_classes: not written. The masks hold the ids 0..3" in text
    assert "#   0 is a class: dataset.num_classes=4" in text


def test_mean_and_std_are_numpy_s_over_the_train_images(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fixed.yaml"
    images = make_folder(root, binary, train=3, val=1, seed=7)  # one train image is wider: pixels weigh equally
    overrides = ["dataset.name=folder", f"dataset.root={root}", "dataset.num_classes=2"]
    config = api.load_check_config(None, overrides)
    report = api.check_data(config)
    written = api.write_fixed_config(None, overrides, report, out)
    pixels = np.concatenate([image.reshape(-1, 3) for image in images]).astype(np.float64)
    model = load_yaml(out.read_text())["model"]
    np.testing.assert_allclose(model["mean"], pixels.mean(axis=0), atol=5e-4)
    np.testing.assert_allclose(model["std"], pixels.std(axis=0), atol=5e-4)
    assert written.inference.get("dataset.label_map").value == {255: 1}
    assert written.inference.get("dataset.num_classes") is None  # given, not inferred


def test_values_only_in_thin_rims_become_ignored(tmp_path, monkeypatch):
    make_folder(tmp_path / "data", rims_254)
    monkeypatch.chdir(tmp_path)
    overrides = ["dataset.name=folder", "dataset.root=data"]  # relative to the current folder
    report = api.check_data(api.load_check_config(None, overrides))
    api.write_fixed_config(None, overrides, report, "fixed.yaml")
    dataset = load_yaml((tmp_path / "fixed.yaml").read_text())["dataset"]
    assert dataset["label_map"] == {254: 255} and dataset["num_classes"] == 3
    assert dataset["root"] == "data"  # relative to the written file, which lies beside it
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert api.check_data(api.load_config(str(tmp_path / "fixed.yaml"))).ok


def test_an_existing_file_is_refused_and_the_checked_config_never_replaced(tmp_path):
    root, out = tmp_path / "data", tmp_path / "fixed.yaml"
    make_folder(root, binary, train=2, val=1)
    out.write_text("keep: me\n")
    args = ["check-data", "dataset.name=folder", f"dataset.root={root}", "--write-config", str(out)]
    refused = invoke(*args)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [f"Error: --write-config {out}: the file exists; choose another "
                                                   f"name, or add --overwrite to replace it"]
    assert out.read_text() == "keep: me\n"
    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 1 and "config written to" in replaced.output  # the data still has problems
    assert load_yaml(out.read_text())["dataset"]["label_map"] == {255: 1}

    before = out.read_text()
    same = invoke("check-data", str(out), "--write-config", str(out), "--overwrite")
    assert same.exit_code == 1 and "that is the config being checked" in same.output
    assert out.read_text() == before


# -- inference alone (no files) -------------------------------------------------------------------


def report_of(values=None, colours=None, thin=(), known=True, images=0):
    """A DataReport of one 'train' split holding ``values`` / ``colours`` (those in ``thin`` never
    fill a 7×7 square) and ``images`` 1×1 images of value (1, 2, 3)."""
    stats = SplitStats("train", values=dict(values or {}), colours=dict(colours or {}),
                       colour_masks=1 if colours else 0, images=images, pixels=images,
                       channel_sums=[images, 2 * images, 3 * images], channel_squares=[images, 4 * images, 9 * images])
    stats.region_values = set(stats.values) - set(thin)
    stats.region_colours = set(stats.colours) - set(thin)
    return DataReport("folder", [], [], {"train": stats}, known)


FOLDER = {"name": "folder", "num_classes": 3, "ignore_index": 255, "label_map": None, "reduce_zero_label": False,
          "color_masks": False, "palette": None, "ignore_colors": None, "class_names": None}


def test_ids_with_gaps_and_values_above_the_classes_are_questions():
    gaps = infer_fixes(report_of({0: 5, 3: 5, 7: 5}, known=False), FOLDER, train_split="train")
    question = gaps.questions[0]
    assert question.key == "dataset.num_classes" and "not 0, 1, 2, ... in a row" in question.text
    assert question.answers[1][1] == "dataset.num_classes=3 dataset.label_map={3: 1, 7: 2}"
    assert gaps.get("dataset.num_classes") is None and gaps.get("dataset.label_map") is None
    above = infer_fixes(report_of({0: 5, 1: 5, 9: 5}), FOLDER, train_split="train")
    assert above.questions[0].answers == (("they are classes", "dataset.num_classes=10"),
                                          ("they mark pixels to ignore", "dataset.label_map={9: 255}"))


def test_one_based_ids_without_a_count_and_0_1_masks_are_inferred():
    one_based = infer_fixes(report_of({1: 5, 2: 5, 3: 5}, known=False), FOLDER, train_split="train")
    assert one_based.get("dataset.num_classes").value == 3 and one_based.get("dataset.reduce_zero_label").value
    zero_one = infer_fixes(report_of({0: 5, 1: 5}, known=False), FOLDER, train_split="train")
    assert zero_one.get("dataset.num_classes").value == 2
    assert [q.key for q in zero_one.questions] == ["model.mean"]  # only: no image was read


def test_colours_against_a_stated_count_and_palette():
    voc = {(0, 0, 0): 9, (128, 0, 0): 4}
    stated = infer_fixes(report_of(colours=voc), FOLDER, train_split="train")
    assert stated.get("dataset.color_masks").value is True
    assert stated.get("dataset.palette").value == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # VOC ids kept
    too_many = infer_fixes(report_of(colours={**voc, (1, 2, 3): 4, (4, 5, 6): 4}), FOLDER, train_split="train")
    assert too_many.get("dataset.palette") is None and too_many.questions[0].key == "dataset.palette"
    given = dict(FOLDER, color_masks=True, palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0]])
    unknown = infer_fixes(report_of(colours={**voc, (9, 9, 9): 2, (7, 7, 7): 3}, thin=[(9, 9, 9)]), given,
                          train_split="train")
    assert unknown.get("dataset.ignore_colors").value == [[9, 9, 9]]
    assert "[7, 7, 7]: 3 px" in unknown.questions[0].text


def test_pretrained_weights_keep_their_normalisation():
    plain = infer_fixes(report_of({0: 1, 255: 1}, images=4), FOLDER, train_split="train")
    assert plain.get("model.mean").value == [1.0, 2.0, 3.0] and plain.get("model.std").value == [1.0, 1.0, 1.0]
    pretrained = infer_fixes(report_of({0: 1, 255: 1}, images=4), FOLDER, train_split="train",
                             pretrained="r18.safetensors")
    assert pretrained.get("model.mean") is None
    assert pretrained.questions[-1].answers[0][1] == "model.mean=[1.0, 2.0, 3.0] model.std=[1.0, 1.0, 1.0]"
    text = render_config("base.yaml", [], pretrained)
    assert "model:" not in text and "# model.mean: not written. The model starts from pretrained" in text


def test_region_values_match_a_brute_force_search():
    rng = np.random.default_rng(3)
    for _ in range(30):
        label = rng.integers(0, 3, (20, 23)).astype(np.uint8)
        for _ in range(3):
            top, left = rng.integers(0, 14, 2)
            label[top:top + rng.integers(4, 9), left:left + rng.integers(4, 9)] = rng.integers(0, 6)
        side = int(rng.integers(1, 8))
        brute = {int(label[i, j]) for i in range(21 - side) for j in range(24 - side)
                 if (label[i:i + side, j:j + side] == label[i, j]).all()}
        assert set(region_values(label, side).tolist()) == brute
