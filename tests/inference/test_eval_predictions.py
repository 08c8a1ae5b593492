"""``semseg eval --predictions``: prediction PNGs of any tool scored against a tiny Cityscapes tree,
equal to the official cityscapesScripts evaluator, with no model and no paddle import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.probe import CLI, assert_light, run_probed

cityscapes_eval = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import labels as TABLE  # noqa: E402

WIDTH, HEIGHT = 64, 32
FRAMES = [("frankfurt", 1), ("frankfurt", 2), ("lindau", 3), ("munster", 4)]
IDS = np.array([label.id for label in TABLE if label.id >= 0])
#: labelId -> trainId, 255 for labels not evaluated
TO_TRAIN = np.full(256, 255, np.int64)
for _label in TABLE:
    if _label.id >= 0 and not _label.ignoreInEval:
        TO_TRAIN[_label.id] = _label.trainId


def stem(city: str, frame: int) -> str:
    return f"{city}_{frame:06d}_000019"


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    """A val split of random labelIds, predictions in labelIds (60 % right, a strip of 'unlabeled',
    some 'caravan' — scored ids the evaluator ignores) and the same predictions in trainIds."""
    base = tmp_path_factory.mktemp("cs")
    root, label_ids, train_ids = base / "cityscapes", base / "pred_label_ids", base / "pred_train_ids"
    rng = np.random.default_rng(0)
    for city, frame in FRAMES:
        name = stem(city, frame)
        save(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png",
             rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
        gt = rng.choice(IDS, (HEIGHT, WIDTH)).astype(np.uint8)
        gt[:4, :] = 26  # plenty of car
        if frame == 4:
            gt[gt == 31] = 26  # no train in one image (still in others)
        save(root / "gtFine" / "val" / city / f"{name}_gtFine_labelIds.png", gt)
        prediction = np.where(rng.random(gt.shape) < 0.6, gt, rng.choice(IDS, gt.shape)).astype(np.uint8)
        prediction[:, :3] = 0
        prediction[-2:, :] = 29
        # another tool's naming and folders: only city_seq_frame matters
        save(label_ids / city / f"{name}_leftImg8bit.png", prediction)
        save(train_ids / f"result_{name}.png", TO_TRAIN[prediction].astype(np.uint8))
    return {"root": root, "label_ids": label_ids, "train_ids": train_ids, "base": base}


def official_scores(tree) -> dict[str, float]:
    """Per-class IoU by cityscapesScripts' own functions, run offline on the labelId files."""
    predictions = sorted(tree["label_ids"].rglob("*.png"))
    labels = [tree["root"] / "gtFine" / "val" / p.parent.name / p.name.replace("_leftImg8bit", "_gtFine_labelIds")
              for p in predictions]
    args = cityscapes_eval.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False, False
    args.avgClassSize = {}
    result = cityscapes_eval.evaluateImgLists([str(p) for p in predictions], [str(g) for g in labels], args)
    return result["classScores"], result["averageScoreClasses"]


def score(tree, folder: str, tmp_path: Path, *extra: str) -> tuple[object, dict]:
    out = tmp_path / f"{folder}.json"
    run = run_probed(CLI, "eval", "dataset.name=cityscapes", f"dataset.root={tree['root']}", "runtime.progress=false",
               "--predictions", str(tree[folder]), "--out", str(out), *extra, tmp=tmp_path)
    return run, (json.loads(out.read_text()) if out.is_file() else {})


@pytest.mark.parametrize("folder", ["label_ids", "train_ids"])
def test_scores_equal_the_official_evaluator_in_either_encoding_without_paddle(tree, folder, tmp_path):
    run, metrics = score(tree, folder, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_light(run, ("paddle",))  # scoring files builds no model; OpenCV may decode them
    expected = "submission" if folder == "label_ids" else "index"
    assert f"values read as {expected} ids" in run.stdout
    official, mean = official_scores(tree)
    checked = 0
    for name in metrics["per_class"]:  # the 19 evaluated classes (the others score NaN officially)
        value, ours = official[name], metrics["per_class"][name]["IoU"]
        if np.isnan(value):
            assert ours is None, name
        else:
            assert ours == pytest.approx(value, abs=1e-6), name
            checked += 1
    assert checked == 19
    assert metrics["mIoU"] == pytest.approx(mean, abs=1e-6)
    # the confusion matrix (19 classes + "none" for unlabeled/caravan predictions) and its picture
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (19, 20) and matrix[:, 19].sum() > 0
    assert metrics["pixels"] == matrix.sum()
    with Image.open(tmp_path / f"{folder}_confusion.png") as picture:
        assert picture.format == "PNG" and picture.width > 19 * 28


def test_explicit_encoding_overrides_auto(tree, tmp_path):
    forced, metrics = score(tree, "label_ids", tmp_path, "--encoding", "index")
    assert forced.returncode == 0, forced.stderr
    official, _ = official_scores(tree)
    # labelIds read as train ids: most pixels land on the wrong class, far from the official figures
    assert metrics["per_class"]["car"]["IoU"] < official["car"] - 0.3


def test_missing_predictions_are_one_line_naming_how_many_and_a_few(tree, tmp_path):
    partial = tmp_path / "partial"
    kept = sorted(tree["label_ids"].rglob("*.png"))[0]
    save(partial / kept.name, np.asarray(Image.open(kept)))
    run = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "eval", "dataset.name=cityscapes",
                          f"dataset.root={tree['root']}", "runtime.progress=false", "--predictions", str(partial),
                          "--out", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "no prediction for 3 of 4 samples of split 'val'" in lines[0]
    assert "frankfurt_000002_000019_leftImg8bit.png" in lines[0] and str(partial) in lines[0]
    assert not (tmp_path / "m.json").exists()


def test_predictions_of_another_size_and_model_options_are_refused(tree, tmp_path):
    small = tmp_path / "small"
    for path in tree["label_ids"].rglob("*.png"):
        save(small / path.name, np.zeros((HEIGHT // 2, WIDTH), np.uint8))
    run, _ = score({**tree, "small": small}, "small", tmp_path)
    assert run.returncode == 1 and "prediction is 64×16, its label" in run.stderr
    run, _ = score(tree, "label_ids", tmp_path, "--weights", "w.safetensors")
    assert run.returncode == 2 and "--predictions scores files and loads no model" in run.stderr


def test_two_files_for_one_frame_are_refused(tree, tmp_path):
    twice = tmp_path / "twice"
    path = sorted(tree["label_ids"].rglob("*.png"))[0]
    for name in (path.name, f"copy_{path.name}"):
        save(twice / name, np.asarray(Image.open(path)))
    run, _ = score({**tree, "twice": twice}, "twice", tmp_path)
    assert run.returncode == 1 and "are both predictions of 'frankfurt_000001_000019'" in run.stderr


def test_python_api_matches_the_cli(tree, tmp_path):
    import semsegpaddle as ss

    config = ss.config_from_dict({"dataset": {"name": "cityscapes", "root": str(tree["root"])},
                                  "runtime": {"progress": False}})
    metrics = ss.score_predictions(config, tree["train_ids"])
    official, mean = official_scores(tree)
    assert metrics.miou == pytest.approx(mean, abs=1e-12)
    assert metrics.per_class_iou[13] == pytest.approx(official["car"], abs=1e-12)
    assert 0 < metrics.kappa < 1 and 0 < metrics.mean_dice < 1
