"""The ``voc`` dataset on a tiny PASCAL VOC 2012 tree: splits, pairing, labels, SBD aug, errors, CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.plugins.datasets.voc import voc
from semsegpaddle.plugins.datasets.voc_impl import CLASS_NAMES, PALETTE
from tests.helpers.packages import missing_root_config_error, missing_root_error, train_then_eval

WIDTH, HEIGHT = 48, 32
TRAIN_IDS = ["2007_000001", "2007_000002", "2007_000003", "2007_000004"]
VAL_IDS = ["2007_000005", "2007_000006"]
SBD_IDS = ["2008_000101", "2008_000102", "2008_000103"]


def colour_of(image_id: str) -> tuple[int, int, int]:
    """A distinct flat colour per image, so a read image tells which file it came from."""
    n = int(image_id[-3:])
    return (40 * (n % 6), 255 - 30 * (n % 8), 20 + 25 * (n % 9))


def label_of(image_id: str, sbd: bool = False) -> np.ndarray:
    """Class ``1 + n % 20`` on the left, background on the right, a void (255) border unless SBD."""
    n = int(image_id[-3:])
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[:, : WIDTH // 2] = 1 + n % 20
    if not sbd:
        label[0, :] = 255
    return label


def write_image(path: Path, image_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), colour_of(image_id), np.uint8)).save(path, quality=95)


def write_palette_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label, mode="P")
    flat = np.zeros((256, 3), np.uint8)
    flat[: len(PALETTE)] = PALETTE
    flat[255] = (224, 224, 192)
    image.putpalette(flat.reshape(-1).tolist())
    image.save(path)


def make_voc(base: Path) -> Path:
    """VOCdevkit/VOC2012 with 4 train and 2 val images; returns the VOCdevkit folder."""
    voc2012 = base / "VOCdevkit" / "VOC2012"
    for image_id in TRAIN_IDS + VAL_IDS:
        write_image(voc2012 / "JPEGImages" / f"{image_id}.jpg", image_id)
        write_palette_label(voc2012 / "SegmentationClass" / f"{image_id}.png", label_of(image_id))
    lists = voc2012 / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(TRAIN_IDS) + "\n")
    (lists / "val.txt").write_text("\n".join(VAL_IDS) + "\n")
    (lists / "trainval.txt").write_text("\n".join(TRAIN_IDS + VAL_IDS) + "\n")
    return base / "VOCdevkit"


def add_sbd(devkit: Path) -> Path:
    """SBD images with SegmentationClassAug labels (plain L PNGs, as the converters write them)."""
    voc2012 = devkit / "VOC2012"
    for image_id in SBD_IDS:
        write_image(voc2012 / "JPEGImages" / f"{image_id}.jpg", image_id)
        path = voc2012 / "SegmentationClassAug" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label_of(image_id, sbd=True), mode="L").save(path)
    return voc2012


@pytest.fixture
def devkit(tmp_path) -> Path:
    return make_voc(tmp_path)


def stems(dataset) -> list[str]:
    return [image.stem for image, _ in dataset.pairs]


# -------------------------------------------------------------------------------------------------
# splits, pairing, labels
# -------------------------------------------------------------------------------------------------


def test_split_sizes_and_order(devkit):
    assert stems(voc("train", root=devkit)) == TRAIN_IDS
    assert stems(voc("val", root=devkit)) == VAL_IDS
    assert len(voc("trainval", root=devkit)) == 6


def test_root_may_be_vocdevkit_or_voc2012(devkit):
    assert voc("val", root=devkit).pairs == voc("val", root=devkit / "VOC2012").pairs


def test_samples_pair_each_image_with_its_label(devkit):
    dataset = voc("train", root=devkit)
    for index, image_id in enumerate(TRAIN_IDS):
        image, label = dataset[index]
        assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
        assert np.abs(image.astype(int) - colour_of(image_id)).max() <= 4  # JPEG keeps a flat colour
        assert label.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(label, label_of(image_id))  # palette index kept, 255 kept
        assert set(np.unique(label)) == {0, 1 + int(image_id[-3:]) % 20, 255}


def test_label_space_names_and_palette(devkit):
    dataset = voc("val", root=devkit)
    assert dataset.num_classes == 21 and dataset.ignore_index == 255
    assert len(dataset.class_names) == 21 and dataset.class_names[0] == "background"
    assert dataset.class_names[15] == "person" and dataset.class_names[20] == "tvmonitor"
    assert dataset.palette.shape == (21, 3) and dataset.palette.dtype == np.uint8
    assert dataset.palette[0].tolist() == [0, 0, 0] and dataset.palette[1].tolist() == [128, 0, 0]
    assert dataset.palette[15].tolist() == [192, 128, 128] and dataset.palette[20].tolist() == [0, 64, 128]
    assert CLASS_NAMES == dataset.class_names


def test_reduce_zero_label_drops_background(devkit):
    dataset = voc("train", root=devkit, reduce_zero_label=True)
    assert dataset.num_classes == 20 and dataset.class_names[0] == "aeroplane" and len(dataset.palette) == 20
    _, label = dataset[0]
    raw = label_of(TRAIN_IDS[0])
    assert (label[raw == 0] == 255).all() and (label[raw == 255] == 255).all()
    cls = raw[1, 0]
    assert (label[raw == cls] == cls - 1).all()


def test_label_map_is_applied(devkit):
    cls = int(label_of(TRAIN_IDS[0])[1, 0])
    _, label = voc("train", root=devkit, label_map={cls: 7})[0]
    assert 7 in np.unique(label) and cls not in np.unique(label)


# -------------------------------------------------------------------------------------------------
# SBD augmentation
# -------------------------------------------------------------------------------------------------


def test_aug_with_train_aug_list(devkit):
    voc2012 = add_sbd(devkit)
    lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in TRAIN_IDS[:2] + SBD_IDS]
    (voc2012 / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines) + "\n")
    dataset = voc("train", root=devkit, aug=True)
    assert stems(dataset) == TRAIN_IDS[:2] + SBD_IDS
    labels = [label.parent.name for _, label in dataset.pairs]
    assert labels == ["SegmentationClass"] * 2 + ["SegmentationClassAug"] * 3
    image, label = dataset[3]
    np.testing.assert_array_equal(label, label_of(SBD_IDS[1], sbd=True))
    assert np.abs(image.astype(int) - colour_of(SBD_IDS[1])).max() <= 4
    assert stems(voc("val", root=devkit, aug=True)) == VAL_IDS  # val is never augmented


def test_aug_with_train_plus_aug_lists(devkit):
    voc2012 = add_sbd(devkit)
    (voc2012 / "ImageSets" / "Segmentation" / "aug.txt").write_text("\n".join(SBD_IDS) + "\n")
    dataset = voc("train", root=devkit / "VOC2012", aug=True)
    assert stems(dataset) == TRAIN_IDS + SBD_IDS
    assert len(voc("train", root=devkit)) == 4  # aug off: the plain list


def test_aug_missing_folder_or_list_names_it(devkit):
    with pytest.raises(FileNotFoundError) as info:
        voc("train", root=devkit, aug=True)
    assert "SegmentationClassAug" in str(info.value) and len(str(info.value).splitlines()) == 1
    add_sbd(devkit)
    with pytest.raises(FileNotFoundError) as info:
        voc("train", root=devkit, aug=True)
    message = str(info.value)
    assert str(devkit / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt") in message
    assert len(message.splitlines()) == 1
    with pytest.raises(ValueError, match="aug=True augments the train split only"):
        voc("trainval", root=devkit, aug=True)


def test_aug_list_entry_without_label_names_it(devkit):
    voc2012 = add_sbd(devkit)
    write_image(voc2012 / "JPEGImages" / "2009_000999.jpg", "2009_000999")
    (voc2012 / "ImageSets" / "Segmentation" / "trainaug.txt").write_text("2007_000001\n2009_000999\n")
    with pytest.raises(FileNotFoundError) as info:
        voc("train", root=devkit, aug=True)
    assert "2009_000999" in str(info.value) and "trainaug.txt:2" in str(info.value)
    assert str(voc2012 / "SegmentationClassAug" / "2009_000999.png") in str(info.value)


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------


def test_missing_root_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        voc("train", root=missing)
    assert str(missing) in str(info.value) and len(str(info.value).splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither VOC2012/JPEGImages nor JPEGImages"):
        voc("train", root=tmp_path / "empty")


def test_missing_list_file_names_it(devkit):
    with pytest.raises(FileNotFoundError) as info:
        voc("test", root=devkit)
    assert str(devkit / "VOC2012" / "ImageSets" / "Segmentation" / "test.txt") in str(info.value)
    with pytest.raises(ValueError, match="no split"):
        voc("../train", root=devkit)


def test_missing_image_or_label_names_the_file(devkit):
    (devkit / "VOC2012" / "SegmentationClass" / f"{VAL_IDS[1]}.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        voc("val", root=devkit)
    assert f"{VAL_IDS[1]}.png" in str(info.value) and "val.txt:2" in str(info.value)
    (devkit / "VOC2012" / "JPEGImages" / f"{TRAIN_IDS[2]}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=f"{TRAIN_IDS[2]}.jpg"):
        voc("train", root=devkit)


def test_config_error_names_the_key(tmp_path):
    message = missing_root_config_error("voc", tmp_path)
    assert "dataset.root" in message and "nowhere" in message


# -------------------------------------------------------------------------------------------------
# registration and the CLI
# -------------------------------------------------------------------------------------------------


def test_registration_and_building_need_no_paddle(devkit):
    code = (
        "import sys\n"
        "sys.modules['paddle'] = None\n"
        "from semsegpaddle.plugins.datasets import voc\n"
        "names = []\n"
        "voc.semseg_register_datasets(lambda name, factory, **kw: names.append((name, sorted(kw['options']))))\n"
        f"dataset = voc.voc('val', root={str(devkit)!r})\n"
        "image, label = dataset[0]\n"
        "print(names, len(dataset), image.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("[('voc', ['aug', 'label_map', 'reduce_zero_label', 'root'])] "
                                     "2 (32, 48, 3)")


def test_train_and_eval_through_the_cli(devkit, tmp_path):
    metrics = train_then_eval(tmp_path, ["dataset.name=voc", f"dataset.root={devkit}"], eval_batch=2)
    assert list(metrics["per_class"]) == list(CLASS_NAMES)
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_cli_missing_root_is_one_line(tmp_path):
    lines = missing_root_error("voc", tmp_path)
    assert len(lines) == 1 and "dataset.root" in lines[0] and str(tmp_path / "nowhere") in lines[0], lines


@pytest.mark.parametrize("options", [{}, {"reduce_zero_label": True}])
def test_declared_label_space_is_the_datasets_own(devkit, options):
    from tests.helpers.labels import assert_declared_labels_match

    assert_declared_labels_match("voc", devkit, options)
