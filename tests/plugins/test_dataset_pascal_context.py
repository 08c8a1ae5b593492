"""The ``pascal_context`` dataset on a tiny tree in SemSegPaddle's layout: splits, pairing, the 59-
and 60-class label values, names, palette, list files and errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data.base import default_palette
from semsegpaddle.core.common.errors import ConfigError, DataError
from semsegpaddle.plugins.datasets.pascal_context import pascal_context

WIDTH, HEIGHT = 64, 32
TRAIN_IDS = ["2008_000002", "2008_000007", "2008_000009"]
VAL_IDS = ["2008_000010", "2008_000011"]


def colour_of(image_id: str) -> tuple[int, int, int]:
    """A distinct flat colour per image, so a read image tells which file it came from."""
    n = int(image_id[-2:])
    return (20 * n, 250 - 20 * n, 120)


def value_of(image_id: str) -> int:
    """The label value (1..59) of the image's left half; the right half is background (0)."""
    return 1 + (int(image_id[-2:]) * 7) % 59


def write_sample(root: Path, image_id: str, label: np.ndarray | None = None) -> None:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "GroundTruth_trainval_png").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), colour_of(image_id), np.uint8)).save(
        root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    if label is None:
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[:, : WIDTH // 2] = value_of(image_id)
    Image.fromarray(label).save(root / "GroundTruth_trainval_png" / f"{image_id}.png")


def list_lines(ids: list[str]) -> str:
    return "".join(f"JPEGImages/{i}.jpg GroundTruth_trainval_png/{i}.png\n" for i in ids)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "pascalContext"
    for image_id in TRAIN_IDS + VAL_IDS:
        write_sample(root, image_id)
    (root / "pascal_context_train.txt").write_text(list_lines(TRAIN_IDS))
    (root / "pascal_context_val.txt").write_text(list_lines(VAL_IDS))
    return root


def test_sample_count_per_split(root):
    assert len(pascal_context("train", root=root)) == 3
    assert len(pascal_context("val", root=root)) == 2
    assert len(pascal_context("val", root=root, num_classes=60)) == 2


def test_images_are_paired_with_their_labels_in_list_order(root):
    for num_classes, shift, background in ((59, 1, 255), (60, 0, 0)):
        dataset = pascal_context("train", root=root, num_classes=num_classes)
        assert [image.stem for image, _ in dataset.pairs] == TRAIN_IDS
        for index, image_id in enumerate(TRAIN_IDS):
            image, label = dataset[index]
            assert dataset.pairs[index][1].stem == image_id
            assert image.shape == (HEIGHT, WIDTH, 3) and np.abs(image[4, 4].astype(int) - colour_of(image_id)).max() <= 3
            assert label.shape == (HEIGHT, WIDTH)
            assert (label[:, : WIDTH // 2] == value_of(image_id) - shift).all()
            assert (label[:, WIDTH // 2:] == background).all()
            assert f"{image_id}.jpg" in dataset.describe(index)


def test_every_label_value_in_both_variants(root):
    """Values 0..59 (and 255): 59 classes ignore 0 and shift the rest down; 60 keep them."""
    every = (np.arange(WIDTH)[None, :] % 60).repeat(HEIGHT, axis=0).astype(np.uint8)
    every[0, :2] = 255
    write_sample(root, VAL_IDS[0], every)
    _, label59 = pascal_context("val", root=root)[0]
    expected = np.where(every == 0, 255, np.where(every == 255, 255, every.astype(np.int64) - 1))
    assert np.array_equal(label59, expected)
    assert set(np.unique(label59).tolist()) == set(range(59)) | {255}
    _, label60 = pascal_context("val", root=root, num_classes=60)[0]
    assert np.array_equal(label60, every.astype(np.int64))
    assert set(np.unique(label60).tolist()) == set(range(60)) | {255}


def test_class_counts_names_and_palette(root):
    d59 = pascal_context("train", root=root)
    d60 = pascal_context("train", root=root, num_classes=60)
    assert (d59.num_classes, d60.num_classes) == (59, 60) and d59.ignore_index == d60.ignore_index == 255
    assert len(d59.class_names) == 59 and len(set(d59.class_names)) == 59
    assert d59.class_names == tuple(sorted(d59.class_names))  # the release's alphabetical order
    assert (d59.class_names[0], d59.class_names[13], d59.class_names[36], d59.class_names[-1]) == \
           ("aeroplane", "car", "person", "wood")
    assert d60.class_names == ("background", *d59.class_names)
    # the VOC colour map by label value: background black, aeroplane (1) dark red, in both variants
    assert np.array_equal(d60.palette, default_palette(60)) and d60.palette.dtype == np.uint8
    assert np.array_equal(d59.palette, d60.palette[1:]) and d59.palette.shape == (59, 3)
    assert tuple(d60.palette[0]) == (0, 0, 0) and tuple(d59.palette[0]) == (128, 0, 0)
    assert len({tuple(c) for c in d60.palette.tolist()}) == 60


def test_label_map_acts_on_the_file_values_first(root):
    dataset = pascal_context("train", root=root, label_map={value_of(TRAIN_IDS[0]): 0})
    _, label = dataset[0]
    assert (label == 255).all()  # the class is mapped to background, which 59 classes ignore
    assert pascal_context("train", root=root, reduce_zero_label=True).num_classes == 59
    assert pascal_context("train", root=root, num_classes=60, reduce_zero_label=False).num_classes == 60


def test_id_lists(root):
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text(f"{TRAIN_IDS[2]}\n\n{TRAIN_IDS[0]}\n")
    dataset = pascal_context("train", root=root, list_file="ImageSets/{split}.txt")
    assert [image.name for image, _ in dataset.pairs] == [f"{TRAIN_IDS[2]}.jpg", f"{TRAIN_IDS[0]}.jpg"]
    assert (dataset[0][1][:, : WIDTH // 2] == value_of(TRAIN_IDS[2]) - 1).all()


def test_bad_options_name_the_option(root):
    with pytest.raises(ValueError, match="num_classes=61"):
        pascal_context("train", root=root, num_classes=61)
    with pytest.raises(ValueError, match="reduce_zero_label=False contradicts the 59 classes"):
        pascal_context("train", root=root, reduce_zero_label=False)
    with pytest.raises(ValueError, match="reduce_zero_label=True contradicts the 60 classes"):
        pascal_context("train", root=root, num_classes=60, reduce_zero_label=True)
    with pytest.raises(ValueError, match="no split"):
        pascal_context("../train", root=root)
    with pytest.raises(ConfigError, match="'dataset.num_classes' expects one of 59, 60, got int 61"):
        config_from_dict({"dataset": {"name": "pascal_context", "root": str(root), "num_classes": 61}})
    config = config_from_dict({"dataset": {"name": "pascal_context", "root": str(root), "reduce_zero_label": False}})
    with pytest.raises(ConfigError, match="dataset.reduce_zero_label"):
        build_component(config, "dataset", "dataset", "train", extra=("train_split", "val_split"))


def test_missing_root_list_and_files_are_one_line_errors_naming_them(tmp_path, root):
    with pytest.raises(FileNotFoundError) as info:
        pascal_context("train", root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(FileNotFoundError) as info:
        pascal_context("test", root=root)
    assert str(root / "pascal_context_test.txt") in str(info.value)
    (root / "pascal_context_empty.txt").write_text("\n# none\n")
    with pytest.raises(DataError, match="pascal_context_empty.txt: lists no samples"):
        pascal_context("empty", root=root)
    (root / "GroundTruth_trainval_png" / f"{VAL_IDS[1]}.png").unlink()
    with pytest.raises(DataError) as info:
        pascal_context("val", root=root)
    assert str(root / "GroundTruth_trainval_png" / f"{VAL_IDS[1]}.png") in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    (root / "pascal_context_bad.txt").write_text("a b c\n")
    with pytest.raises(DataError, match="pascal_context_bad.txt:1"):
        pascal_context("bad", root=root)


def test_values_outside_the_classes_are_reported_with_the_file(root):
    from semsegpaddle.core.data.datasets import checked_sample

    bad = np.zeros((HEIGHT, WIDTH), np.uint8)
    bad[0, 0] = 70
    write_sample(root, VAL_IDS[0], bad)
    with pytest.raises(DataError) as info:
        checked_sample(pascal_context("val", root=root, num_classes=60), 0)
    assert "[70]" in str(info.value) and f"{VAL_IDS[0]}.jpg" in str(info.value)


def test_building_needs_no_paddle(root):
    code = ("import sys\nsys.modules['paddle'] = None\n"
            "from semsegpaddle.plugins.datasets.pascal_context import pascal_context\n"
            f"dataset = pascal_context('val', root={str(root)!r})\n"
            "print(len(dataset), dataset.num_classes, dataset[0][1].shape)\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 59 ({HEIGHT}, {WIDTH})"
