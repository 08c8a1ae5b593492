"""``semseg check-data``: read every sample of a config's dataset splits and report what would spoil training.

Found per split: files that are missing or do not pair up, unreadable or truncated images and
masks, masks of another size than their image, mask values outside the classes and the ignore
index, JPEG masks (lossy), colour (RGB) masks read as ids, colours outside the palette, images of
another band count than ``model.in_channels`` (every band of TIFF images is read, 16-bit ones on
the 0-255 scale); and the pixel count of each class. Each problem comes with its likely cause and, where one exists, the
config line that fixes it (``dataset.label_map={255: 1}``, ``dataset.reduce_zero_label=true``,
``dataset.color_masks=true``, ...).

Beside the problems, the scan keeps what ``--write-config`` infers fixes from
(:class:`SplitStats`: the raw mask values and colours with their pixel counts, the values that
only ever form thin rims, the images' per-channel sums). A folder dataset whose ``num_classes``
is not set can be scanned with a provisional count (:func:`load_check_config`), so that the
count can be inferred from the masks.

Datasets are built through the registry (``build_component``), never through
``core.data.datasets``, so checking data imports neither paddle nor cv2 (a dataset plugin may).
:class:`~semsegpaddle.core.data.file_dataset.FileDataset` datasets are checked file by file, with
the raw mask values before mapping; other datasets through ``dataset[i]``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.plugin.manager import get_registry
from semsegpaddle.core.config.loader import Config, load_config, merge_into, validate_config
from semsegpaddle.core.config.schema import SCHEMA
from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.data.file_dataset import FileDataset, collect_pairing_problems
from semsegpaddle.core.data.image_io import TIFF_EXTENSIONS, count_bands, read_bands, read_image
from semsegpaddle.core.common.errors import SemsegError

#: label values tallied exactly (16-bit masks); larger raw values are counted in one bin
RAW_BINS = 65536
#: Pillow modes of colour masks (values are colours, not class ids)
COLOUR_MODES = ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa")
FILES_SHOWN = 5
#: a mask value must fill a square of this side somewhere to count as a region; values that never
#: do lie only in thin structures, such as the 'unlabelled' rims some tools paint along object borders
REGION_SIDE = 7
#: masks holding more distinct values than this are smeared (lossy or interpolated), not searched for rims
REGION_SEARCH_LIMIT = 64
#: the config source recorded for a num_classes that check-data set only to be able to scan
PROVISIONAL = "check-data (num_classes not set)"
#: the config source recorded for model.mean / model.std that check-data set only to be able to
#: scan images of model.in_channels ≠ 3 bands (the defaults are ImageNet's three RGB values)
PROVISIONAL_STATISTICS = "check-data (model.mean/std not set for model.in_channels)"
_LEVELS = np.arange(256, dtype=np.int64)


@dataclass
class Problem:
    """One kind of problem in one split: what, which files, the likely cause and the fix."""

    split: str
    kind: str  # dataset, pairing, missing, unreadable, size, values, jpeg-mask, rgb-mask, colours, id-mask
    message: str
    files: list[str] = field(default_factory=list)
    cause: str = ""
    fix: str = ""

    def text(self) -> str:
        """Several indented lines for the terminal."""
        lines = [f"PROBLEM [{self.split}] {self.message}"]
        if self.files:
            more = f" (+{len(self.files) - FILES_SHOWN} more)" if len(self.files) > FILES_SHOWN else ""
            lines.append(f"  files: {', '.join(self.files[:FILES_SHOWN])}{more}")
        if self.cause:
            lines.append(f"  likely cause: {self.cause}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


@dataclass
class SplitReport:
    """What one split holds: samples and per-class pixel and image counts."""

    split: str
    samples: int
    num_classes: int
    ignore_index: int
    class_names: list[str]
    class_pixels: list[int]
    class_images: list[int]
    ignored_pixels: int
    other_pixels: int  # pixels whose value is neither a class nor ignore
    #: raw mask value -> pixels, set (and shown instead of the classes) when num_classes is not set
    values: dict[int, int] | None = None

    def table(self) -> str:
        """The per-class table (the raw mask values while num_classes is not set)."""
        if self.values is not None:
            return self._values_table(self.values)
        total = sum(self.class_pixels) + self.ignored_pixels + self.other_pixels
        names = self.class_names or [""] * self.num_classes
        width = max([len("class"), len(f"ignore ({self.ignore_index})"), *(len(n) for n in names)])
        rows = [f"  {'id':>4}  {'class':<{width}}  {'pixels':>14}  {'share':>7}  {'images':>7}"]

        def row(ident: str, name: str, pixels: int, images: str) -> str:
            share = f"{100 * pixels / total:6.2f}%" if total else "      -"
            return f"  {ident:>4}  {name:<{width}}  {pixels:>14,}  {share:>7}  {images:>7}".rstrip()

        for index, name in enumerate(names):
            rows.append(row(str(index), name, self.class_pixels[index], str(self.class_images[index])))
        rows.append(row("-", f"ignore ({self.ignore_index})", self.ignored_pixels, ""))
        if self.other_pixels:
            rows.append(row("-", "invalid", self.other_pixels, ""))
        return "\n".join(rows)

    @staticmethod
    def _values_table(values: dict[int, int]) -> str:
        if not values:
            return "  (num_classes is not set; no class-id mask was read)"
        total = sum(values.values())
        rows = ["  (num_classes is not set: the raw mask values)", f"  {'value':>6}  {'pixels':>14}  {'share':>7}"]
        rows += [f"  {value:>6}  {pixels:>14,}  {100 * pixels / total:6.2f}%" for value, pixels in values.items()]
        return "\n".join(rows)


@dataclass
class SplitStats:
    """What the files of one split show beyond the class counts: what ``--write-config`` infers from."""

    split: str
    #: raw mask value (before the label options) -> pixels
    values: dict[int, int] = field(default_factory=dict)
    #: values that fill a REGION_SIDE square somewhere (the others only form thin structures)
    region_values: set[int] = field(default_factory=set)
    #: colour masks: colour -> pixels, and the colours that fill a REGION_SIDE square somewhere
    colours: dict[tuple[int, int, int], int] = field(default_factory=dict)
    region_colours: set[tuple[int, int, int]] = field(default_factory=set)
    colour_masks: int = 0
    crowded_masks: int = 0  # masks holding more than REGION_SEARCH_LIMIT values or colours
    jpeg_masks: int = 0
    images: int = 0
    pixels: int = 0  # image pixels (per band)
    #: per band: sums and sums of squares of the pixels (exact integers for 8-bit images)
    channel_sums: list[float] = field(default_factory=list)
    channel_squares: list[float] = field(default_factory=list)

    @property
    def thin_values(self) -> list[int]:
        """Values that never fill a REGION_SIDE square: rims, edges, thin lines."""
        return sorted(set(self.values) - self.region_values)

    @property
    def thin_colours(self) -> list[tuple[int, int, int]]:
        """Colours that never fill a REGION_SIDE square."""
        return sorted(set(self.colours) - self.region_colours)

    def mean(self) -> list[float]:
        """Per-band (R, G, B for RGB) mean of the images' pixels, 0-255 (16-bit bands scaled to it)."""
        return [s / self.pixels for s in self.channel_sums]

    def std(self) -> list[float]:
        """Per-band population standard deviation of the images' pixels, on the scale of :meth:`mean`."""
        n = self.pixels
        return [math.sqrt(max(q * n - s * s, 0)) / n for s, q in zip(self.channel_sums, self.channel_squares)]


@dataclass
class DataReport:
    """The result of ``semseg check-data``."""

    dataset: str
    splits: list[SplitReport]
    problems: list[Problem]
    #: split -> what its files show beyond the class counts (not part of the JSON report)
    stats: dict[str, SplitStats] = field(default_factory=dict)
    #: False when the dataset's num_classes was not set and the scan used a provisional count
    num_classes_known: bool = True

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """The one-line verdict."""
        samples = sum(s.samples for s in self.splits)
        names = ", ".join(s.split for s in self.splits) or "none readable"
        if self.ok:
            return f"check-data: OK, {samples} samples in split(s) {names}, no problems"
        per_split: dict[str, int] = {}
        for problem in self.problems:
            per_split[problem.split] = per_split.get(problem.split, 0) + 1
        where = ", ".join(f"{split}: {count}" for split, count in per_split.items())
        return f"check-data: {len(self.problems)} problem(s) found ({where}) in {samples} samples; see PROBLEM lines above"

    def text(self) -> str:
        """The full report: a table per split, then the problems (the summary line is separate)."""
        parts = []
        for split in self.splits:
            parts.append(f"dataset '{self.dataset}', split '{split.split}': {split.samples} samples\n{split.table()}")
        parts.extend(problem.text() for problem in self.problems)
        return "\n\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {"dataset": self.dataset, "ok": self.ok,
                "splits": {s.split: asdict(s) for s in self.splits},
                "problems": [asdict(p) for p in self.problems]}


def load_check_config(name_or_path: str | None, overrides: Sequence[str] = ()) -> Config:
    """The config to check, like ``load_config``, except that a dataset whose required
    ``num_classes`` is not set gets a provisional count (recorded as set by :data:`PROVISIONAL`),
    so that its files can be scanned and the count inferred from them."""
    config = load_config(name_or_path, overrides, validate=False)
    section = config.get("dataset")
    if isinstance(section, dict) and "num_classes" not in section:
        name = section.get("name", SCHEMA["dataset"].default_name)
        try:
            option = get_registry("dataset").get(name).option("num_classes")
        except SemsegError:
            option = None  # validation names the unknown dataset
        if option is not None and option.required:
            named = section.get("class_names") or section.get("palette")
            count = len(named) if isinstance(named, list) and named else 1
            merge_into(config, {"dataset": {"num_classes": count}}, PROVISIONAL)
    model = config.get("model")
    bands = model.get("in_channels") if isinstance(model, dict) else None
    if isinstance(bands, int) and not isinstance(bands, bool) and bands > 0 and bands != 3:
        for key, value in (("mean", 0.0), ("std", 1.0)):
            if key not in model:
                merge_into(config, {"model": {key: [value] * bands}}, PROVISIONAL_STATISTICS)
    return validate_config(config)


def check_data(config: dict[str, Any], splits: Sequence[str] | None = None, progress: bool = True) -> DataReport:
    """Check the config's dataset: ``splits``, default ``dataset.train_split`` and ``dataset.val_split``."""
    section = config["dataset"]
    if not splits:
        splits = [section["train_split"], section["val_split"]]
    known = not isinstance(config, Config) or config.source_of("dataset.num_classes") != PROVISIONAL
    reports, problems, stats = [], [], {}
    for split in dict.fromkeys(splits):  # once each, in order
        report, found, seen = check_split(config, split, progress, num_classes_known=known)
        if report is not None:
            reports.append(report)
        if seen is not None:
            stats[split] = seen
        problems.extend(found)
    if isinstance(config, Config) and config.source_of("model.mean") == PROVISIONAL_STATISTICS:
        bands = config["model"]["in_channels"]
        problems.append(Problem("config", "normalisation", f"model.mean and model.std are not set for "
                                f"model.in_channels={bands} (their defaults are ImageNet's three RGB values)",
                                cause="the model normalises each band with its own mean and std",
                                fix=f"set {bands} means and {bands} stds (0-255 scale); --write-config FILE "
                                    f"writes them from the '{section['train_split']}' split"))
    return DataReport(section["name"], reports, problems, stats, known)


def check_split(config: dict[str, Any], split: str, progress: bool = True, *, num_classes_known: bool = True
                ) -> tuple[SplitReport | None, list[Problem], SplitStats | None]:
    """Build the dataset for ``split`` and read every sample (problems are collected, never raised);
    the split's report, its problems and its :class:`SplitStats`."""
    with collect_pairing_problems() as pairing, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a dataset's warnings about its files become problems below
        try:
            dataset = build_component(config, "dataset", "dataset", split, extra=SCHEMA["dataset"].extra)
        except SemsegError as exc:
            return None, [Problem(split, "dataset", f"cannot build the dataset: {exc}",
                                  fix="see the message: set or correct the dataset option it names")], None
    problems = [Problem(split, "pairing", p.message, p.files, cause="files do not pair up", fix=p.fix)
                for p in pairing]
    bands = int(config.get("model", {}).get("in_channels", 3))
    if isinstance(dataset, FileDataset):
        dataset.in_channels = bands
    elif bands != 3:
        return None, problems + [Problem(split, "dataset", f"model.in_channels is {bands}: dataset "
                                         f"'{config['dataset']['name']}' gives RGB images only",
                                         fix="read N-band TIFFs with a file dataset such as folder")], None
    scan = _Scan(dataset, split, num_classes_known)
    bar = tqdm(range(len(dataset)), desc=f"check {split}", unit="img", disable=not progress, leave=False)
    for index in bar:
        scan.sample(index)
    problems.extend(scan.problems(split))
    return scan.report(split), problems, scan.split_stats()


class _Scan:
    """Accumulates what the samples of one split show."""

    def __init__(self, dataset: SegDataset, split: str = "", num_classes_known: bool = True) -> None:
        self.dataset = dataset
        self.num_classes_known = num_classes_known
        self.stats = SplitStats(split)
        self.files = isinstance(dataset, FileDataset)
        self.num_classes, self.ignore = int(dataset.num_classes), int(dataset.ignore_index)
        self.class_pixels = np.zeros(self.num_classes, dtype=np.int64)
        self.class_images = np.zeros(self.num_classes, dtype=np.int64)
        self.ignored = 0
        self.raw_hist = np.zeros(RAW_BINS + 1, dtype=np.int64)  # raw mask values (last bin: beyond)
        self.bad_hist: dict[int, int] = {}
        self.bad_files: list[str] = []
        self.missing: list[str] = []
        self.unreadable: list[tuple[str, str]] = []
        self.sizes: list[tuple[str, str]] = []
        self.jpeg: list[str] = []
        self.rgb: list[str] = []
        self.colours: list[tuple[str, str]] = []
        self.id_masks: list[str] = []  # class-id masks while the dataset expects colour masks
        self.bands = int(getattr(dataset, "in_channels", 3))
        self.other_bands: list[tuple[str, int]] = []  # images of another band count than model.in_channels

    # -- per sample -------------------------------------------------------------------------------

    def sample(self, index: int) -> None:
        """Check sample ``index``; what it shows is added to the tallies."""
        loaded = self._load_file_sample(index) if self.files else self._load_sample(index)
        if loaded is None:
            return
        image_shape, label, where = loaded
        if label.shape != image_shape:
            self.sizes.append((where, f"mask {label.shape[1]}×{label.shape[0]}, image {image_shape[1]}×{image_shape[0]}"))
            return
        valid = (label >= 0) & (label < self.num_classes)
        ignored = label == self.ignore
        bad = ~(valid | ignored)
        if bad.any():
            self.bad_files.append(where)
            values, counts = np.unique(label[bad], return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                self.bad_hist[value] = self.bad_hist.get(value, 0) + count
        counts = np.bincount(label[valid].ravel(), minlength=self.num_classes)
        self.class_pixels += counts
        self.class_images += counts > 0
        self.ignored += int(ignored.sum())

    def _load_sample(self, index: int) -> tuple[tuple[int, int], np.ndarray, str] | None:
        where = self.dataset.describe(index)
        try:
            image, label = self.dataset[index]
        except Exception as exc:  # any plugin's error: report it against the sample
            self.unreadable.append((where, _one_line(exc)))
            return None
        image, label = np.asarray(image), np.asarray(label)
        if image.ndim == 3 and image.shape[-1] == self.bands and image.dtype in (np.uint8, np.float32):
            self._tally_image(image)
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            self.unreadable.append((where, f"label must be an integer H×W array, got {label.dtype} {label.shape}"))
            return None
        self._tally_raw(label)
        return tuple(image.shape[:2]), label.astype(np.int64, copy=False), where  # type: ignore[return-value]

    def _load_file_sample(self, index: int) -> tuple[tuple[int, int], np.ndarray, str] | None:
        dataset: FileDataset = self.dataset  # type: ignore[assignment]
        image_path, label_path = dataset.pairs[index]
        gone = [str(p) for p in (image_path, label_path) if p is not None and not p.is_file()]
        if gone:
            self.missing.extend(gone)
            return None
        image_shape: tuple[int, int] | None = None
        try:
            image = self._read_image(image_path)
            if image is not None:
                image_shape = image.shape[:2]
                self._tally_image(image)
        except SemsegError as exc:
            self.unreadable.append((str(image_path), _reason(exc, image_path)))
        if label_path is None:
            return None
        where = str(label_path)
        try:
            with Image.open(label_path) as header:
                fmt, mode = header.format, header.mode
        except Exception as exc:  # noqa: BLE001 - not an image at all
            self.unreadable.append((where, _one_line(exc)))
            return None
        if fmt == "JPEG" or label_path.suffix.lower() in (".jpg", ".jpeg"):
            self.jpeg.append(where)
        try:
            if dataset.mapping.colors is None and mode in COLOUR_MODES:
                rgb = read_image(label_path)
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                    self._tally_colours(where, rgb)
                    return None
            raw = dataset.read_raw_label(index)
        except SemsegError as exc:
            self.unreadable.append((where, _reason(exc, label_path)))
            return None
        if raw.ndim == 2:
            self._tally_raw(raw)
        elif raw.ndim == 3 and (mode in COLOUR_MODES or mode == "P"):
            self._count_colours(raw)
        try:
            label = dataset.mapping(raw, where=where)
        except SemsegError as exc:
            if raw.ndim == 3 and mode not in COLOUR_MODES and mode != "P":
                self.id_masks.append(where)
            else:
                (self.colours if raw.ndim == 3 else self.unreadable).append((where, _reason(exc, label_path)))
            return None
        if image_shape is None:
            return None
        return image_shape, label, where  # type: ignore[return-value]

    def _read_image(self, path: Path) -> np.ndarray | None:
        """The image as training reads it; None (and noted) when it has another band count than
        ``model.in_channels`` (a TIFF's count is read from its header when RGB is expected)."""
        if self.bands == 3:
            if path.suffix.lower() in TIFF_EXTENSIONS and (found := count_bands(path)) != 3:
                self.other_bands.append((str(path), found))
                return None
            return read_image(path)
        image = read_bands(path)
        if image.shape[2] != self.bands:
            self.other_bands.append((str(path), image.shape[2]))
            return None
        return image

    def _tally_raw(self, raw: np.ndarray) -> None:
        flat = raw.ravel()
        if flat.size == 0:
            return
        if flat.min() < 0 or flat.max() >= RAW_BINS:
            flat = np.clip(flat.astype(np.int64), 0, RAW_BINS)
        counts = np.bincount(flat)
        self.raw_hist[: len(counts)] += counts
        present = np.flatnonzero(counts).tolist()
        if len(present) > REGION_SEARCH_LIMIT:
            self.stats.crowded_masks += 1
            self.stats.region_values.update(present)  # smeared masks: no value counts as a rim
        elif not self.stats.region_values.issuperset(present):
            self.stats.region_values.update(region_values(raw).tolist())

    def _tally_colours(self, where: str, rgb: np.ndarray) -> None:
        self.rgb.append(where)
        self._count_colours(rgb)

    def _count_colours(self, rgb: np.ndarray) -> None:
        stats = self.stats
        stats.colour_masks += 1
        codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        values, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        colours = [(code >> 16, (code >> 8) & 255, code & 255) for code in values.tolist()]
        for colour, count in zip(colours, counts.tolist()):
            stats.colours[colour] = stats.colours.get(colour, 0) + count
        if len(colours) > REGION_SEARCH_LIMIT:
            stats.crowded_masks += 1
            stats.region_colours.update(colours)
        elif not stats.region_colours.issuperset(colours):
            indices = region_values(inverse.reshape(codes.shape))
            stats.region_colours.update(colours[i] for i in indices.tolist())

    def _tally_image(self, image: np.ndarray) -> None:
        """Add the image's per-band sums and sums of squares (exact integers for 8-bit images)."""
        stats = self.stats
        bands = image.shape[2]
        if not stats.channel_sums:
            stats.channel_sums, stats.channel_squares = [0] * bands, [0] * bands
        stats.images += 1
        stats.pixels += image.shape[0] * image.shape[1]
        for band in range(bands):
            values = image[..., band].ravel()
            if values.dtype == np.uint8:  # a histogram is ~4× faster than widening every pixel
                counts = np.bincount(values, minlength=256)
                total, squares = int(counts @ _LEVELS), int(counts @ _LEVELS ** 2)
            elif np.issubdtype(values.dtype, np.integer):
                wide = values.astype(np.int64)
                total, squares = int(wide.sum()), int(wide @ wide)
            else:  # float bands (16-bit files scaled to 0-255, float files): float64 sums
                wide = values.astype(np.float64)
                total, squares = float(wide.sum()), float(wide @ wide)
            stats.channel_sums[band] += total
            stats.channel_squares[band] += squares

    # -- results ----------------------------------------------------------------------------------

    def report(self, split: str) -> SplitReport:
        """The split's counts."""
        values = None if self.num_classes_known else self._present_values()
        return SplitReport(split, len(self.dataset), self.num_classes, self.ignore,
                           list(getattr(self.dataset, "class_names", ()) or ()), self.class_pixels.tolist(),
                           self.class_images.tolist(), self.ignored, sum(self.bad_hist.values()), values)

    def split_stats(self) -> SplitStats:
        """What the split's files showed beyond the class counts."""
        self.stats.values = self._present_values()
        self.stats.jpeg_masks = len(self.jpeg)
        return self.stats

    def _present_values(self) -> dict[int, int]:
        present = np.flatnonzero(self.raw_hist[:RAW_BINS])
        return dict(zip(present.tolist(), self.raw_hist[present].tolist()))

    def problems(self, split: str) -> list[Problem]:
        """The problems found, one per kind, each with its likely cause and fix."""
        found: list[Problem] = []
        if self.missing:
            found.append(Problem(split, "missing", f"{len(self.missing)} file(s) of the dataset do not exist",
                                 self.missing, cause="moved or deleted files, or a list naming them wrongly",
                                 fix="restore the files or correct the list / dataset.root"))
        if self.unreadable:
            found.append(Problem(split, "unreadable", f"{len(self.unreadable)} file(s) cannot be read: "
                                 f"{self.unreadable[0][1]}", [w for w, _ in self.unreadable],
                                 cause="truncated or corrupt files (an interrupted download or copy), or not images",
                                 fix="copy the files again, or remove them (and their pair)"))
        if self.other_bands:
            found.append(self._bands_problem(split))
        if self.sizes:
            found.append(Problem(split, "size", f"{len(self.sizes)} mask(s) differ in size from their image "
                                 f"(first: {self.sizes[0][1]})", [w for w, _ in self.sizes],
                                 cause="masks saved at another resolution, or paired with the wrong image",
                                 fix="resize the masks to their image size with nearest-neighbour interpolation, "
                                     "or correct the pairing"))
        if self.jpeg:
            found.append(Problem(split, "jpeg-mask", f"{len(self.jpeg)} mask(s) are JPEG files", self.jpeg,
                                 cause="JPEG is lossy: it smears class ids along edges into values of no class",
                                 fix="save masks losslessly (PNG); no config setting can undo the damage"))
        if self.rgb:
            found.append(self._rgb_problem(split))
        if self.colours:
            found.append(Problem(split, "colours", f"{len(self.colours)} colour mask(s) hold colours outside the "
                                 f"palette: {self.colours[0][1]}", [w for w, _ in self.colours],
                                 cause="the palette does not list every colour the masks use",
                                 fix="add class colours to dataset.palette (in class order) and colours meaning "
                                     "'unlabelled' to dataset.ignore_colors"))
        if self.id_masks:
            found.append(Problem(split, "id-mask", f"{len(self.id_masks)} mask(s) are grayscale class-id images, "
                                 f"but the dataset reads masks as colours", self.id_masks,
                                 cause="color_masks is on for masks that hold class ids",
                                 fix="dataset.color_masks=false"))
        values = self._values_problem(split) if self.num_classes_known else self._classes_problem(split)
        if values is not None:
            found.append(values)
        return found

    def _bands_problem(self, split: str) -> Problem:
        """Images whose band count is not ``model.in_channels``."""
        counts = sorted({count for _, count in self.other_bands})
        first, found = self.other_bands[0]
        message = (f"{len(self.other_bands)} image(s) have another band count than model.in_channels={self.bands} "
                   f"(first: {first} has {found} band{'s' if found != 1 else ''})")
        if len(counts) == 1 and not self.stats.images:  # every image agrees on another count
            fix = (f"model.in_channels={counts[0]} with {counts[0]} values in model.mean and model.std "
                   f"(--write-config FILE computes them)")
        else:
            fix = "convert those images to the band count of the others, or remove them (and their masks)"
        return Problem(split, "bands", message, [w for w, _ in self.other_bands],
                       cause="images with other bands (multispectral, RGB + near infrared, single-band rasters)",
                       fix=fix)

    def _classes_problem(self, split: str) -> Problem:
        """num_classes is not set: the values (or colours) the masks hold are what it is inferred from."""
        values = self._present_values()
        shown = ", ".join(f"{v} ({n:,} px)" for v, n in list(values.items())[:10])
        shown += ", ..." if len(values) > 10 else ""
        held = f"the masks hold the values {shown}" if values else f"{len(self.stats.colours)} mask colours were read"
        return Problem(split, "classes", f"dataset.num_classes is not set; {held}",
                       cause="the dataset needs the number of classes",
                       fix="set dataset.num_classes; --write-config FILE writes a config with the count the masks "
                           "show (or asks, where they leave it open)")

    def _rgb_problem(self, split: str) -> Problem:
        counted = self.stats.colours
        colours = sorted(counted, key=lambda c: -counted[c])
        palette = {tuple(int(v) for v in c) for c in np.asarray(self.dataset.palette).reshape(-1, 3)}
        shown = ", ".join(str(list(c)) for c in colours[:8]) + (", ..." if len(colours) > 8 else "")
        message = (f"{len(self.rgb)} mask(s) are colour images ({len(colours)} colours: {shown}), "
                   f"read as class ids they mean nothing")
        if not self.num_classes_known:
            fix = ("dataset.color_masks=true with dataset.palette listing the class colours (--write-config FILE "
                   "writes them, in a stable order)")
        elif set(colours) <= palette:
            fix = "dataset.color_masks=true (every colour is in the dataset's palette)"
        elif len(colours) <= max(2 * self.num_classes, self.num_classes + 4):
            listed = ",".join(f"[{r},{g},{b}]" for r, g, b in colours[: self.num_classes])
            fix = (f"dataset.color_masks=true dataset.palette=[{listed}] (one colour per class, in class order; "
                   f"colours meaning 'unlabelled' go to dataset.ignore_colors)")
        else:
            fix = ("save masks as class ids (mode L or P PNG), or set dataset.color_masks=true with the "
                   "class colours in dataset.palette")
        return Problem(split, "rgb-mask", message, self.rgb,
                       cause="masks painted in colours (e.g. exported by a labelling tool) instead of class ids",
                       fix=fix)

    def _values_problem(self, split: str) -> Problem | None:
        """Values outside the classes, or 0/255 binary masks whose foreground is all ignored."""
        present = np.flatnonzero(self.raw_hist[:RAW_BINS]).tolist()
        identity = not self.files or self.dataset.mapping.is_identity  # type: ignore[attr-defined]
        c, ignore = self.num_classes, self.ignore
        binary = identity and set(present) == {0, 255} and c >= 2
        if not self.bad_hist and not (binary and ignore == 255):
            return None
        bad = sorted(self.bad_hist)
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        if self.bad_hist:
            message = (f"{len(self.bad_files)} mask(s) hold values {shown}, neither classes 0..{c - 1} "
                       f"nor ignore_index {ignore}")
        else:
            never = "class 1 never occurs" if c == 2 else f"classes 1..{c - 1} never occur"
            message = (f"masks hold only the values 0 and 255 (= ignore_index): every non-zero pixel is ignored "
                       f"and {never}")
        files = self.bad_files
        if binary:
            cause = "binary masks saved as 0 (background) and 255 (foreground)"
            fix = "dataset.label_map={255: 1}"
        elif not identity:
            cause = "values the label options leave outside the classes"
            fix = "extend dataset.label_map (value: class id, or value: ignore_index), or raise dataset.num_classes"
        elif self.jpeg or len(present) > max(2 * c + 2, 24):
            cause = (f"{len(present)} distinct values: masks saved lossy (JPEG) or resized with interpolation, "
                     f"which blends class ids")
            fix = "save masks as PNG and resize them with nearest-neighbour interpolation only"
        elif bad and max(bad) == c and max((v for v in present if v != ignore), default=-1) == c:
            zero = 0 in present
            cause = (f"values run {'0' if zero else '1'}..{c}: one more than num_classes={c}; "
                     + ("0 looks like unlabelled background (the ADE20K convention)" if zero
                        else "class ids start at 1"))
            fix = (f"dataset.reduce_zero_label=true (0 -> ignore, k -> k-1); or dataset.num_classes={c + 1} "
                   f"if 0 is a real class" if zero else "dataset.reduce_zero_label=true (k -> k-1)")
        else:
            top = max(bad)
            cause = f"num_classes={c} is smaller than the masks' largest value {top}, or these values mark " \
                    f"something to ignore"
            fix = (f"dataset.num_classes={top + 1} if they are classes; or dataset.label_map="
                   f"{{{', '.join(f'{v}: {ignore}' for v in bad[:3])}}} to ignore them")
        return Problem(split, "values", message, files, cause=cause, fix=fix)


def region_values(label: np.ndarray, side: int = REGION_SIDE) -> np.ndarray:
    """The distinct values of an H×W integer array that fill at least one ``side``×``side`` square
    (all its values when it is smaller than that); the others lie only in thin structures."""
    if label.shape[0] < side or label.shape[1] < side:
        return np.unique(label)
    low = _running(_running(label, side, 0, np.minimum), side, 1, np.minimum)
    high = _running(_running(label, side, 0, np.maximum), side, 1, np.maximum)
    inside = low[low == high]
    if inside.size and inside.min() >= 0 and inside.max() < RAW_BINS:
        return np.flatnonzero(np.bincount(inside.astype(np.int64, copy=False)))
    return np.unique(inside)


def _running(values: np.ndarray, side: int, axis: int, op: np.ufunc) -> np.ndarray:
    """``op`` (np.minimum / np.maximum) of every ``side`` consecutive elements along ``axis``
    (length n - side + 1), by doubling spans: a few whole-array operations, whatever ``side``."""
    def part(array: np.ndarray, start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, stop)
        return array[tuple(index)]

    out, span = values, 1
    while 2 * span <= side:
        length = out.shape[axis]
        out = op(part(out, 0, length - span), part(out, span, length))
        span *= 2
    if span < side:
        rest = side - span
        length = out.shape[axis]
        out = op(part(out, 0, length - rest), part(out, rest, length))
    return out


def _reason(error: BaseException, path: Path | str) -> str:
    """The error's message without the file name it starts with (the report names the file)."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _one_line(error: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

