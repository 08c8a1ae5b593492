"""The HTML of a run report: one self-contained page, charts as inline SVG, pictures as base64 PNG.

Pure rendering from plain values (numbers, lists, encoded PNG bytes): no paddle, no model. Every
figure that comes from the metrics carries ``data-metric`` (and ``data-class`` for per-class
values) so that tools and tests can read it back.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

#: the ids of the page's sections, in order
SECTIONS = ("summary", "per-class-iou", "confusion-matrix", "curves", "worst-images")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}th{text-align:left}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dl.summary dd{margin:0}
.note{color:#666;font-size:.9em}svg text{font-family:inherit}
figure.sample{display:inline-block;margin:0 0 16px 0;border:1px solid #ddd;padding:6px}
figure.sample img{image-rendering:pixelated;margin-right:4px;vertical-align:top}
figure.sample .panel{display:inline-block;text-align:center;font-size:.8em}
"""


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals (``-`` when absent)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


#: figures shown as they are (not as percentages)
PLAIN = ("kappa",)
LABELS = {"mIoU": "mIoU", "pixel_accuracy": "pixel accuracy", "mean_accuracy": "mean accuracy", "fwIoU": "fwIoU",
          "mean_dice": "mean Dice", "kappa": "Cohen's kappa", "accuracy": "accuracy", "dice": "Dice"}


def figure(key: str, value: float | None) -> str:
    """A metric as shown: a percentage with two decimals, kappa with four (``-`` when absent)."""
    if key in PLAIN:
        return "-" if value is None else f"{value:.4f}"
    return pct(value)


def heading(key: str) -> str:
    """A metric's column or row title."""
    return LABELS.get(key, key) + ("" if key in PLAIN else " (%)")


def png_img(data: bytes, alt: str, width: int, height: int) -> str:
    """An ``<img>`` holding PNG bytes inline."""
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}" '
            f'width="{width}" height="{height}">')


@dataclass
class Sample:
    """One of the worst validation images: its name, scores and four encoded panels."""

    name: str
    miou: float
    pixel_error: float
    panels: list[tuple[str, bytes]]  # (title, PNG bytes): input, ground truth, prediction, errors
    size: tuple[int, int]  # displayed (height, width)


@dataclass
class Curve:
    """One line of a chart: label, colour and (x, y) points."""

    label: str
    points: list[tuple[float, float]]
    colour: str = "#1f77b4"
    width: float = 2.0


@dataclass
class ReportPage:
    """Everything the page shows."""

    title: str
    facts: list[tuple[str, str]]  # (label, text) of the run: folder, checkpoint, mode, ...
    summary: dict[str, float | None]  # mIoU, pixel_accuracy, ... as Metrics.to_json gives them
    class_names: list[str]
    per_class: dict[str, dict[str, float | None]]  # class -> IoU, accuracy, ... (fractions)
    palette: list[tuple[int, int, int]]
    confusion: list[list[float]]  # rows: ground truth, normalised to sum 1 (or all 0)
    confusion_columns: list[str]  # class names, plus "none" when predictions left the classes
    train_curves: list[tuple[str, list[Curve], str]] = field(default_factory=list)  # (title, curves, y label)
    curve_notes: list[str] = field(default_factory=list)
    worst: list[Sample] = field(default_factory=list)
    worst_rule: str = ""


# -------------------------------------------------------------------------------------------------
# charts
# -------------------------------------------------------------------------------------------------


def bar_chart(names: Sequence[str], values: Sequence[float | None], colours: Sequence[tuple[int, int, int]]) -> str:
    """Horizontal bars of per-class IoU (0-100 %), one row per class, absent classes marked."""
    row, label_w, bar_w = 22, min(220, 12 + 7 * max([len(n) for n in names] + [4])), 420
    height = row * len(names) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{height}" '
             f'role="img" aria-label="per-class IoU">']
    for tick in range(0, 101, 25):
        x = label_w + bar_w * tick / 100
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{tick}%</text>')
    for i, (name, value) in enumerate(zip(names, values)):
        y = i * row + 4
        r, g, b = colours[i] if i < len(colours) else (31, 119, 180)
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(name)}</text>')
        if value is None or math.isnan(value):
            parts.append(f'<text x="{label_w + 4}" y="{y + 14}" font-size="11" fill="#888">absent</text>')
            continue
        w = bar_w * max(0.0, min(1.0, value))
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="rgb({r},{g},{b})" '
                     f'stroke="#555" stroke-width="0.5"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="11" data-metric="IoU" '
                     f'data-class="{escape(name)}">{pct(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heat_map(rows: Sequence[str], columns: Sequence[str], matrix: Sequence[Sequence[float]]) -> str:
    """A grid of row-normalised fractions: darker blue is more; each cell labelled in percent."""
    cell = 40 if len(columns) <= 12 else 26
    label_w = min(220, 12 + 7 * max(len(n) for n in [*rows, *columns, "truth"]))
    top = label_w
    width, height = label_w + cell * len(columns) + 10, top + cell * len(rows) + 10
    font = 10 if cell >= 40 else 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="confusion matrix">',
             f'<text x="{label_w + cell * len(columns) / 2:.0f}" y="12" font-size="12" text-anchor="middle">'
             f'prediction</text>']
    for j, name in enumerate(columns):
        x = label_w + j * cell + cell / 2
        parts.append(f'<text transform="translate({x + 4:.1f},{top - 6}) rotate(-60)" font-size="11">'
                     f'{escape(name)}</text>')
    for i, name in enumerate(rows):
        y = top + i * cell
        parts.append(f'<text x="{label_w - 6}" y="{y + cell / 2 + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{escape(name)}</text>')
        for j, value in enumerate(matrix[i]):
            shade = int(255 - 200 * value)
            ink = "#fff" if value > 0.5 else "#222"
            parts.append(f'<rect x="{label_w + j * cell}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade + (255 - shade) // 3},255)" stroke="#fff"/>'
                         f'<text x="{label_w + j * cell + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" '
                         f'font-size="{font}" text-anchor="middle" fill="{ink}" data-row="{i}" data-col="{j}">'
                         f'{100 * value:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(curves: Sequence[Curve], y_label: str, log_y: bool = False) -> str:
    """Lines over training steps with axes, ticks and a legend (``log_y``: logarithmic y axis)."""
    w, h, left, bottom, top, right = 520, 260, 60, 36, 12, 12
    points = [(x, y) for c in curves for x, y in c.points if math.isfinite(y) and (y > 0 or not log_y)]
    if not points:
        return '<p class="note">no finite values to plot</p>'
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs, ys = [p[0] for p in points], [fy(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    sy = lambda y: h - bottom - (fy(y) - y0) / (y1 - y0) * (h - bottom - top)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(curves)}" role="img" '
             f'aria-label="{escape(y_label)}">',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#444"/>',
             f'<text x="{(left + w - right) / 2:.0f}" y="{h - 4}" font-size="11" text-anchor="middle">step</text>',
             f'<text transform="translate(12,{(top + h - bottom) / 2:.0f}) rotate(-90)" font-size="11" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        value = 10 ** yv if log_y else yv
        y = sy(value)
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}</text>')
        xv = x0 + (x1 - x0) * k / 4
        tick = f"{xv:.0f}" if x1 - x0 >= 4 else f"{xv:.4g}"  # steps are whole numbers on longer runs
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - bottom + 14}" font-size="10" text-anchor="middle">'
                     f'{tick}</text>')
    for n, curve in enumerate(curves):
        finite = [(x, y) for x, y in curve.points if math.isfinite(y) and (y > 0 or not log_y)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        if len(finite) > 1:
            parts.append(f'<polyline fill="none" stroke="{curve.colour}" stroke-width="{curve.width}" '
                         f'points="{coords}"/>')
        parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{curve.colour}"/>'
                     for x, y in finite if len(finite) <= 50)
        ly = h + 14 + 18 * n
        parts.append(f'<line x1="{left}" y1="{ly - 4}" x2="{left + 20}" y2="{ly - 4}" stroke="{curve.colour}" '
                     f'stroke-width="{curve.width}"/><text x="{left + 26}" y="{ly}" font-size="11">'
                     f'{escape(curve.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -------------------------------------------------------------------------------------------------
# the page
# -------------------------------------------------------------------------------------------------


def render(page: ReportPage) -> str:
    """The whole HTML document of ``page``."""
    body = [f"<h1>{escape(page.title)}</h1>", _summary(page), _per_class(page), _confusion(page),
            _curves(page), _worst(page)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _section(section_id: str, title: str, content: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>\n{content}\n</section>'


def _summary(page: ReportPage) -> str:
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in page.facts)
    scores = "".join(f'<dt>{escape(heading(k))}</dt><dd data-metric="{escape(k)}">{figure(k, v)}</dd>'
                     for k, v in page.summary.items())
    return _section("summary", "Summary", f'<dl class="summary">{facts}{scores}</dl>')


def _per_class(page: ReportPage) -> str:
    keys = list(next(iter(page.per_class.values()), {}))
    rows = "".join(f'<tr><th>{escape(n)}</th>' + "".join(
        f'<td data-metric="{escape(k)}" data-class="{escape(n)}">{figure(k, page.per_class[n].get(k))}</td>'
        for k in keys) + "</tr>" for n in page.class_names)
    head = "".join(f"<th>{escape(heading(k))}</th>" for k in keys)
    table = f"<table><tr><th>class</th>{head}</tr>{rows}</table>"
    chart = bar_chart(page.class_names, [page.per_class[n].get("IoU") for n in page.class_names], page.palette)
    return _section("per-class-iou", "Per-class IoU", f'<div>{chart}</div>\n{table}')


def _confusion(page: ReportPage) -> str:
    note = ('<p class="note">Rows: ground truth, normalised to 100 %; columns: prediction. The diagonal is '
            'each class\'s accuracy. Ignored pixels are not counted.</p>')
    return _section("confusion-matrix", "Confusion matrix",
                    note + heat_map(page.class_names, page.confusion_columns, page.confusion))


def _curves(page: ReportPage) -> str:
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in page.curve_notes)
    charts = "".join(f'<figure><figcaption>{escape(title)}</figcaption>'
                     f'{line_chart(curves, y_label, log_y=y_label == "learning rate")}</figure>'
                     for title, curves, y_label in page.train_curves)
    return _section("curves", "Training and validation curves", notes + charts)


def _worst(page: ReportPage) -> str:
    figures = []
    for rank, sample in enumerate(page.worst, start=1):
        h, w = sample.size
        panels = "".join(f'<div class="panel">{png_img(data, f"{title} of {sample.name}", w, h)}<br>'
                         f'{escape(title)}</div>' for title, data in sample.panels)
        figures.append(f'<figure class="sample" data-rank="{rank}"><figcaption>#{rank} {escape(sample.name)}: '
                       f'image mIoU {pct(sample.miou)} %, pixel error {pct(sample.pixel_error)} %</figcaption>'
                       f'{panels}</figure>')
    legend = ('<p class="note">' + escape(page.worst_rule) + ' Error map: red = wrong, grey = right '
              '(the darkened image), blue = ignored.</p>')
    return _section("worst-images", f"The {len(page.worst)} worst validation images",
                    legend + ("<br>".join(figures) or '<p class="note">no images</p>'))

