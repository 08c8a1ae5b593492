"""A run report: the best checkpoint re-evaluated on the validation split, as one HTML page.

The page (see :mod:`semsegpaddle.core.engine.report_html`) shows the metrics, per-class IoU,
the row-normalised confusion matrix, the curves of ``train_log.jsonl`` / ``eval_log.jsonl`` and
the N validation images the model does worst on (by per-image mIoU, or by pixel error). Inference
uses the config's inference mode through one :class:`Segmenter`; only the N worst images are kept
in memory while the split is predicted.
"""
from __future__ import annotations

import heapq
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from semsegpaddle.core.common.atomic import write_text_atomic
from semsegpaddle.core.engine.run_folder import BEST, EVAL_LOG, TRAIN_LOG
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.metrics import ConfusionMatrix, Metrics, compute_metrics
from semsegpaddle.core.inference.prediction import check_rgb_bands, overlay_picture
from semsegpaddle.core.engine.report_html import Curve, ReportPage, Sample, render

REPORT = "report.html"
RANKINGS = ("miou", "error")
#: longest side of the pictures embedded in the page (larger images are shrunk for display)
MAX_SIDE = 384
MIN_SIDE = 128
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


@dataclass
class ReportResult:
    """Where the page went and the metrics it shows."""

    path: Path
    metrics: Metrics


def check_run_folder(run_dir: str | Path) -> Path:
    """The run folder, or a one-line error naming what a report needs and does not find."""
    path = Path(run_dir)
    if not path.is_dir():
        raise SemsegError(f"{path}: no such folder; expected a run folder written by `semseg train`")
    missing = [name for name in (BEST, TRAIN_LOG, EVAL_LOG) if not (path / name).is_file()]
    if missing:
        raise SemsegError(f"{path}: cannot report on this run: missing {', '.join(missing)} "
                          f"(a run folder written by `semseg train` holds them)")
    return path


def report_run(run_dir: str | Path, overrides: Iterable[str] = (), *, worst: int = 8, rank_by: str = "miou",
               rgb_bands: Sequence[int] | str | None = None,
               split: str | None = None) -> ReportResult:
    """Write ``RUN_DIR/report.html`` for the run's best checkpoint with the config stored in it
    (``overrides`` on top, e.g. ``dataset.root=...`` when the data moved)."""
    from semsegpaddle.core.engine.restore import resolve_config

    folder = check_run_folder(run_dir)
    config, weights = resolve_config(None, list(overrides), folder / BEST)
    return write_report(config, folder, weights, worst=worst, rank_by=rank_by, split=split, rgb_bands=rgb_bands)


def write_report(config: dict[str, Any], run_dir: str | Path, weights: str | Path | None = None, *, worst: int = 8,
                 rank_by: str = "miou", split: str | None = None, backend: str = "dynamic",
                 model_dir: str | Path | None = None, rgb_bands: Sequence[int] | str | None = None) -> ReportResult:
    """Evaluate ``weights`` (default: the run's best checkpoint) or an export (``backend``
    ``paddle-inference`` with ``model_dir``) on the config's validation split (or ``split``) and
    write ``run_dir/report.html`` atomically; the curves come from the logs in ``run_dir`` (a note
    says so when there are none). The input pictures of a model of ``model.in_channels`` ≠ 3 show
    the 1-based ``rgb_bands`` (default: the first three, or band 1 as gray), stretched as
    ``predict --overlay`` does."""
    from semsegpaddle.core.engine.restore import load_backend
    from semsegpaddle.core.data.datasets import create_dataset
    from semsegpaddle.core.engine.trainer import setup_runtime
    from semsegpaddle.core.inference.segmenter import InferenceMode, Segmenter

    if worst < 0:
        raise SemsegError(f"--worst: expected a number of images ≥ 0, got {worst}")
    if rank_by not in RANKINGS:
        raise SemsegError(f"--rank-by: expected one of {', '.join(RANKINGS)}, got {rank_by!r}")
    shown_bands = check_rgb_bands(rgb_bands, config["model"]["in_channels"])
    run_dir = Path(run_dir)
    mode = InferenceMode.from_config(config)
    setup_runtime(config)
    split = split or config["dataset"]["val_split"]
    dataset = create_dataset(config, split)
    weights = None if backend != "dynamic" else Path(weights or run_dir / BEST)
    runner = load_backend(config, weights, backend=backend, model_dir=model_dir, num_classes=dataset.num_classes)
    segmenter = Segmenter(runner, mode)
    matrix, samples = predict_split(segmenter, dataset, worst, rank_by, config["eval"]["batch_size"],
                                    config["runtime"]["progress"])
    names = list(dataset.class_names) or [str(i) for i in range(dataset.num_classes)]
    metrics = compute_metrics(matrix.table(), names)
    saved = metrics.to_json()  # the figures exactly as metrics.json and eval_metrics.json hold them
    palette = _palette(dataset)
    facts = [("run folder", str(run_dir)),
             ("model", str(weights) if weights is not None else f"{model_dir} (paddle-inference)"),
             *_checkpoint_facts(weights),
             ("dataset", f"{config['dataset']['name']}, split {split}, {len(dataset)} images, "
                         f"{metrics.pixels} labelled pixels"),
             ("inference", mode.describe()),
             ("written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    page = ReportPage(
        title=f"semsegpaddle report: {run_dir.resolve().name}", facts=facts,
        summary={k: v for k, v in saved.items() if k != "pixels" and (v is None or isinstance(v, (int, float)))},
        class_names=names, per_class=saved["per_class"],
        palette=[tuple(int(c) for c in colour) for colour in palette[:len(names)]],
        confusion=normalised_rows(matrix), confusion_columns=names + (["none"] if matrix.missed.any() else []),
        worst=[_sample(s, palette, dataset.ignore_index, shown_bands) for s in samples],
        worst_rule=("Ranked by per-image mIoU (lowest first), ties by pixel error." if rank_by == "miou"
                    else "Ranked by the fraction of labelled pixels predicted wrong (highest first)."))
    page.train_curves, page.curve_notes = log_curves(run_dir, names)
    target = run_dir / REPORT
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, render(page))
    return ReportResult(target, metrics)


# -------------------------------------------------------------------------------------------------
# predicting and ranking
# -------------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """A validation image with its prediction and scores."""

    index: int
    name: str
    miou: float
    pixel_error: float
    image: np.ndarray
    label: np.ndarray
    prediction: np.ndarray


def image_scores(prediction: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int) -> tuple[float, float]:
    """(mIoU, pixel error) of one image; mIoU over the classes in its label or prediction, NaN
    (and error NaN) when every pixel is ignored."""
    single = ConfusionMatrix(num_classes, ignore_index)
    single.update(prediction, label)
    metrics = compute_metrics(single.table())
    return metrics.miou, 1.0 - metrics.pixel_accuracy if metrics.pixels else float("nan")


def _badness(miou: float, error: float, rank_by: str) -> tuple[float, float]:
    """Larger is worse; images with no labelled pixel rank last."""
    if math.isnan(miou) or math.isnan(error):
        return (-math.inf, -math.inf)
    return (-miou, error) if rank_by == "miou" else (error, -miou)


def predict_split(segmenter: Any, dataset: Any, worst: int, rank_by: str = "miou", batch_size: int = 1,
                  progress: bool = True) -> tuple[ConfusionMatrix, list[Scored]]:
    """Segment every image of ``dataset``: the summed confusion matrix and the ``worst`` images
    (worst first). Images of one size are batched when the mode is a single pass."""
    from semsegpaddle.core.data.datasets import checked_sample

    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    heap: list[tuple[tuple[float, float], int, Scored]] = []  # the worst so far; heap[0] is the mildest
    batch_size = batch_size if segmenter.mode.single_pass else 1
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        predictions = segmenter.masks([image for _, image, _ in pending])
        for prediction, (index, image, label) in zip(predictions, pending):
            matrix.update(prediction, label)
            miou, error = image_scores(prediction, label, dataset.num_classes, dataset.ignore_index)
            key = _badness(miou, error, rank_by)
            if worst and (len(heap) < worst or key > heap[0][0]):
                item = Scored(index, _describe(dataset, index), miou, error, image, label, prediction.astype(np.int32))
                entry = (key, -index, item)  # on equal keys the earlier image wins
                heapq.heappush(heap, entry) if len(heap) < worst else heapq.heapreplace(heap, entry)
        pending.clear()

    with tqdm(total=len(dataset), desc="report", unit="img", disable=not progress, leave=False,
              dynamic_ncols=True) as bar:
        for index in range(len(dataset)):
            image, label = checked_sample(dataset, index)
            if pending and (len(pending) == batch_size or pending[0][1].shape != image.shape):
                bar.update(len(pending))
                flush()
            pending.append((index, image, label))
        if pending:
            bar.update(len(pending))
            flush()
    return matrix, [item for _, _, item in sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)]


def _checkpoint_facts(weights: Path | None) -> list[tuple[str, str]]:
    """What the checkpoint records of itself: its step and the validation mIoU that made it the best."""
    if weights is None:
        return []
    from semsegpaddle.core.engine.checkpoint import read_metadata

    meta = read_metadata(weights)
    if "step" not in meta:
        return []
    recorded = f", recorded validation mIoU {100 * float(meta['miou']):.2f} %" if "miou" in meta else ""
    return [("checkpoint", f"step {meta['step']}{recorded}")]


def _describe(dataset: Any, index: int) -> str:
    describe = getattr(dataset, "describe", None)
    return describe(index) if callable(describe) else f"sample {index}"


def normalised_rows(matrix: ConfusionMatrix) -> list[list[float]]:
    """Rows of the confusion matrix (with the "none of the classes" column when it is not empty)
    divided by their sums; a class without labelled pixels gives a row of zeros."""
    table = matrix.table() if matrix.missed.any() else matrix.matrix
    sums = table.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(table, sums, out=np.zeros(table.shape), where=sums > 0).tolist()


# -------------------------------------------------------------------------------------------------
# pictures
# -------------------------------------------------------------------------------------------------


def _palette(dataset: Any) -> np.ndarray:
    from semsegpaddle.core.data.base import default_palette

    palette = getattr(dataset, "palette", None)
    palette = np.asarray(palette if palette is not None else default_palette(dataset.num_classes), dtype=np.uint8)
    if len(palette) < dataset.num_classes:
        palette = np.concatenate([palette, default_palette(dataset.num_classes)[len(palette):]]).astype(np.uint8)
    return palette


def colour_mask(mask: np.ndarray, palette: np.ndarray, ignore_index: int) -> np.ndarray:
    """H×W×3 RGB of a class map; ignored and out-of-range values are black."""
    valid = (mask >= 0) & (mask < len(palette)) & (mask != ignore_index)
    out = np.zeros((*mask.shape, 3), np.uint8)
    out[valid] = palette[mask[valid]]
    return out


def error_map(image: np.ndarray, prediction: np.ndarray, label: np.ndarray, ignore_index: int) -> np.ndarray:
    """H×W×3 RGB: the image darkened to grey where right, red where wrong, blue where ignored."""
    grey = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.45 + 20).astype(np.uint8)
    out = np.repeat(grey[..., None], 3, axis=2)
    ignored = label == ignore_index
    out[(prediction != label) & ~ignored] = (230, 30, 30)
    out[ignored] = (70, 110, 230)
    return out


def _scaled(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def picture_sizes(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stored, displayed) sizes of a picture: stored at most ``MAX_SIDE`` on its longest side;
    displayed at least ``MIN_SIDE`` (small images are enlarged by the browser, pixels kept sharp)."""
    longest = max(height, width)
    stored = _scaled(height, width, min(1.0, MAX_SIDE / longest))
    return stored, _scaled(height, width, min(MAX_SIDE, max(MIN_SIDE, longest)) / longest)


def encode_png(rgb: np.ndarray, size: tuple[int, int], nearest: bool) -> bytes:
    """PNG bytes of an RGB picture resized to ``size`` (height, width)."""
    if rgb.shape[:2] != size:
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise SemsegError("could not encode a report picture as PNG")
    return data.tobytes()


def _sample(scored: Scored, palette: np.ndarray, ignore_index: int, rgb_bands: Sequence[int] = (1, 2, 3)) -> Sample:
    size, shown = picture_sizes(*scored.image.shape[:2])
    picture = overlay_picture(scored.image, rgb_bands)  # RGB images as they are
    named = "input" if scored.image.shape[2] == 3 and tuple(rgb_bands) == (1, 2, 3) else \
        f"input (bands {','.join(map(str, rgb_bands))})"
    panels = [(named, encode_png(picture, size, nearest=False)),
              ("ground truth", encode_png(colour_mask(scored.label, palette, ignore_index), size, nearest=True)),
              ("prediction", encode_png(colour_mask(scored.prediction, palette, -1), size, nearest=True)),
              ("errors", encode_png(error_map(picture, scored.prediction, scored.label, ignore_index), size,
                                    nearest=True))]
    return Sample(scored.name, scored.miou, scored.pixel_error, panels, shown)


# -------------------------------------------------------------------------------------------------
# logs
# -------------------------------------------------------------------------------------------------


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log that have a ``step``; torn or foreign lines are skipped."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    return records


def _points(records: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in records if isinstance(r.get(key), (int, float))]


def log_curves(run_dir: Path, class_names: Sequence[str]) -> tuple[list[tuple[str, list[Curve], str]], list[str]]:
    """Charts (title, curves, y label) of the training loss, learning rate and validation mIoU
    (with per-class IoU) from the run's logs, and notes on what was not found."""
    train, evals = read_log(run_dir / TRAIN_LOG), read_log(run_dir / EVAL_LOG)
    charts, notes = [], []
    if train:
        charts.append(("Training loss", [Curve("loss", _points(train, "loss"))], "loss"))
        charts.append(("Learning rate", [Curve("lr", _points(train, "lr"), COLOURS[1])], "learning rate"))
    else:
        notes.append(f"no training records in {run_dir / TRAIN_LOG}")
    if evals:
        curves = [Curve("mIoU", [(x, 100 * y) for x, y in _points(evals, "mIoU")], "#000", 2.5)]
        for n, name in enumerate(class_names):
            points = [(float(r["step"]), 100 * float(r["per_class"][name]["IoU"])) for r in evals
                      if isinstance(r.get("per_class"), dict) and isinstance(r["per_class"].get(name), dict)
                      and isinstance(r["per_class"][name].get("IoU"), (int, float))]
            curves.append(Curve(f"IoU {name}", points, COLOURS[n % len(COLOURS)], 1.0))
        charts.append(("Validation mIoU and per-class IoU", curves, "IoU (%)"))
    else:
        notes.append(f"no validation records in {run_dir / EVAL_LOG}")
    return charts, notes
