"""Your own images and masks in folders (or listed in a text file): the ``folder`` dataset, registration.

Two layouts, chosen per split (``dataset.train_split``, ``dataset.val_split``):

- **folders**: ``ROOT/images/<split>/`` and ``ROOT/masks/<split>/``, searched recursively; an image
  and its mask are paired by their path below these folders without the extension
  (``images/train/a/001.jpg`` ↔ ``masks/train/a/001.png``; ``mask_suffix: _mask`` pairs it with
  ``001_mask.png``). Images: jpg, jpeg, png, bmp, tif, tiff, webp; masks: png, bmp, tif, tiff (JPEG
  masks are read, but lossy: ``semseg check-data`` flags them). Multispectral, 16-bit and float
  images: ``.tif``/``.tiff`` with ``model.in_channels`` set to their band count (every band is
  read; see docs/datasets.md).
- **list file** (``train_list``, ``val_list``, ``test_list``; relative to ROOT), taking precedence:
  lines ``image mask`` with paths relative to the list file's folder (or to ROOT when the first
  pair is found there), or lines holding a single sample name, e.g. ``a/001``, looked up in the
  folders as above (a split file selecting samples).

Masks hold class ids (0..num_classes-1, ``ignore_index`` for unlabelled pixels), or palette colours
with ``color_masks: true``. ``label_map`` and ``reduce_zero_label`` fix other conventions.

The dataset lives in ``folder_impl``, imported when a dataset is built (this module imports
neither numpy, paddle nor cv2).
"""
from __future__ import annotations

from pathlib import Path

from semsegpaddle import hookimpl
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS


def build_folder(
    split: str,
    *,
    root: Path,
    num_classes: int,
    images: str = "images",
    masks: str = "masks",
    mask_suffix: str = "",
    train_list: str | None = None,
    val_list: str | None = None,
    test_list: str | None = None,
    class_names: list[str] | None = None,
    palette: list[list[int]] | None = None,
    ignore_index: int = 255,
    color_masks: bool = False,
    ignore_colors: list[list[int]] | None = None,
    label_map: dict[int, int] | None = None,
    reduce_zero_label: bool = False,
):
    """Your own dataset: images and masks paired by file name in split folders, or listed in a file."""
    from semsegpaddle.plugins.datasets.folder_impl import FolderDataset

    return FolderDataset(
        split, root=root, num_classes=num_classes, images=images, masks=masks, mask_suffix=mask_suffix,
        lists={"train": train_list, "val": val_list, "test": test_list}, class_names=class_names,
        palette=palette, ignore_index=ignore_index, color_masks=color_masks, ignore_colors=ignore_colors,
        label_map=label_map, reduce_zero_label=reduce_zero_label,
    )


@hookimpl
def semseg_register_datasets(register):
    """Register the ``folder`` dataset."""
    register(
        "folder",
        build_folder,
        options={
            "root": "dataset folder; images/<split>/ and masks/<split>/ below it, or the list files",
            "num_classes": "number of classes; mask values 0..num_classes-1 (after label_map / reduce_zero_label)",
            "images": "image folder, relative to root (split sub-folders below it)",
            "masks": "mask folder, relative to root (split sub-folders below it)",
            "mask_suffix": "end of a mask's file name before its extension, e.g. _mask pairs a.jpg with a_mask.png",
            "train_list": "list file of the train split, relative to root: 'image mask' lines or sample names",
            "val_list": "list file of the val split, relative to root: 'image mask' lines or sample names",
            "test_list": "list file of the test split, relative to root: 'image mask' lines or sample names",
            "class_names": "one name per class (default: the class ids 0, 1, ...)",
            "palette": "one [R, G, B] per class for masks and overlays (default: the PASCAL VOC colours)",
            "ignore_index": "mask value of unlabelled pixels (not scored, not trained on)",
            "color_masks": "true: masks are painted in the palette's colours, read back to class ids",
            "ignore_colors": "with color_masks: [R, G, B] colours meaning ignore_index, e.g. [[224, 224, 192]]",
            **LABEL_OPTIONS,
        },
        description="your own images and masks: split folders paired by file name, or list files",
    )
