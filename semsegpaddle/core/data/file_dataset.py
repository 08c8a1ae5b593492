"""A dataset of image and label files on disk: the base of every real dataset plugin.

A plugin finds its (image, label) file pairs for a split in whatever layout it knows and hands
them here with its label space; reading, label mapping (:mod:`semsegpaddle.core.data.labels`),
and the checks that name the files behind a bad sample are shared.

Files that do not pair up (an image without its mask, a listed file that is missing) are reported
through :func:`pairing_problem`: a one-line DataError normally, a collected problem while
``semseg check-data`` runs (:func:`collect_pairing_problems`), which then checks the pairs found.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from semsegpaddle.core.data.base import SegDataset, default_palette
from semsegpaddle.core.data.image_io import count_bands, read_bands, read_image, read_label
from semsegpaddle.core.data.labels import LabelMapping
from semsegpaddle.core.common.errors import DataError

Pair = tuple[Path, Path | None]


@dataclass
class PairingProblem:
    """Files a dataset could not pair up (an image without its label, a listed file that is missing)."""

    message: str
    files: list[str] = field(default_factory=list)
    fix: str = ""


_COLLECTED: ContextVar[list[PairingProblem] | None] = ContextVar("semseg_pairing_problems", default=None)


@contextmanager
def collect_pairing_problems() -> Iterator[list[PairingProblem]]:
    """Within this block, :func:`pairing_problem` records problems in the yielded list instead of
    raising, so ``semseg check-data`` reports them all and still checks the files that do pair up."""
    problems: list[PairingProblem] = []
    token = _COLLECTED.set(problems)
    try:
        yield problems
    finally:
        _COLLECTED.reset(token)


def pairing_problem(message: str, files: Sequence[str] = (), fix: str = "") -> None:
    """Raise a one-line DataError (``message``; ``fix``), or record it inside :func:`collect_pairing_problems`.

    A dataset calls this when some of its files do not pair up, then carries on with the pairs it has.
    """
    collected = _COLLECTED.get()
    if collected is None:
        raise DataError(f"{message}; {fix}" if fix else message)
    collected.append(PairingProblem(message, [str(f) for f in files], fix))


class FileDataset(SegDataset):
    """Pairs of (image file, label file); a pair without a label file is a test image (label all ignore).

    Images are read as uint8 H×W×3 RGB while ``in_channels`` is 3 (the default); the engine sets
    it to ``model.in_channels`` otherwise, and then every band of TIFF images is read
    (:func:`~semsegpaddle.core.data.image_io.read_bands`: H×W×N, uint8 or float32), an image of
    another band count being a one-line DataError naming the file.
    """

    #: bands the model takes (``model.in_channels``)
    in_channels: int = 3

    def __init__(self, pairs: Sequence[Pair], *, num_classes: int, class_names: Sequence[str] = (),
                 palette: np.ndarray | Sequence[Sequence[int]] | None = None, ignore_index: int = 255,
                 mapping: LabelMapping | None = None, name: str = "dataset", split: str = "") -> None:
        if class_names and len(class_names) != num_classes:
            raise ValueError(f"class_names={list(class_names)!r}: {len(class_names)} names for {num_classes} classes")
        self.pairs = [(Path(image), None if label is None else Path(label)) for image, label in pairs]
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names)
        colours = default_palette(num_classes) if palette is None else np.asarray(palette)
        if colours.shape != (num_classes, 3) or colours.size and (colours.min() < 0 or colours.max() > 255):
            raise ValueError(f"palette: expected {num_classes} RGB colours of integers 0..255, got "
                             f"{colours.tolist() if colours.size <= 12 else f'shape {colours.shape}'}")
        self.palette = colours.astype(np.uint8)
        self.ignore_index = int(ignore_index)
        self.mapping = mapping or LabelMapping(ignore_index)
        self.name, self.split = name, split

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self, index: int) -> str:
        """The image file of sample ``index`` (and its label file)."""
        image, label = self.pairs[index]
        return f"{image}" if label is None else f"{image} (label {label})"

    def source_files(self, index: int) -> list[Path]:
        """The files sample ``index`` is read from (its decoded form can be cached while they stay unchanged)."""
        return [path for path in self.pairs[index] if path is not None]

    def read_raw_label(self, index: int) -> np.ndarray:
        """The label file's values before mapping (H×W ints, or H×W×3 for colour masks)."""
        path = self.pairs[index][1]
        if path is None:
            raise DataError(f"{self.describe(index)}: has no label file")
        if self.mapping.colors is not None:
            return read_image(path)  # colours are read as RGB, whatever the file's mode
        return read_label(path)

    def read_input(self, path: Path) -> np.ndarray:
        """The image at ``path``: RGB for 3 bands, every band of a TIFF for ``in_channels`` ≠ 3."""
        if self.in_channels == 3:
            return read_image(path)
        image = read_bands(path)
        if image.shape[2] != self.in_channels:
            raise DataError(f"{path}: has {image.shape[2]} band{'s' if image.shape[2] != 1 else ''}, "
                            f"model.in_channels is {self.in_channels}")
        return image

    def check_input_bands(self) -> None:
        """Before training: every image has ``in_channels`` bands, read from the file headers (no
        pixels decoded); else a one-line DataError naming the first files that differ."""
        if self.in_channels == 3:
            return
        wrong = []
        for image_path, _ in self.pairs:
            bands = count_bands(image_path)
            if bands != self.in_channels:
                wrong.append(f"{image_path}: has {bands} band{'s' if bands != 1 else ''}")
        if wrong:
            more = f" (and {len(wrong) - 3} more images)" if len(wrong) > 3 else ""
            raise DataError(f"{'; '.join(wrong[:3])}{more}, model.in_channels is {self.in_channels}")

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[index]
        image = self.read_input(image_path)
        if label_path is None:
            return image, np.full(image.shape[:2], self.ignore_index, dtype=np.int64)
        label = self.mapping(self.read_raw_label(index), where=str(label_path))
        if label.shape != image.shape[:2]:
            raise DataError(f"{self.describe(index)}: label is {label.shape[1]}×{label.shape[0]}, "
                            f"image is {image.shape[1]}×{image.shape[0]} (width×height)")
        return image, label


def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path if it is a folder; else a one-line FileNotFoundError naming it and ``what``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(2, f"{what} folder not found", str(path))
    return path


def read_list_lines(path: str | os.PathLike[str]) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of each line of a list file; blank lines and
    ``#`` comments are skipped. A missing or undecodable file raises a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "list file not found", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: list file is not UTF-8 text (byte offset {exc.start})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if fields:
            rows.append((number, fields))
    return rows


def listed_pairs(list_path: str | os.PathLike[str], pairs: list[Pair], missing: Sequence[str], what: str) -> list[Pair]:
    """The pairs a list file named: files it lists that do not exist are one pairing problem, and
    a list naming no sample at all is an error (``what`` says whose split, e.g. "Cityscapes split 'val'")."""
    if missing:
        pairing_problem(f"{list_path}: {len(missing)} listed file(s) not found (first: {missing[0]})", missing,
                        "fix the list or restore the files")
    if not pairs and not missing:
        raise DataError(f"{list_path}: lists no samples for {what}")
    return pairs
