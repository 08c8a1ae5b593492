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
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from semsegpaddle.core.engine.atomic import atomic_path
from semsegpaddle.core.errors import DataError, SemsegError
from semsegpaddle.core.inference.evaluation import predict_batch
from semsegpaddle.core.data.image_io import read_image

__all__ = ["read_image", "save_mask", "blend", "output_names", "predict_files", "PredictionError"]


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
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the mask's colours blended in (uint8 H×W×3)."""
    colours = palette[np.clip(mask, 0, len(palette) - 1)]
    return (image * (1 - alpha) + colours * alpha).astype(np.uint8)


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


def output_names(inputs: Sequence[str | Path], output_dir: str | Path,
                 overlay: bool = False) -> list[tuple[Path, Path, Path | None]]:
    """(input, mask path, overlay path or None) per distinct input, following the module's rules.

    Raises SemsegError, before anything is written, if outputs would coincide or replace an input.
    """
    output_dir = Path(output_dir)
    files = _unique_inputs(inputs)
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


def predict_files(model, inputs: Sequence[str | Path], output_dir: str | Path, palette: np.ndarray,
                  overlay: bool = False, progress: bool = True) -> list[Path]:
    """Segment each input file into a palette mask (+ overlay) in ``output_dir``; return the masks.

    Names follow :func:`output_names`. An unreadable image does not stop the others: once all
    readable ones are written, :class:`PredictionError` names the unreadable ones.
    """
    plan = output_names(inputs, output_dir, overlay)
    written: list[Path] = []
    failed: list[str] = []
    for path, mask_path, overlay_path in tqdm(plan, desc="predict", unit="img", disable=not progress,
                                              dynamic_ncols=True):
        try:
            image = read_image(path)
        except DataError as exc:
            failed.append(str(exc))
            continue
        mask = predict_batch(model, [image])[0]
        save_mask(mask, palette, mask_path)
        written.append(mask_path)
        if overlay_path is not None:
            with atomic_path(overlay_path) as tmp:
                Image.fromarray(blend(image, mask, palette)).save(tmp, format="PNG")
    if failed:
        others = f"{len(written)} mask{'' if len(written) == 1 else 's'} written for the others"
        raise PredictionError(f"{len(failed)} of {len(plan)} images unreadable ({others}): {'; '.join(failed)}",
                              written)
    return written
