"""Predictions that are none of the classes count as misses, as the official Cityscapes evaluator counts them."""
from __future__ import annotations

import numpy as np
import pytest

from semsegpaddle.core.inference.metrics import ConfusionMatrix, compute_metrics

LABEL = np.array([[0, 0, 1, 1],
                  [2, 2, 255, 0]])
PREDICTION = np.array([[0, 255, 1, 7],
                       [2, 0, 1, -1]])


def test_a_prediction_outside_the_classes_is_a_miss_of_the_true_class():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(PREDICTION, LABEL)
    # class 0: 3 pixels, one hit, two predicted as 255 and -1; class 1: 2 pixels, one predicted as 7
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.missed.tolist() == [2, 1, 0]
    m = compute_metrics(cm.table(), ["a", "b", "c"])
    # IoU = tp / (gt + predicted - tp): a 1/(3+2-1), b 1/(2+1-1), c 1/(2+1-1)
    assert m.per_class_iou == pytest.approx([1 / 4, 1 / 2, 1 / 2])
    assert m.miou == pytest.approx((1 / 4 + 1 / 2 + 1 / 2) / 3)
    assert m.pixel_accuracy == pytest.approx(3 / 7)
    assert m.per_class_accuracy == pytest.approx([1 / 3, 1 / 2, 1 / 2])
    assert m.pixels == 7
    # dropping those pixels instead would have flattered class a and b
    assert compute_metrics(cm.matrix).per_class_iou[0] == pytest.approx(1 / 2)


def test_uint8_predictions_with_255_and_merging():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(PREDICTION.astype(np.uint8), LABEL.astype(np.uint8))  # -1 wraps to 255: still no class
    b.update(PREDICTION, LABEL)
    a.merge(b)
    assert a.missed.tolist() == [4, 2, 0]
    assert a.table().shape == (3, 4) and a.table()[:, 3].tolist() == [4, 2, 0]


def test_labels_outside_the_classes_are_an_error_not_a_wrong_count():
    with pytest.raises(ValueError, match=r"label values \[3\] are neither classes 0..2 nor ignore_index 255"):
        ConfusionMatrix(3).update(np.zeros((1, 2), np.int64), np.array([[0, 3]]))


def test_every_class_iou_equals_the_official_evaluator(tmp_path):
    """Cityscapes label ids evaluated by cityscapesScripts vs our train ids: identical per-class IoU.

    Predicted label ids that are not evaluated (unlabeled, static, ...) map to 255, none of our classes.
    """
    evaluator = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    from cityscapesscripts.helpers.labels import labels as table
    from PIL import Image

    rng = np.random.default_rng(0)
    ids = np.array([label.id for label in table if label.id >= 0])
    to_train = np.full(256, 255, np.int64)
    for label in table:
        if label.id >= 0 and not label.ignoreInEval:
            to_train[label.id] = label.trainId
    paths = []
    for index in range(3):
        gt = rng.choice(ids, (24, 32)).astype(np.uint8)
        noise = rng.choice(ids, gt.shape).astype(np.uint8)
        pred = np.where(rng.random(gt.shape) < 0.6, gt, noise)  # 60 % right, the rest any id
        pred[:, :4] = 0  # a strip predicted "unlabeled"
        pair = tmp_path / f"pred_{index}.png", tmp_path / f"gt_{index}_labelIds.png"
        Image.fromarray(pred).save(pair[0])
        Image.fromarray(gt).save(pair[1])
        paths.append(pair)
    args = evaluator.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False, False
    args.avgClassSize = {}
    official = evaluator.evaluateImgLists([str(p) for p, _ in paths], [str(g) for _, g in paths], args)["classScores"]

    cm = ConfusionMatrix(19, ignore_index=255)
    for pred_path, gt_path in paths:
        cm.update(to_train[np.asarray(Image.open(pred_path))], to_train[np.asarray(Image.open(gt_path))])
    ours = compute_metrics(cm.table()).per_class_iou
    assert cm.missed.sum() > 0
    for label in table:
        if label.id >= 0 and not label.ignoreInEval:
            assert ours[label.trainId] == pytest.approx(official[label.name], abs=1e-12), label.name
