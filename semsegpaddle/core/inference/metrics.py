"""Segmentation metrics, all derived from one confusion matrix."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


class ConfusionMatrix:
    """Accumulates a num_classes × num_classes matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        """Add a prediction/label pair of equal shape; ignored pixels are skipped."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction shape {prediction.shape} != label shape {label.shape}")
        keep = label != self.ignore_index
        gt = label[keep].astype(np.int64)
        pred = prediction[keep].astype(np.int64)
        n = self.num_classes
        self.matrix += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix (e.g. from another process)."""
        self.matrix += other.matrix


@dataclass
class Metrics:
    """mIoU and friends; per-class values are NaN for classes absent from labels and predictions."""

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    fw_iou: float
    per_class_iou: list[float]
    per_class_accuracy: list[float]
    class_names: list[str]
    pixels: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; NaN becomes null."""
        def clean(v: float) -> float | None:
            return None if np.isnan(v) else round(float(v), 6)

        return {
            "mIoU": clean(self.miou), "pixel_accuracy": clean(self.pixel_accuracy),
            "mean_accuracy": clean(self.mean_accuracy), "fwIoU": clean(self.fw_iou), "pixels": self.pixels,
            "per_class": {name: {"IoU": clean(i), "accuracy": clean(a)}
                          for name, i, a in zip(self.class_names, self.per_class_iou, self.per_class_accuracy)},
        }

    def table(self) -> str:
        """A plain-text table of per-class IoU/accuracy and the summary figures."""
        width = max([len("class"), *(len(n) for n in self.class_names)])
        lines = [f"{'class':<{width}}  {'IoU':>7}  {'Acc':>7}"]
        for name, iou, acc in zip(self.class_names, self.per_class_iou, self.per_class_accuracy):
            fmt = lambda v: "     -" if np.isnan(v) else f"{100 * v:6.2f}"  # noqa: E731
            lines.append(f"{name:<{width}}  {fmt(iou):>7}  {fmt(acc):>7}")
        lines.append(f"mIoU {100 * self.miou:.2f}  pixel acc {100 * self.pixel_accuracy:.2f}  "
                     f"mean acc {100 * self.mean_accuracy:.2f}  fwIoU {100 * self.fw_iou:.2f}")
        return "\n".join(lines)


def compute_metrics(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> Metrics:
    """Metrics from a confusion matrix. mIoU averages classes that occur in labels or predictions."""
    matrix = matrix.astype(np.float64)
    tp = np.diag(matrix)
    gt = matrix.sum(axis=1)
    pred = matrix.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
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
    )
