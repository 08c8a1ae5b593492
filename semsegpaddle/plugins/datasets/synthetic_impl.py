"""An embedded, download-free dataset of procedurally drawn scenes (the quick start's default).

The task: on a cluttered background (colour gradients, low-frequency blotches, thin scribbles and
specks of any colour, all labelled background), segment a few overlapping objects of five
classes — a speckled disc, a checkered square, a dotted triangle, a plain ring and a striped bar —
each drawn with random size, position, rotation and brightness, its texture in two strongly
contrasting shades. Each class has a typical hue spread by ``hue_jitter`` degrees (at 180 the hue
is uniform and only shape and texture tell the class). Objects drawn later cover earlier ones (the
label follows the top one), pixel noise is added, and a thin band along every object boundary is
labelled ``ignore_index`` (255), like the "void" outlines of PASCAL VOC. Object classes are drawn
equally often, or by ``class_draw_weights`` (e.g. rare rings, to study class balance).

Every sample is a pure function of ``(seed, split, index)``: it is drawn on demand in
``__getitem__`` from its own random generator, identical in any process and any access order, and
the train and val splits come from different generator streams.

The dataset itself: the ``synthetic`` plugin module registers it and imports this module (cv2,
paddle) when a dataset is built.
"""
from __future__ import annotations

import colorsys
import operator
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from semsegpaddle.core.data.base import SegDataset, default_palette

CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "striped-bar")
SPLITS = {"train": 0, "val": 1}
IGNORE_INDEX = 255

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 pixel precision
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class SyntheticObject:
    """One drawn object: its class, its full mask, and the part of it left visible on top."""

    class_id: int
    mask: np.ndarray  # bool H×W: pixels the object covers before anything is drawn over it
    visible: np.ndarray  # bool H×W: pixels where it is the top object (before the ignore band)

    @property
    def occluded_fraction(self) -> float:
        """Share of the object's pixels covered by objects drawn after it."""
        area = int(self.mask.sum())
        return 0.0 if area == 0 else 1.0 - float(self.visible.sum()) / area


class SyntheticDataset(SegDataset):
    """Procedural scenes of textured, overlapping shapes on clutter; see the module docstring."""

    ignore_index = IGNORE_INDEX
    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        split: str,
        *,
        seed: int,
        image_size: int,
        length: int,
        min_objects: int,
        max_objects: int,
        max_distractors: int,
        noise_std: float,
        ignore_width: int,
        hue_jitter: float,
        class_draw_weights: list[float] | None = None,
    ) -> None:
        self.split = split
        self.seed = seed
        self.image_size = image_size
        self.length = length
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.max_distractors = max_distractors
        self.noise_std = noise_std
        self.ignore_width = ignore_width
        self.hue_jitter = hue_jitter
        self.class_draw_p = None if class_draw_weights is None else (
            np.asarray(class_draw_weights, dtype=np.float64) / float(np.sum(class_draw_weights)))
        self.palette = default_palette(self.num_classes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, label, _ = self._render(self._check_index(index), keep_objects=False)
        return image, label

    def describe(self, index: int) -> str:
        """E.g. ``synthetic train sample 3 (seed 0)``."""
        return f"synthetic {self.split} sample {index} (seed {self.seed})"

    def objects(self, index: int) -> list[SyntheticObject]:
        """The objects of sample ``index`` in drawing order (bottom first), for inspection and tests."""
        return self._render(self._check_index(index), keep_objects=True)[2]

    # ---------------------------------------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"sample index out of range for synthetic {self.split} ({self.length} samples)")
        return index

    def _render(self, index: int, keep_objects: bool) -> tuple[np.ndarray, np.ndarray, list[SyntheticObject]]:
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        size = self.image_size
        scale = size / 96.0  # sizes and texture periods are tuned at 96 px and scale with the image
        image = _background(rng, size, self.max_distractors, scale)
        label = np.zeros((size, size), dtype=np.uint8)
        drawn: list[tuple[int, np.ndarray]] = []  # (class, full mask), bottom first

        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        if self.class_draw_p is None:
            classes = rng.integers(1, self.num_classes, size=count)
        else:
            classes = rng.choice(np.arange(1, self.num_classes), size=count, p=self.class_draw_p)
        for class_id in classes:
            class_id = int(class_id)
            cx, cy = rng.uniform(0.1, 0.9, size=2) * size
            radius = rng.uniform(0.14, 0.28) * size
            angle = rng.uniform(0.0, np.pi)
            box, alpha, texture = _SHAPES[class_id](rng, cx, cy, radius, angle, size, scale)
            if box is None:
                continue
            y0, y1, x0, x1 = box
            fill = _colourise(rng, texture, _object_colour(rng, class_id, self.hue_jitter))
            a = alpha.astype(np.float32)[..., None] * (1.0 / 255.0)
            region = image[y0:y1, x0:x1]
            region *= 1.0 - a
            region += fill * a
            covered = alpha >= 128
            label[y0:y1, x0:x1][covered] = class_id
            if keep_objects:
                full = np.zeros((size, size), dtype=bool)
                full[y0:y1, x0:x1] = covered
                drawn.append((class_id, full))

        top = np.full((size, size), -1, dtype=np.int64)  # which drawn object owns each pixel
        for order, (_, full) in enumerate(drawn):
            top[full] = order
        objects = [SyntheticObject(c, full, top == order) for order, (c, full) in enumerate(drawn)]

        if self.ignore_width > 0:
            kernel = np.ones((self.ignore_width + 1, self.ignore_width + 1), dtype=np.uint8)
            band = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
            label[band] = IGNORE_INDEX

        if self.noise_std > 0:
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(self.noise_std)
        image = np.clip(image, 0.0, 255.0, out=image).astype(np.uint8)
        return image, label.astype(np.int64), objects


# -------------------------------------------------------------------------------------------------
# drawing
# -------------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int, max_distractors: int, scale: float) -> np.ndarray:
    """A float32 H×W×3 background: a two-colour gradient, smooth blotches, scribbles and specks."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = (ramp[None, :] * np.cos(theta) + ramp[:, None] * np.sin(theta)) * np.float32(1.0 / 1.42) + 0.5
    image = c0 + (c1 - c0) * t[..., None]
    cells = int(rng.integers(3, 6))
    blotches = rng.uniform(-45, 45, size=(cells, cells, 3)).astype(np.float32)
    image += cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)

    for _ in range(int(rng.integers(0, max_distractors + 1))):
        colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        if rng.random() < 0.6:  # a thin scribble of two or three segments
            points = (rng.uniform(0, size, size=(int(rng.integers(2, 4)), 2)) * _ONE).astype(np.int32)
            cv2.polylines(image, [points], False, colour, max(1, round(scale)), cv2.LINE_AA, _SHIFT)
        else:  # a cluster of specks
            centre = rng.uniform(0, size, size=2)
            for dx, dy in rng.normal(0, 6 * scale, size=(int(rng.integers(3, 8)), 2)):
                point = (int((centre[0] + dx) * _ONE), int((centre[1] + dy) * _ONE))
                cv2.circle(image, point, int(rng.uniform(0.7, 1.8) * scale * _ONE), colour, -1, cv2.LINE_AA, _SHIFT)
    return image


def _object_colour(rng: np.random.Generator, class_id: int, hue_jitter: float) -> np.ndarray:
    """An object's main colour (RGB float32): the class's hue ± ``hue_jitter`` degrees, random
    saturation and value. With ``hue_jitter`` ≥ 180 the hue is uniform: colour says nothing.

    Like grass and sky in real scenes, a class has a typical colour, but backgrounds and
    distractors take any colour, so a pixel's colour alone does not tell object from clutter.
    """
    if hue_jitter >= 180:
        hue = rng.uniform(0.0, 360.0)
    else:
        hue = (class_id - 1) * 360.0 / (len(CLASS_NAMES) - 1) + rng.uniform(-hue_jitter, hue_jitter)
    rgb = colorsys.hsv_to_rgb((hue % 360.0) / 360.0, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    return np.array(rgb, dtype=np.float32) * 255.0


def _colourise(rng: np.random.Generator, texture: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Map a texture in [0, 1] (h×w) to colour ``a`` and a much darker or lighter one (h×w×3).

    The strong brightness contrast keeps the texture visible whatever the hue.
    """
    if a.mean() > 127.5:
        b = a * np.float32(rng.uniform(0.15, 0.4))
    else:
        b = a + (255.0 - a) * np.float32(rng.uniform(0.6, 0.85))
    if rng.random() < 0.5:
        a, b = b, a
    return a + (b - a) * texture[..., None]


def _box(cx: float, cy: float, extent: float, size: int) -> tuple[int, int, int, int] | None:
    """Rows y0:y1 and columns x0:x1 of the image that a shape of this extent can touch."""
    x0, x1 = max(0, int(cx - extent) - 1), min(size, int(cx + extent) + 2)
    y0, y1 = max(0, int(cy - extent) - 1), min(size, int(cy + extent) + 2)
    return (y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None


def _frame(box: tuple[int, int, int, int], cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Box pixel coordinates in the object's rotated frame: (u, v), each h×w float32."""
    y0, y1, x0, x1 = box
    xs = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
    ys = np.arange(y0, y1, dtype=np.float32) - np.float32(cy)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = xs[None, :] * c + ys[:, None] * s
    v = ys[:, None] * c - xs[None, :] * s
    return u, v


def _canvas(box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    return np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)


def _local(box: tuple[int, int, int, int], points: np.ndarray) -> np.ndarray:
    """Image-space float points to fixed-point coordinates inside the box."""
    return np.round((points - np.array([box[2], box[0]])) * _ONE).astype(np.int32)


def _polygon(box: tuple[int, int, int, int], points: np.ndarray) -> np.ndarray:
    alpha = _canvas(box)
    cv2.fillPoly(alpha, [_local(box, points)], 255, cv2.LINE_AA, _SHIFT)
    return alpha


def _rotated(cx: float, cy: float, angle: float, local_points: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u, v = local_points[:, 0], local_points[:, 1]
    return np.stack([cx + u * c - v * s, cy + u * s + v * c], axis=1)


def _ellipse(box, cx, cy, axes, angle) -> np.ndarray:
    alpha = _canvas(box)
    centre = tuple(int(p) for p in _local(box, np.array([[cx, cy]]))[0])
    axes = (int(axes[0] * _ONE), int(axes[1] * _ONE))
    cv2.ellipse(alpha, centre, axes, float(np.degrees(angle)), 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    return alpha


Shape = Callable[..., tuple]


def _disc(rng, cx, cy, radius, angle, size, scale):
    """A slightly elliptic disc with a coarse speckled grain."""
    axes = (radius, radius * rng.uniform(0.8, 1.0))
    box = _box(cx, cy, radius, size)
    if box is None:
        return None, None, None
    y0, y1, x0, x1 = box
    grain = rng.random(((y1 - y0 + 1) // 2 + 1, (x1 - x0 + 1) // 2 + 1), dtype=np.float32)
    texture = np.repeat(np.repeat(grain, 2, axis=0), 2, axis=1)[: y1 - y0, : x1 - x0]
    return box, _ellipse(box, cx, cy, axes, angle), texture


def _square(rng, cx, cy, radius, angle, size, scale):
    """A rotated square with a checkerboard aligned to its sides."""
    half = radius * 0.85
    box = _box(cx, cy, half * 1.42, size)
    if box is None:
        return None, None, None
    corners = _rotated(cx, cy, angle, np.array([[-half, -half], [half, -half], [half, half], [-half, half]]))
    u, v = _frame(box, cx, cy, angle)
    cell = np.float32(rng.uniform(4.0, 7.0) * scale)
    texture = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    return box, _polygon(box, corners), texture


def _triangle(rng, cx, cy, radius, angle, size, scale):
    """A rotated, slightly irregular triangle covered in a grid of dots."""
    reach = radius * 1.15
    turns = angle + np.array([0.0, 2.0, 4.0]) * np.pi / 3 + rng.uniform(-0.25, 0.25, size=3)
    corners = np.stack([cx + reach * np.cos(turns), cy + reach * np.sin(turns)], axis=1)
    box = _box(cx, cy, reach, size)
    if box is None:
        return None, None, None
    u, v = _frame(box, cx, cy, angle)
    pitch = np.float32(rng.uniform(5.0, 8.0) * scale)
    du, dv = (u % pitch) - pitch / 2, (v % pitch) - pitch / 2
    texture = (du * du + dv * dv < (0.32 * pitch) ** 2).astype(np.float32)
    return box, _polygon(box, corners), texture


def _ring(rng, cx, cy, radius, angle, size, scale):
    """A plain, slightly elliptic ring (an outer ellipse minus an inner one)."""
    aspect = rng.uniform(0.8, 1.0)
    width = max(rng.uniform(0.45, 0.6) * radius, 4.0 * scale)
    inner = max(radius - width, 1.0)
    box = _box(cx, cy, radius, size)
    if box is None:
        return None, None, None
    outer_alpha = _ellipse(box, cx, cy, (radius, radius * aspect), angle)
    inner_alpha = _ellipse(box, cx, cy, (inner, inner * aspect), angle)
    texture = np.zeros(outer_alpha.shape, dtype=np.float32)
    return box, cv2.subtract(outer_alpha, inner_alpha), texture


def _bar(rng, cx, cy, radius, angle, size, scale):
    """A long rotated bar with stripes across its length."""
    half_len = radius * rng.uniform(1.3, 1.8)
    half_wid = max(radius * rng.uniform(0.35, 0.5), 4.0 * scale)
    box = _box(cx, cy, float(np.hypot(half_len, half_wid)), size)
    if box is None:
        return None, None, None
    corners = _rotated(
        cx, cy, angle, np.array([[-half_len, -half_wid], [half_len, -half_wid], [half_len, half_wid], [-half_len, half_wid]])
    )
    u, _ = _frame(box, cx, cy, angle)
    stripe = np.float32(rng.uniform(3.0, 5.0) * scale)
    texture = (np.floor(u / stripe) % 2).astype(np.float32)
    return box, _polygon(box, corners), texture


_SHAPES: dict[int, Shape] = {1: _disc, 2: _square, 3: _triangle, 4: _ring, 5: _bar}
