"""Dice/F1, Cohen's kappa and the confusion-matrix picture, against matrices computed by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.inference.metrics import (
    ConfusionMatrix,
    cohen_kappa,
    compute_metrics,
    confusion_image,
    save_confusion_png,
)

# 4 classes; class 3 is never labelled (predicted only on ignored pixels), 255 is ignored
LABEL = np.array([[0, 0, 0, 0],
                  [1, 1, 1, 255],
                  [2, 2, 255, 255]])
PREDICTION = np.array([[0, 0, 0, 1],
                       [1, 1, 0, 3],
                       [1, 2, 0, 0]])
#: by hand: rows truth, columns prediction, over the 9 labelled pixels
EXPECTED = [[3, 1, 0, 0],
            [1, 2, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0]]


def metrics():
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(PREDICTION, LABEL)
    assert cm.matrix.tolist() == EXPECTED
    return compute_metrics(cm.table(), ["a", "b", "c", "d"])


def test_dice_and_kappa_by_hand_with_ignore_pixels_and_an_absent_class():
    m = metrics()
    # labelled: [4, 3, 2, 0], predicted: [4, 4, 1, 0], hits [3, 2, 1, 0]
    assert m.per_class_iou[:3] == pytest.approx([3 / 5, 2 / 5, 1 / 2])
    assert m.per_class_dice[:3] == pytest.approx([6 / 8, 4 / 7, 2 / 3])
    assert math.isnan(m.per_class_iou[3]) and math.isnan(m.per_class_dice[3])
    assert m.mean_dice == pytest.approx((6 / 8 + 4 / 7 + 2 / 3) / 3)
    # p_o = 6/9, p_e = (4·4 + 3·4 + 2·1) / 81 = 30/81  ->  kappa = (2/3 - 10/27) / (17/27) = 8/17
    assert m.kappa == pytest.approx(8 / 17)
    # dice = 2 IoU / (1 + IoU) for every present class
    for iou, dice in zip(m.per_class_iou[:3], m.per_class_dice[:3]):
        assert dice == pytest.approx(2 * iou / (1 + iou))


def test_predictions_outside_the_classes_count_in_dice_and_kappa_as_misses():
    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 255, 1, 0]]), np.array([[0, 0, 1, 1]]))
    m = compute_metrics(cm.table())
    # matrix [[1, 0], [1, 1]], one pixel of class 0 predicted as none: labelled [2, 2], predicted [2, 1]
    assert m.per_class_dice == pytest.approx([2 / 4, 2 / 3])
    # p_o = 2/4, p_e = (2·2 + 2·1)/16 = 3/8 -> kappa = (1/2 - 3/8) / (5/8) = 1/5
    assert m.kappa == pytest.approx(1 / 5)
    # dropping the miss instead: p_o = 2/3, p_e = (1·2 + 2·1)/9 -> (6/9 - 4/9) / (5/9) = 2/5
    assert cohen_kappa(cm.matrix) == pytest.approx(2 / 5)


def test_kappa_is_nan_without_pixels_or_when_chance_agreement_is_total():
    assert math.isnan(cohen_kappa(np.zeros((3, 3))))
    assert math.isnan(cohen_kappa(np.array([[5, 0], [0, 0]])))
    assert cohen_kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)
    assert cohen_kappa(np.array([[0, 5], [5, 0]])) == pytest.approx(-1.0)


def test_json_and_table_carry_dice_kappa_and_the_matrix_on_request():
    m = metrics()
    plain = m.to_json()
    assert "confusion_matrix" not in plain
    data = json.loads(json.dumps(m.to_json(confusion=True)))  # JSON-able: NaN became null
    assert data["kappa"] == pytest.approx(8 / 17, abs=1e-6)
    assert data["mean_dice"] == pytest.approx((6 / 8 + 4 / 7 + 2 / 3) / 3, abs=1e-6)
    assert data["per_class"]["b"]["dice"] == pytest.approx(4 / 7, abs=1e-6)
    assert data["per_class"]["d"] == {"IoU": None, "accuracy": None, "dice": None}
    assert data["confusion_matrix"] == [row + [0] for row in EXPECTED]
    table = m.table()
    assert "Dice" in table.splitlines()[0]
    assert ["b", "40.00", "66.67", "57.14"] in [line.split() for line in table.splitlines()]
    assert f"kappa {8 / 17:.4f}" in table and "mDice 66.27" in table


def _margin(names):
    """Where the grid starts (both axes): the widest name plus 12 px, as the picture lays it out."""
    from PIL import ImageDraw, ImageFont

    draw, font = ImageDraw.Draw(Image.new("L", (1, 1))), ImageFont.load_default()
    return max(int(draw.textlength(n, font=font)) for n in [*names, "none", "truth"]) + 12


def test_the_confusion_picture_is_row_normalised_with_class_names_as_labels(tmp_path):
    matrix = np.array([[8, 2, 0], [0, 5, 0], [0, 0, 0]])
    names = ["road", "sidewalk", "never-seen"]
    save_confusion_png(matrix, names, tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as saved:
        assert saved.format == "PNG" and saved.mode == "RGB"
        picture = np.asarray(saved)
    assert picture.shape == np.asarray(confusion_image(matrix, names)).shape
    # cells: sidewalk→sidewalk 100 % (darkest), road→road 80 %, road→sidewalk 20 %, sidewalk→road 0 %
    # (white); the row of a class without pixels is blank grey. Read each cell near its corner.
    cell, margin = 28, _margin(names)
    corner = lambda i, j: picture[margin + i * cell + 2, margin + j * cell + 2].astype(int)  # noqa: E731
    assert corner(1, 1).sum() < corner(0, 0).sum() < corner(0, 1).sum() < corner(1, 0).sum() == 3 * 255
    assert corner(2, 2).tolist() == [240, 240, 240]
    assert corner(0, 0).tolist() == [int(255 - 0.8 * (255 - c)) for c in (8, 48, 107)]
    # the names are drawn left of the rows: dark pixels in the label band of each row
    for row in range(3):
        band = picture[margin + row * cell: margin + (row + 1) * cell, :margin - 4]
        assert (band.sum(axis=2) < 300).any()
    # the larger the share, the darker: a row split 50/50 sits between 80 % and 20 %
    half = np.asarray(confusion_image(np.array([[5, 5, 0], [0, 5, 0], [0, 0, 0]]), names))
    assert corner(0, 0).sum() < half[margin + 2, margin + 2].astype(int).sum() < corner(0, 1).sum()


def test_a_none_column_is_drawn_only_when_pixels_were_predicted_as_no_class():
    names = [f"class{i}" for i in range(12)]
    matrix = np.eye(12, dtype=np.int64) * 3
    plain = confusion_image(matrix, names)
    with_none = confusion_image(np.column_stack([matrix, np.r_[1, np.zeros(11, int)]]), names)
    assert with_none.size == (plain.size[0] + 28, plain.size[1])
    assert confusion_image(np.column_stack([matrix, np.zeros(12, int)]), names).size == plain.size
