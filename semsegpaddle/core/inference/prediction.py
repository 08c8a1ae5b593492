"""Predict image files: palette masks (PNG, class index per pixel) and colour overlays.

Output names (decided for all inputs before anything is written):

- a mask is ``<stem>.png``, an overlay ``<stem>_overlay.png``;
- inputs sharing a stem (``a.png`` and ``a.jpg``, or ``x/a.png`` and ``y/a.png``) are named after
  their path below their common folder, separators and dots becoming ``_``: ``x_a.png`` and
  ``y_a.png``; ``a_png.png`` and ``a_jpg.png`` (the extension only when the folders do not tell
  them apart); the same file given twice is predicted once;
- a mask that would replace one of the input files is named ``<name>_mask.png`` instead (the
  output folder may be the images' own folder);
- if two outputs would still coincide, or an output would still be an input, nothing is written
  and a one-line error names both.

With a submission format (``semseg predict --format cityscapes``: a dataset plugin's
``submission_name`` and ``submission_ids`` extras) each mask is named by the format
(``<city_seq_frame>_leftImg8bit.png``) and holds the official ids (labelIds) as 8-bit gray; an
input the format cannot name, or two inputs given the same name, stop the command before anything
is written.

Inputs (:func:`expand_inputs`): image files; folders (every image below them, recursively, in
sorted order); list files, given as ``@LIST`` or as a path ending in ``.txt`` or ``.lst``: one
image per line (its first field, so ``image label`` lines work), relative to the list file's
folder, blank lines and ``#`` comments skipped.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from semsegpaddle.core.common.atomic import atomic_path
from semsegpaddle.core.common.disk import check_writable
from semsegpaddle.core.common.errors import DataError, SemsegError
from semsegpaddle.core.inference.evaluation import as_segmenter, predict_batch
from semsegpaddle.core.inference.segmenter import InferenceMode
from semsegpaddle.core.data.image_io import read_bands, read_image

__all__ = ["read_image", "save_mask", "blend", "output_names", "predict_files", "PredictionError",
           "expand_inputs", "SubmissionFormat"]

#: file extensions taken from folders
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: extensions of arguments read as list files (besides ``@LIST``)
LIST_EXTENSIONS = (".txt", ".lst")


@dataclass(frozen=True)
class SubmissionFormat:
    """How an official evaluation wants predictions: ``name(file name)`` gives the output file
    name (None when the input cannot be named), ``ids[c]`` the value written for class ``c``."""

    label: str
    name: Callable[[str], str | None]
    ids: np.ndarray


def submission_format(name: str, num_classes: int) -> SubmissionFormat:
    """The submission format of the dataset component ``name`` (its ``submission_name`` and
    ``submission_ids`` registry extras), checked against the model's ``num_classes``."""
    from semsegpaddle.core.inference.scoring import submission_ids
    from semsegpaddle.core.plugin.manager import get_registry

    registry = get_registry("dataset")
    offering = [c.name for c in registry if {"submission_name", "submission_ids"} <= set(c.extras)]
    if name not in offering:
        raise SemsegError(f"unknown --format {name!r}; expected index (palette masks) or one of: "
                          f"{', '.join(offering) or 'none installed'}")
    extras = registry.get(name).extras
    ids = submission_ids(extras, num_classes)
    table = np.zeros(num_classes, dtype=np.int64)
    for cls, value in ids.items():
        table[cls] = value
    return SubmissionFormat(name, extras["submission_name"], table)


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Image paths from files, folders (recursively) and list files (see the module docstring).

    A missing argument, an empty folder or list, or a missing list file is a one-line error.
    Files named in a list are not checked here: an unreadable one is reported when predicted.
    """
    from semsegpaddle.core.data.file_dataset import read_list_lines

    images: list[Path] = []
    for item in items:
        text = str(item)
        if text.startswith("@") or Path(text).suffix.lower() in LIST_EXTENSIONS:
            listed = Path(text[1:] if text.startswith("@") else text)
            rows = read_list_lines(listed)
            if not rows:
                raise SemsegError(f"{listed}: the list names no images")
            images.extend(listed.parent / fields[0] for _, fields in rows)
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise SemsegError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder or below")
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise FileNotFoundError(2, "input not found", str(path))
    return images


class PredictionError(DataError):
    """Some inputs could not be read; ``written`` lists the masks written for the others."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


def save_mask(mask: np.ndarray, palette: np.ndarray, path: str | Path) -> None:
    """Write a class-index mask as a palette PNG (values are class ids, colours from ``palette``)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette[:256]
    image.putpalette(flat.flatten().tolist())
    write_png(image, path)


def save_ids(mask: np.ndarray, ids: np.ndarray, path: str | Path) -> None:
    """Write ``ids[mask]`` (e.g. Cityscapes labelIds of train ids) as an 8-bit gray PNG."""
    write_png(Image.fromarray(ids[mask].astype(np.uint8), mode="L"), path)


def write_png(image: Image.Image, path: str | Path) -> None:
    """Write ``image`` as a PNG atomically; encoded first, so a full disk is told the bytes it needed."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    with atomic_path(path, size=len(data)) as tmp:
        tmp.write_bytes(data)


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the mask's colours blended in (uint8 H×W×3); ``alpha`` is the mask's opacity."""
    colours = palette[np.clip(mask, 0, len(palette) - 1)]
    return (image * (1 - alpha) + colours * alpha).astype(np.uint8)


def check_rgb_bands(rgb_bands: Sequence[int] | str | None, bands: int) -> tuple[int, int, int]:
    """The three 1-based bands an overlay draws as red, green, blue: ``rgb_bands`` (or its text,
    ``3,2,1``) checked against the model's ``bands``, or by default the first three (a model of
    fewer bands: band 1 as gray). A wrong choice is a one-line SemsegError naming ``--rgb-bands``."""
    if rgb_bands is None:
        return (1, 2, 3) if bands >= 3 else (1, 1, 1)
    text = rgb_bands if isinstance(rgb_bands, str) else ",".join(map(str, rgb_bands))
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(part.isdigit() and 1 <= int(part) <= bands for part in parts):
        raise SemsegError(f"--rgb-bands {text}: expected three band numbers from 1 to {bands} (the model "
                          f"takes {bands} band{'s' if bands != 1 else ''}), e.g. 3,2,1")
    return int(parts[0]), int(parts[1]), int(parts[2])


def overlay_picture(image: np.ndarray, rgb_bands: Sequence[int]) -> np.ndarray:
    """uint8 H×W×3 picture of the 1-based ``rgb_bands`` of an H×W×N image: uint8 bands as they are,
    other bands stretched linearly from their 2nd to their 98th percentile onto 0-255."""
    picked = image[:, :, [b - 1 for b in rgb_bands]]
    if picked.dtype == np.uint8:
        return np.ascontiguousarray(picked)
    out = np.empty(picked.shape, np.uint8)
    for channel in range(3):
        values = picked[:, :, channel].astype(np.float32)
        low, high = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
        scale = 255.0 / (high - low) if high > low else 0.0
        out[:, :, channel] = np.clip((values - low) * scale, 0, 255).astype(np.uint8)
    return out


def _read_input(path: Path, bands: int) -> np.ndarray:
    """An input image for a model of ``bands`` bands: RGB as always for 3, every band of a TIFF
    otherwise (:func:`read_bands`); another band count is a one-line DataError."""
    if bands == 3:
        return read_image(path)
    image = read_bands(path)
    if image.shape[2] != bands:
        raise DataError(f"{path}: has {image.shape[2]} band{'s' if image.shape[2] != 1 else ''}, "
                        f"model.in_channels is {bands}")
    return image


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _unique_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The inputs in order, each file once (same resolved path or same inode)."""
    seen: set[object] = set()
    unique = []
    for item in inputs:
        path = Path(item)
        keys = {path.resolve()} | ({_file_id(path)} if _file_id(path) else set())
        if keys & seen:
            continue
        seen |= keys
        unique.append(path)
    return unique


def _disambiguated(group: list[Path]) -> list[str]:
    """Names for inputs sharing a stem: their path below the common folder, '_'-joined."""
    resolved = [p.resolve() for p in group]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    relative = [p.relative_to(common) for p in resolved]
    without_ext = ["_".join(r.with_suffix("").parts) for r in relative]
    if len({n.casefold() for n in without_ext}) == len(without_ext):
        return without_ext
    return ["_".join(r.parts).replace(".", "_") for r in relative]


def output_names(inputs: Sequence[str | Path], output_dir: str | Path, overlay: bool = False,
                 submission: SubmissionFormat | None = None) -> list[tuple[Path, Path, Path | None]]:
    """(input, mask path, overlay path or None) per distinct input, following the module's rules.

    Raises SemsegError, before anything is written, if outputs would coincide or replace an input.
    """
    output_dir = Path(output_dir)
    files = _unique_inputs(inputs)
    if submission is not None:
        return _submission_names(files, output_dir, submission)
    by_stem: dict[str, list[int]] = {}
    for index, path in enumerate(files):
        by_stem.setdefault(path.stem.casefold(), []).append(index)
    names = [path.stem for path in files]
    for indices in by_stem.values():
        if len(indices) > 1:
            for index, name in zip(indices, _disambiguated([files[i] for i in indices])):
                names[index] = name
    input_paths = {p.resolve() for p in files}
    input_ids = {i for i in map(_file_id, files) if i}

    def is_input(path: Path) -> bool:
        return path.resolve() in input_paths or _file_id(path) in input_ids

    plan = []
    owner: dict[str, Path] = {}  # output path (case-folded) -> the input it belongs to
    for path, name in zip(files, names):
        mask = output_dir / f"{name}.png"
        if is_input(mask):
            mask = output_dir / f"{name}_mask.png"
        extra = output_dir / f"{name}_overlay.png" if overlay else None
        for target in filter(None, (mask, extra)):
            if is_input(target):
                raise SemsegError(f"the output {target} for {path} would overwrite an input image; "
                                  f"choose another --output folder")
            key = str(target.resolve()).casefold()
            if key in owner:
                raise SemsegError(f"{owner[key]} and {path} would both write {target}; rename one of them")
            owner[key] = path
        plan.append((path, mask, extra))
    return plan


def _submission_names(files: list[Path], output_dir: Path, submission: SubmissionFormat
                      ) -> list[tuple[Path, Path, Path | None]]:
    """Names given by a submission format; refused before writing if unnamed, shared or an input."""
    unnamed = [str(p) for p in files if submission.name(p.name) is None]
    if unnamed:
        raise SemsegError(f"--format {submission.label}: {len(unnamed)} input(s) are not named as the format "
                          f"needs (first: {unnamed[0]})")
    inputs = {p.resolve() for p in files} | {i for i in map(_file_id, files) if i}
    plan, owner = [], {}
    for path in files:
        target = output_dir / submission.name(path.name)
        if target.resolve() in inputs or _file_id(target) in inputs:
            raise SemsegError(f"the output {target} for {path} would overwrite an input image; "
                              f"choose another --output folder")
        if target.name in owner:
            raise SemsegError(f"{owner[target.name]} and {path} would both write {target}; "
                              f"--format {submission.label} names them alike")
        owner[target.name] = path
        plan.append((path, target, None))
    return plan


def predict_files(model, inputs: Sequence[str | Path], output_dir: str | Path, palette: np.ndarray,
                  overlay: bool = False, progress: bool = True, mode: InferenceMode | None = None,
                  alpha: float = 0.5, submission: SubmissionFormat | None = None,
                  rgb_bands: Sequence[int] | str | None = None) -> list[Path]:
    """Segment each input file into a palette mask (+ overlay) in ``output_dir``; return the masks.

    ``model`` is a paddle model (in eval mode), a backend or a segmenter; ``mode`` the inference
    mode (default: the segmenter's, else whole image). Names follow :func:`output_names`. An
    unreadable image does not stop the others: once all readable ones are written,
    :class:`PredictionError` names the unreadable ones. ``alpha`` is the mask's opacity in
    overlays; ``submission`` writes a format's ids instead of palette masks (no overlays).
    A model of other than 3 bands reads every band of TIFF inputs; its overlays draw the 1-based
    ``rgb_bands`` (:func:`check_rgb_bands`, :func:`overlay_picture`).
    """
    if not 0.0 <= alpha <= 1.0:
        raise SemsegError(f"alpha={alpha} is not valid; expected a number from 0 (image only) to 1 (mask only)")
    if submission is not None and overlay:
        raise SemsegError(f"--format {submission.label} writes only the files the evaluation reads; "
                          f"drop --overlay (or predict overlays into another folder)")
    plan = output_names(inputs, output_dir, overlay, submission)
    check_writable(output_dir, "the output folder")
    segmenter = as_segmenter(model, mode)
    bands = int(getattr(segmenter.backend, "in_channels", 3))
    shown = check_rgb_bands(rgb_bands, bands)
    written: list[Path] = []
    failed: list[str] = []
    for path, mask_path, overlay_path in tqdm(plan, desc="predict", unit="img", disable=not progress,
                                              dynamic_ncols=True):
        try:
            image = _read_input(path, bands)
        except DataError as exc:
            failed.append(str(exc))
            continue
        mask = predict_batch(segmenter, [image])[0]
        if submission is not None:
            save_ids(mask, submission.ids, mask_path)
        else:
            save_mask(mask, palette, mask_path)
        written.append(mask_path)
        if overlay_path is not None:
            picture = image if bands == 3 and rgb_bands is None else overlay_picture(image, shown)
            write_png(Image.fromarray(blend(picture, mask, palette, alpha)), overlay_path)
    if failed:
        others = f"{len(written)} mask{'' if len(written) == 1 else 's'} written for the others"
        raise PredictionError(f"{len(failed)} of {len(plan)} images unreadable ({others}): {'; '.join(failed)}",
                              written)
    return written
