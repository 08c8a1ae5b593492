"""The ``folder`` dataset: finds the (image, mask) pairs of a split in folders or a list file.

See :mod:`semsegpaddle.plugins.datasets.folder` for the layouts. Pairs are sorted by their sample
name (the path below the image folder without extension), so the order never depends on the
file system.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from semsegpaddle.core.data.base import default_palette
from semsegpaddle.core.data.file_dataset import FileDataset, Pair, pairing_problem, read_list_lines, require_dir
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.plugins.datasets.common import label_mapping

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: lossless mask formats, then JPEG, which is accepted so that ``check-data`` can name the problem
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
LOSSY_MASK_EXTENSIONS = (".jpg", ".jpeg")
#: splits that can be given as a list file option (``<split>_list``)
LIST_SPLITS = ("train", "val", "test")


class FolderDataset(FileDataset):
    """Images and masks of one split of a user's own dataset (see the ``folder`` plugin module)."""

    def __init__(self, split: str, *, root: str | os.PathLike[str], num_classes: int, images: str = "images",
                 masks: str = "masks", mask_suffix: str = "", lists: Mapping[str, str | None] | None = None,
                 class_names: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
                 ignore_index: int = 255, color_masks: bool = False,
                 ignore_colors: Sequence[Sequence[int]] | None = None,
                 label_map: Mapping[int, int] | None = None, reduce_zero_label: bool = False) -> None:
        _check_options(num_classes, ignore_index, class_names, palette, mask_suffix, color_masks, ignore_colors)
        self.root = require_dir(root, "dataset root")
        self.image_dir, self.mask_dir = self.root / images, self.root / masks
        if self.image_dir == self.mask_dir and not mask_suffix:
            raise ValueError(f"images={images!r} and masks={masks!r} name the same folder; set mask_suffix "
                             f"(e.g. mask_suffix: _mask for a.jpg + a_mask.png) to tell masks from images")
        self.mask_suffix = mask_suffix
        palette = default_palette(num_classes) if palette is None else palette
        mapping = label_mapping(ignore_index, label_map, reduce_zero_label,
                                colors=palette if color_masks else None, ignore_colors=ignore_colors or ())
        list_file = (lists or {}).get(split)
        if list_file:
            pairs = self._from_list(split, self.root / list_file)
        else:
            pairs = self._from_folders(split)
        super().__init__(pairs, num_classes=num_classes, class_names=class_names or (), palette=palette,
                         ignore_index=ignore_index, mapping=mapping, name="folder", split=split)
        lossy = sum(1 for _, mask in pairs if mask is not None and mask.suffix.lower() in LOSSY_MASK_EXTENSIONS)
        if lossy:
            warnings.warn(f"{lossy} masks of split '{split}' are JPEG files, whose lossy compression changes class "
                          f"ids along edges; save masks as PNG (run `semseg check-data` to see them)", stacklevel=2)

    # -- layouts ---------------------------------------------------------------------------------

    def _split_dirs(self, split: str, required: bool) -> tuple[Path, Path] | None:
        """``(images/<split>, masks/<split>)`` if the split folder exists (else the folders
        themselves when ``required`` is False, for sample-name lists)."""
        image_dir = self.image_dir / split
        if image_dir.is_dir():
            return image_dir, require_dir(self.mask_dir / split, f"mask folder of split '{split}'")
        if required:
            return None
        return require_dir(self.image_dir, "image"), require_dir(self.mask_dir, "mask")

    def _from_folders(self, split: str) -> list[Pair]:
        dirs = self._split_dirs(split, required=True)
        if dirs is None:
            raise DataError(_no_split_message(split, self.image_dir))
        image_dir, mask_dir = dirs
        images, masks = self._index(image_dir, mask_dir, split)
        if not images:
            raise DataError(f"folder dataset, split '{split}': no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                            f"in {image_dir}")
        where = f"folder dataset, split '{split}'"
        _report_unmatched(where, images, masks, mask_dir, self.mask_suffix)
        return [(images[name], masks[name]) for name in sorted(images.keys() & masks.keys())]

    def _index(self, image_dir: Path, mask_dir: Path, split: str) -> tuple[dict[str, Path], dict[str, Path]]:
        """Sample name -> file, for the images and the masks."""
        shared = image_dir == mask_dir  # then the suffix alone tells masks from images
        images = index_files(image_dir, IMAGE_EXTENSIONS, "images", split,
                             skip_suffix=self.mask_suffix if shared else "")
        masks = index_files(mask_dir, MASK_EXTENSIONS + LOSSY_MASK_EXTENSIONS, "masks", split,
                            suffix=self.mask_suffix, only_suffixed=shared)
        return images, masks

    def _from_list(self, split: str, path: Path) -> list[Pair]:
        rows = read_list_lines(path)
        if not rows:
            raise DataError(f"{path}: list file of split '{split}' holds no samples")
        widths = {len(fields) for _, fields in rows}
        if widths == {2}:
            return _listed_pairs(path, rows, self.root, split)
        if widths == {1}:
            return self._listed_names(split, path, [(number, fields[0]) for number, fields in rows])
        number, fields = next((n, f) for n, f in rows if len(f) != len(rows[0][1]) or len(f) > 2)
        raise DataError(f"{path}:{number}: expected 'image mask' or a sample name on every line "
                        f"(line {rows[0][0]} has {len(rows[0][1])} fields), got {len(fields)} fields")

    def _listed_names(self, split: str, path: Path, names: list[tuple[int, str]]) -> list[Pair]:
        image_dir, mask_dir = self._split_dirs(split, required=False)  # type: ignore[misc]
        images, masks = self._index(image_dir, mask_dir, split)
        pairs: list[Pair] = []
        missing_images, missing_masks = [], []
        for _, raw in names:
            name = _strip_extension(raw.replace("\\", "/").removeprefix("./"), IMAGE_EXTENSIONS)
            if name not in images:
                missing_images.append(name)
            elif name not in masks:
                missing_masks.append(name)
            else:
                pairs.append((images[name], masks[name]))
        problems = []
        if missing_images:
            problems.append(f"{_count(missing_images, 'listed name')} found no image in {image_dir} "
                            f"({_few(missing_images)})")
        if missing_masks:
            problems.append(f"{_count(missing_masks, 'listed image')} found no mask in {mask_dir} "
                            f"({_few(missing_masks)})")
        if problems:
            pairing_problem(f"{path}: " + "; ".join(problems), missing_images + missing_masks,
                            fix="names are paths below the image folder without extension, e.g. a/001")
        return pairs


# -- helpers ---------------------------------------------------------------------------------------


def index_files(folder: Path, extensions: Iterable[str], what: str, split: str, suffix: str = "",
                skip_suffix: str = "", only_suffixed: bool = False) -> dict[str, Path]:
    """Sample name (posix path below ``folder`` without extension and ``suffix``) -> file, for the
    files with one of ``extensions`` (any case), recursively; hidden files and folders are skipped.

    Files whose name lacks ``suffix`` are keyed by their full name (they pair with nothing), or
    left out with ``only_suffixed``; names ending in ``skip_suffix`` are left out. Two files with one sample name raise a DataError.
    """
    extensions = tuple(extensions)
    found: dict[str, Path] = {}
    clashes: list[str] = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if file.startswith(".") or ext.lower() not in extensions:
                continue
            path = Path(directory) / file
            name = path.relative_to(folder).with_suffix("").as_posix()
            if skip_suffix and stem.endswith(skip_suffix):
                continue
            if suffix and stem.endswith(suffix):
                name = name[: -len(suffix)]
            elif only_suffixed:
                continue
            if name in found:
                clashes.append(f"{found[name].name} and {file}")
            found[name] = path
    if clashes:
        raise DataError(f"folder dataset, split '{split}': {_count(clashes, 'pair')} of {what} in {folder} share "
                        f"a name ({_few(clashes)}); keep one file per sample name")
    return found


def _report_unmatched(where: str, images: dict[str, Path], masks: dict[str, Path], mask_dir: Path,
                      suffix: str) -> None:
    lonely_images = sorted(images.keys() - masks.keys())
    lonely_masks = sorted(masks.keys() - images.keys())
    if not lonely_images and not lonely_masks:
        return
    parts = []
    if lonely_images:
        verb = "has" if len(lonely_images) == 1 else "have"
        parts.append(f"{len(lonely_images)} of {len(images)} images {verb} no mask in {mask_dir} "
                     f"({_few(lonely_images)})")
    if lonely_masks:
        verb = "has" if len(lonely_masks) == 1 else "have"
        parts.append(f"{_count(lonely_masks, 'mask')} {verb} no image ({_few(lonely_masks)})")
    rule = f"name + '{suffix}'" if suffix else "the same name"
    files = [str(images[n]) for n in lonely_images] + [str(masks[n]) for n in lonely_masks]
    pairing_problem(f"{where}: " + "; ".join(parts), files,
                    fix=f"a mask pairs with the image of {rule} below the split folder (any extension); "
                        f"add the missing files or remove the extra ones (mask_suffix sets a mask name ending)")


def _listed_pairs(path: Path, rows: list[tuple[int, list[str]]], root: Path, split: str) -> list[Pair]:
    """``image mask`` lines: relative to the list file's folder, or to root when the first pair is there."""
    base = path.parent
    first = rows[0][1]
    if not (base / first[0]).exists() and (root / first[0]).exists():
        base = root
    pairs = [(base / image, base / mask) for _, (image, mask) in rows]
    missing = [str(f) for pair in pairs for f in pair if not f.is_file()]
    if missing:
        pairing_problem(f"{path}: {_count(missing, 'listed file')} of split '{split}' not found ({_few(missing)})",
                        missing, fix=f"paths are relative to {base}; fix the list or add the files")
        missing_set = set(missing)
        pairs = [p for p in pairs if str(p[0]) not in missing_set and str(p[1]) not in missing_set]
    return pairs


def _no_split_message(split: str, image_dir: Path) -> str:
    option = f" and {split}_list is not set" if split in LIST_SPLITS else ""
    lists = f", or list its samples in {split}_list" if split in LIST_SPLITS else ""
    flat = ""
    if image_dir.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in image_dir.iterdir()):
        flat = f" ({image_dir} holds images directly: move them into split folders)"
    return (f"folder dataset has no split '{split}': {image_dir / split} does not exist{option}{flat}; "
            f"put its files in {image_dir / split} and the masks folder's '{split}' sub-folder{lists}")


def _strip_extension(name: str, extensions: Sequence[str]) -> str:
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in extensions else name


def _count(items: Sequence[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _few(items: Sequence[Any], limit: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _check_options(num_classes: Any, ignore_index: Any, class_names: Any, palette: Any, mask_suffix: Any,
                   color_masks: bool, ignore_colors: Any) -> None:
    """ValueErrors naming the option (``option=value``), which the config loader pins to its key."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not valid; expected an integer >= 1")
    if isinstance(ignore_index, int) and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index={ignore_index} is a class id (num_classes={num_classes}); "
                         f"use a value outside 0..{num_classes - 1}, e.g. 255")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names={list(class_names)!r}: {len(class_names)} names for num_classes={num_classes}")
    if palette is not None and len(palette) != num_classes:
        raise ValueError(f"palette=[{len(palette)} colours] is not valid: expected one [R, G, B] per class "
                         f"(num_classes={num_classes})")
    for option, colours in (("palette", palette), ("ignore_colors", ignore_colors)):
        for colour in colours or ():
            if len(colour) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                                            for v in colour):
                raise ValueError(f"{option}={list(colours)!r} is not valid; expected RGB triples of integers "
                                 f"0..255, e.g. [[0, 0, 0], [128, 0, 0]]")
    if "/" in mask_suffix or "\\" in mask_suffix:
        raise ValueError(f"mask_suffix={mask_suffix!r} is not valid; expected the end of a file name, not a path")
    if ignore_colors and not color_masks:
        raise ValueError(f"ignore_colors={ignore_colors!r} only applies to colour masks; set color_masks: true")
