"""Segmentation metrics, all derived from one confusion matrix."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


class ConfusionMatrix:
    """Accumulates a num_classes × num_classes matrix (rows: ground truth, columns: prediction).

    A predicted value that is none of the classes (255, -1, ≥ num_classes, as other tools'
    predictions may hold) counts in ``missed`` instead: a miss for the true class and a hit for no
    class, as the official Cityscapes evaluator counts it. :meth:`table` gives both together,
    the form :func:`compute_metrics` takes. Ground truth must hold classes or ``ignore_index``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        """Add a prediction/label pair of equal shape; pixels labelled ``ignore_index`` are skipped."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction shape {prediction.shape} != label shape {label.shape}")
        n = self.num_classes
        # one bincount over every pixel (no masked copies): rows are label values, so the ignore
        # value gets a row of its own, dropped below; predictions that are no class go to column n
        label = np.asarray(label)
        small = label.dtype.kind in "ui" and label.size and int(label.min()) >= 0 and int(label.max()) <= 0xFFFF
        if not small:  # negative or huge label values: check them one by one
            keep = label != self.ignore_index
            label, prediction = label[keep], np.asarray(prediction)[keep]
            outside = (label < 0) | (label >= n)
            if outside.any():
                bad = np.unique(label[outside])[:5].tolist()
                raise ValueError(f"label values {bad} are neither classes 0..{n - 1} nor ignore_index {self.ignore_index}")
            label = label.astype(np.int64)
        rows = int(label.max(initial=0)) + 1 if label.size else 1
        pred = np.asarray(prediction)
        if pred.dtype.kind not in "ui" or pred.size and (int(pred.min()) < 0 or int(pred.max()) >= n):
            pred = np.where((pred >= 0) & (pred < n), pred, n)
        index = label.astype(np.int64, copy=False) * (n + 1) + pred
        counts = np.bincount(index.ravel(), minlength=rows * (n + 1)).reshape(-1, n + 1)
        if counts.shape[0] > n:
            valid = np.ones(counts.shape[0], dtype=bool)
            valid[:n] = False
            if 0 <= self.ignore_index < counts.shape[0]:
                valid[self.ignore_index] = False
            if counts[valid].any():
                bad = np.flatnonzero(valid & counts.any(axis=1))[:5].tolist()
                raise ValueError(f"label values {bad} are neither classes 0..{n - 1} nor ignore_index {self.ignore_index}")
        counts = counts[:n]
        if counts.shape[0] < n:
            counts = np.vstack([counts, np.zeros((n - counts.shape[0], n + 1), dtype=counts.dtype)])
        self.matrix += counts[:, :n]
        self.missed += counts[:, n]

    def table(self) -> np.ndarray:
        """num_classes × (num_classes + 1): the matrix, then a column of the ``missed`` counts."""
        return np.column_stack([self.matrix, self.missed])

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix (e.g. from another process)."""
        self.matrix += other.matrix
        self.missed += other.missed


@dataclass
class Metrics:
    """mIoU and friends; per-class values are NaN for classes absent from labels and predictions.

    Dice (F1) of a class is 2·TP / (labelled + predicted pixels of it); ``mean_dice`` averages the
    classes that occur, as mIoU does. ``kappa`` is Cohen's kappa over the labelled pixels (NaN when
    chance agreement is 1: a single class in labels and predictions alike).
    """

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    fw_iou: float
    per_class_iou: list[float]
    per_class_accuracy: list[float]
    class_names: list[str]
    pixels: int
    per_class_dice: list[float] = field(default_factory=list)
    mean_dice: float = float("nan")
    kappa: float = float("nan")
    #: the table the figures come from: n × n, or n × (n + 1) with the "none of the classes" column
    confusion: np.ndarray | None = None

    def to_json(self, confusion: bool = False) -> dict[str, Any]:
        """A JSON-able dict; NaN becomes null. ``confusion`` adds the confusion table
        (``confusion_matrix``: rows ground truth, columns prediction, then "none" if present)."""
        def clean(v: float) -> float | None:
            return None if np.isnan(v) else round(float(v), 6)

        return {
            "mIoU": clean(self.miou), "pixel_accuracy": clean(self.pixel_accuracy),
            "mean_accuracy": clean(self.mean_accuracy), "fwIoU": clean(self.fw_iou),
            "mean_dice": clean(self.mean_dice), "kappa": clean(self.kappa), "pixels": self.pixels,
            "per_class": {name: {"IoU": clean(i), "accuracy": clean(a), "dice": clean(d)}
                          for name, i, a, d in zip(self.class_names, self.per_class_iou, self.per_class_accuracy,
                                                   self._dice())},
            **({"confusion_matrix": self.confusion.astype(np.int64).tolist()}
               if confusion and self.confusion is not None else {}),
        }

    def _dice(self) -> list[float]:
        return self.per_class_dice or [float("nan")] * len(self.class_names)

    def table(self) -> str:
        """A plain-text table of per-class IoU/accuracy and the summary figures."""
        width = max([len("class"), *(len(n) for n in self.class_names)])
        lines = [f"{'class':<{width}}  {'IoU':>7}  {'Acc':>7}  {'Dice':>7}"]
        fmt = lambda v: "     -" if np.isnan(v) else f"{100 * v:6.2f}"  # noqa: E731
        for name, iou, acc, dice in zip(self.class_names, self.per_class_iou, self.per_class_accuracy, self._dice()):
            lines.append(f"{name:<{width}}  {fmt(iou):>7}  {fmt(acc):>7}  {fmt(dice):>7}")
        lines.append(f"mIoU {100 * self.miou:.2f}  pixel acc {100 * self.pixel_accuracy:.2f}  "
                     f"mean acc {100 * self.mean_accuracy:.2f}  fwIoU {100 * self.fw_iou:.2f}  "
                     f"mDice {100 * self.mean_dice:.2f}  kappa {self.kappa:.4f}")
        return "\n".join(lines)


def compute_metrics(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> Metrics:
    """Metrics from a confusion matrix. mIoU averages classes that occur in labels or predictions.

    ``matrix`` is n × n, or n × (n + 1) with a last column of pixels predicted as none of the
    classes (:meth:`ConfusionMatrix.table`): misses of their true class, hits of no class.
    """
    matrix = matrix.astype(np.float64)
    n = matrix.shape[0]
    tp = np.diag(matrix[:, :n])
    gt = matrix.sum(axis=1)
    pred = matrix[:, :n].sum(axis=0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
        dice = np.where(union > 0, 2 * tp / (gt + pred), np.nan)
    total = matrix.sum()
    freq = gt / total if total else np.zeros_like(gt)
    names = list(class_names) if class_names else [str(i) for i in range(len(tp))]
    present = ~np.isnan(iou)
    return Metrics(
        miou=float(np.nanmean(iou)) if present.any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        mean_accuracy=float(np.nanmean(acc)) if (~np.isnan(acc)).any() else float("nan"),
        fw_iou=float(np.nansum(freq * np.nan_to_num(iou))),
        per_class_iou=iou.tolist(),
        per_class_accuracy=acc.tolist(),
        class_names=names,
        pixels=int(total),
        per_class_dice=dice.tolist(),
        mean_dice=float(np.nanmean(dice)) if present.any() else float("nan"),
        kappa=cohen_kappa(matrix),
        confusion=matrix.astype(np.int64),
    )


def cohen_kappa(matrix: np.ndarray) -> float:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) of a confusion table (n × n or n × (n + 1) as in
    :func:`compute_metrics`: pixels predicted as none of the classes agree with no label and
    add nothing to chance agreement). NaN without pixels or when p_e is 1."""
    matrix = matrix.astype(np.float64)
    n = matrix.shape[0]
    total = matrix.sum()
    if not total:
        return float("nan")
    observed = np.trace(matrix[:, :n]) / total
    chance = float((matrix.sum(axis=1) * matrix[:, :n].sum(axis=0)).sum() / total ** 2)
    return float("nan") if chance >= 1 else float((observed - chance) / (1 - chance))


def confusion_image(matrix: np.ndarray, class_names: Sequence[str] | None = None, cell: int = 28):
    """A PIL picture of a confusion table with rows normalised (each row: the share of a true
    class's pixels given to each prediction); class names label the rows (truth) and columns
    (prediction). A last "none" column shows pixels predicted as none of the classes, if any.
    Rows of classes without labelled pixels stay blank."""
    from PIL import Image, ImageDraw, ImageFont

    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if matrix.shape[1] > n and not matrix[:, n:].any():
        matrix = matrix[:, :n]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    columns = names + ["none"] * (matrix.shape[1] - n)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(rows > 0, matrix / rows, np.nan)
    font = ImageFont.load_default()
    text_width = lambda text: int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font))  # noqa: E731
    margin = max(text_width(name) for name in [*columns, "truth"]) + 12
    footer = "rows: truth, columns: prediction, % of each row"
    width, height = max(margin + cell * len(columns), text_width(footer)) + 8, margin + cell * n + 24
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    for i in range(n):
        draw.text((margin - 6 - text_width(names[i]), margin + i * cell + cell // 2 - 5), names[i], fill="black", font=font)
        for j in range(len(columns)):
            x, y = margin + j * cell, margin + i * cell
            value = share[i, j]
            if np.isnan(value):
                colour = (240, 240, 240)
            else:  # white (0) to dark blue (1)
                colour = tuple(int(255 - value * (255 - c)) for c in (8, 48, 107))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(200, 200, 200))
            if not np.isnan(value) and value >= 0.005:
                text = f"{100 * value:.0f}"
                draw.text((x + (cell - text_width(text)) // 2, y + cell // 2 - 5), text,
                          fill="white" if value > 0.5 else "black", font=font)
    labels = Image.new("RGB", (margin, cell * len(columns)), "white")  # column names, drawn sideways
    label_draw = ImageDraw.Draw(labels)
    for j, name in enumerate(columns):
        label_draw.text((6, j * cell + cell // 2 - 5), name, fill="black", font=font)
    picture.paste(labels.rotate(90, expand=True), (margin, 0))
    draw.text((4, height - 16), footer, fill="black", font=font)
    return picture


def save_confusion_png(matrix: np.ndarray, class_names: Sequence[str] | None, path: Any) -> None:
    """Write :func:`confusion_image` as a PNG file (atomically)."""
    from semsegpaddle.core.common.atomic import atomic_path

    with atomic_path(path) as tmp:
        confusion_image(matrix, class_names).save(tmp, format="PNG")
