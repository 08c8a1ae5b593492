"""Cityscapes read from disk: the official folder layout, or the list files of SemSegPaddle setups.

Official layout (``root`` holds the unpacked ``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip``; ``gtCoarse.zip`` and ``leftImg8bit_trainextra.zip`` for ``coarse``)::

    root/
      leftImg8bit/{train,val,test,train_extra}/CITY/CITY_xxxxxx_yyyyyy_leftImg8bit.png
      gtFine/{train,val,test}/CITY/CITY_xxxxxx_yyyyyy_gtFine_labelIds.png
                                   CITY_xxxxxx_yyyyyy_gtFine_labelTrainIds.png  # optional
      gtCoarse/{train,train_extra,val}/CITY/CITY_xxxxxx_yyyyyy_gtCoarse_labelIds.png

A split is a folder under ``leftImg8bit``; each image is paired with the label of the same stem
in ``gtFine/<split>/CITY`` (``gtCoarse`` with ``coarse``). ``*_labelTrainIds.png`` files (written
by cityscapesScripts' ``createTrainIdLabelImgs``) hold train ids and are read as they are, where
present and ``use_train_ids`` is on; ``*_labelIds.png`` files hold labelIds and are converted to
train ids with the official table (:mod:`cityscapes_labels`): the 19 classes become 0..18, every
other label 255 (ignored). A labelIds value outside the table is left as it is, so the sample
check names the file. Test images without a label file read as all-ignored.

List files: SemSegPaddle kept its splits in ``cityscapes_list/<split>.lst`` (also ``trainval``,
``train+`` ...) and its successor in ``<split>Labels.txt``, one sample per line, paths relative to
``root``: ``leftImg8bit/... gtFine/...`` (tab or space separated), or a single path, image or
label, whose partner is found by the Cityscapes file naming. With ``list_file: auto`` (the
default) such a file is used when present, else the folders are scanned; a label file named
``*_labelTrainIds.png`` holds train ids, any other labelIds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from semsegpaddle.core.data.file_dataset import (
    FileDataset,
    Pair,
    listed_pairs,
    pairing_problem,
    read_list_lines,
    require_dir,
)
from semsegpaddle.core.data.labels import MAX_VALUE, LabelMapping
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.plugins.datasets.cityscapes_labels import (
    CLASS_NAMES,
    LABEL_ID_TO_TRAIN_ID,
    PALETTE,
)

IMAGE_FOLDER = "leftImg8bit"
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_labelIds.png"
#: list files looked for by ``list_file: auto``, relative to root ({split} is replaced)
AUTO_LISTS = ("cityscapes_list/{split}.lst", "{split}Labels.txt")
#: splits whose images may lack labels (read as all-ignored)
UNLABELLED_SPLITS = ("test",)

#: labelId -> train id for every 16-bit value; values outside the table stay as they are
_TRAIN_ID_TABLE = np.arange(MAX_VALUE + 1, dtype=np.int64)
for _label_id, _train_id in LABEL_ID_TO_TRAIN_ID.items():
    if _label_id >= 0:  # license plate (-1) is never drawn in a label image
        _TRAIN_ID_TABLE[_label_id] = _train_id
_BYTE_TRAIN_ID_TABLE = _TRAIN_ID_TABLE[:256].astype(np.uint8)  # 8-bit files (all official ones) stay 8-bit


def to_train_ids(label_ids: np.ndarray, where: str = "label") -> np.ndarray:
    """Train ids of a labelIds array by the official table (uint8 for a uint8 array, else int64);
    values outside the table are kept."""
    if label_ids.dtype == np.uint8:
        return np.take(_BYTE_TRAIN_ID_TABLE, label_ids)
    if label_ids.dtype != np.uint8 and label_ids.size and (label_ids.min() < 0 or label_ids.max() > MAX_VALUE):
        raise DataError(f"{where}: labelIds must lie in 0..{MAX_VALUE}, found "
                        f"{int(label_ids.min())}..{int(label_ids.max())}")
    return _TRAIN_ID_TABLE[label_ids]


def holds_train_ids(label: Path) -> bool:
    """True for a ``*_labelTrainIds.png`` file; any other label file holds labelIds."""
    return label.name.endswith(TRAIN_IDS_SUFFIX)


def find_list_file(root: Path, split: str, list_file: str | None) -> Path | None:
    """The list file of ``split``: ``None`` scans folders, ``auto`` takes a seed list if present,
    any other value is a path (relative to root, ``{split}`` replaced) that must exist."""
    if list_file is None:
        return None
    if list_file == "auto":
        found = (root / pattern.replace("{split}", split) for pattern in AUTO_LISTS)
        return next((path for path in found if path.is_file()), None)
    path = root / list_file.replace("{split}", split)
    if not path.is_file():
        raise FileNotFoundError(2, f"Cityscapes list file of split '{split}' not found", str(path))
    return path


def _swap_suffix(label: Path, old: str, new: str) -> Path:
    return label.with_name(label.name[: -len(old)] + new)


def choose_label(label: Path, use_train_ids: bool) -> Path:
    """The label file to read for a listed one: its labelTrainIds sibling when ``use_train_ids`` and
    present; its labelIds sibling when not ``use_train_ids``."""
    if use_train_ids and label.name.endswith(LABEL_IDS_SUFFIX):
        sibling = _swap_suffix(label, LABEL_IDS_SUFFIX, TRAIN_IDS_SUFFIX)
        return sibling if sibling.is_file() else label
    if not use_train_ids and holds_train_ids(label):
        return _swap_suffix(label, TRAIN_IDS_SUFFIX, LABEL_IDS_SUFFIX)
    return label


def _replace_folder(path: str, old: tuple[str, ...], new: str) -> str:
    """``path`` with its last folder named one of ``old`` renamed ``new``."""
    parts = list(Path(path).parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in old:
            parts[index] = new
            break
    return str(Path(*parts))


def partner(field: str, annotation: str) -> tuple[str, str] | None:
    """(image, label) for a single listed path by the Cityscapes naming, or None if it is neither."""
    name = Path(field).name
    if name.endswith(IMAGE_SUFFIX):
        label = _replace_folder(field, (IMAGE_FOLDER,), annotation)
        return field, label[: -len(IMAGE_SUFFIX)] + f"_{annotation}{LABEL_IDS_SUFFIX}"
    for gt in ("gtFine", "gtCoarse"):
        for suffix in (TRAIN_IDS_SUFFIX, LABEL_IDS_SUFFIX):
            if name.endswith(f"_{gt}{suffix}"):
                image = _replace_folder(field, (gt,), IMAGE_FOLDER)
                return image[: -len(f"_{gt}{suffix}")] + IMAGE_SUFFIX, field
    return None


def list_pairs(root: Path, list_path: Path, split: str, annotation: str, use_train_ids: bool) -> list[Pair]:
    """Pairs of a list file in its order; files that do not exist are a pairing problem."""
    pairs: list[Pair] = []
    missing: list[str] = []
    for number, fields in read_list_lines(list_path):
        if len(fields) > 2:
            raise DataError(f"{list_path}:{number}: expected 'image label' or one Cityscapes path, "
                            f"got {len(fields)} fields")
        found = (fields[0], fields[1]) if len(fields) == 2 else partner(fields[0], annotation)
        if found is None:
            raise DataError(f"{list_path}:{number}: '{fields[0]}' is neither a *{IMAGE_SUFFIX} image nor a "
                            f"*_gtFine/_gtCoarse label file; write 'image label'")
        image, label = root / found[0], choose_label(root / found[1], use_train_ids)
        if not image.is_file():
            missing.append(str(image))
        elif label.is_file():
            pairs.append((image, label))
        elif split in UNLABELLED_SPLITS and len(fields) == 1:
            pairs.append((image, None))
        else:
            missing.append(str(label))
    return listed_pairs(list_path, pairs, missing, f"Cityscapes split '{split}'")


def scan_pairs(root: Path, split: str, annotation: str, use_train_ids: bool) -> list[Pair]:
    """Pairs found in ``leftImg8bit/<split>/CITY`` and ``<annotation>/<split>/CITY``, sorted by path."""
    labels = root / annotation / split
    if split == "train_extra" and annotation == "gtFine" and not labels.is_dir():
        raise ValueError("coarse=False: split 'train_extra' has coarse labels only (gtCoarse); set coarse: true")
    images = require_dir(root / IMAGE_FOLDER / split, f"Cityscapes {split} images ({IMAGE_FOLDER}/{split})")
    if split not in UNLABELLED_SPLITS:
        require_dir(labels, f"Cityscapes {split} labels ({annotation}/{split})")
    pairs: list[Pair] = []
    missing: list[str] = []
    for city in sorted(os.listdir(images)):
        if not (images / city).is_dir():
            continue
        have = set(os.listdir(labels / city)) if (labels / city).is_dir() else set()
        for name in sorted(n for n in os.listdir(images / city) if n.endswith(IMAGE_SUFFIX)):
            stem = name[: -len(IMAGE_SUFFIX)]
            train_ids, label_ids = (f"{stem}_{annotation}{suffix}" for suffix in (TRAIN_IDS_SUFFIX, LABEL_IDS_SUFFIX))
            chosen = train_ids if use_train_ids and train_ids in have else label_ids
            if chosen in have:
                pairs.append((images / city / name, labels / city / chosen))
            elif split in UNLABELLED_SPLITS:
                pairs.append((images / city / name, None))
            else:
                missing.append(str(labels / city / label_ids))
    if missing:
        pairing_problem(f"{labels}: {len(missing)} image(s) of split '{split}' have no label file "
                        f"(first: {missing[0]})", missing,
                        f"restore the {annotation} files (*{LABEL_IDS_SUFFIX}) of these images")
    if not pairs and not missing:
        raise DataError(f"{images}: no Cityscapes images (CITY/*{IMAGE_SUFFIX}) in split '{split}'")
    return pairs


class CityscapesDataset(FileDataset):
    """One split of Cityscapes: the 19 train classes (18 without road if zero is reduced), 255 ignored.

    ``read_raw_label`` gives train ids, whichever kind of label file a sample has; the common label
    options (``mapping``) act on them.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, mapping: LabelMapping, *,
                 use_train_ids: bool = True, coarse: bool = False, list_file: str | None = "auto") -> None:
        root = require_dir(root, "Cityscapes root")
        annotation = "gtCoarse" if coarse else "gtFine"
        listed = find_list_file(root, split, list_file)
        if listed is not None:
            pairs = list_pairs(root, listed, split, annotation, use_train_ids)
        else:
            pairs = scan_pairs(root, split, annotation, use_train_ids)
        #: the list file, or the image folder, the samples come from
        self.source = listed if listed is not None else root / IMAGE_FOLDER / split
        names, palette = CLASS_NAMES, np.asarray(PALETTE, dtype=np.uint8)
        if mapping.reduce_zero_label:
            names, palette = names[1:], palette[1:]
        super().__init__(pairs, num_classes=len(names), class_names=names, palette=palette,
                         ignore_index=mapping.ignore_index, mapping=mapping, name="cityscapes", split=split)
        #: per sample: True when its label file holds labelIds (converted on reading)
        self.converts = [label is not None and not holds_train_ids(label) for _, label in self.pairs]

    def read_raw_label(self, index: int) -> np.ndarray:
        """The sample's train ids (labelIds files converted by the official table)."""
        raw = super().read_raw_label(index)
        if not self.converts[index]:
            return raw
        return to_train_ids(raw, where=str(self.pairs[index][1]))

