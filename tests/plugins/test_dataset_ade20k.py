"""The ``ade20k`` dataset on a tiny ADEChallengeData2016 tree: splits, pairing, labels, errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.plugins.datasets.ade20k import ade20k
from semsegpaddle.plugins.datasets.ade20k_impl import CLASS_NAMES, PALETTE

WIDTH, HEIGHT = 48, 32
TRAIN = ["ADE_train_00000001", "ADE_train_00000002", "ADE_train_00000003"]
VAL = ["ADE_val_00000001", "ADE_val_00000002"]


def colour_of(stem: str) -> tuple[int, int, int]:
    n = int(stem[-2:]) + (10 if "val" in stem else 0)
    return (30 * (n % 8), 200 - 15 * n, 50 + 20 * (n % 5))


def annotation_of(stem: str) -> np.ndarray:
    """Four bands: 0 (unlabelled), 1, a stem-dependent class value, and 150."""
    n = int(stem[-2:]) + (10 if "val" in stem else 0)
    raw = np.zeros((HEIGHT, WIDTH), np.uint8)
    raw[:, 12:24] = 1
    raw[:, 24:36] = 10 + n
    raw[:, 36:] = 150
    return raw


def make_ade(base: Path) -> Path:
    """ADEChallengeData2016 with 3 training and 2 validation images; returns its folder."""
    release = base / "ADEChallengeData2016"
    for folder, stems in (("training", TRAIN), ("validation", VAL)):
        (release / "images" / folder).mkdir(parents=True)
        (release / "annotations" / folder).mkdir(parents=True)
        for stem in reversed(stems):  # creation order must not matter
            Image.fromarray(np.full((HEIGHT, WIDTH, 3), colour_of(stem), np.uint8)).save(
                release / "images" / folder / f"{stem}.jpg", quality=95)
            Image.fromarray(annotation_of(stem), mode="L").save(release / "annotations" / folder / f"{stem}.png")
    return release


@pytest.fixture
def release(tmp_path) -> Path:
    return make_ade(tmp_path)


def test_split_sizes_and_order(release):
    assert [image.stem for image, _ in ade20k("train", root=release).pairs] == TRAIN
    assert [image.stem for image, _ in ade20k("val", root=release).pairs] == VAL


def test_root_may_be_the_release_or_its_parent(release):
    assert ade20k("val", root=release.parent).pairs == ade20k("val", root=release).pairs


def test_samples_pair_each_image_with_its_annotation(release):
    dataset = ade20k("val", root=release)
    for index, stem in enumerate(VAL):
        image_path, label_path = dataset.pairs[index]
        assert image_path.stem == label_path.stem == stem
        image, label = dataset[index]
        assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
        assert np.abs(image.astype(int) - colour_of(stem)).max() <= 4


def test_zero_is_ignored_and_classes_shift_down(release):
    dataset = ade20k("train", root=release)
    for index, stem in enumerate(TRAIN):
        raw = annotation_of(stem)
        _, label = dataset[index]
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        np.testing.assert_array_equal(label, expected)
        assert label.min() == 0 and label[raw == 150].tolist() == [149] * int((raw == 150).sum())


def test_label_space_names_and_palette(release):
    dataset = ade20k("val", root=release)
    assert dataset.num_classes == 150 and dataset.ignore_index == 255
    assert len(dataset.class_names) == 150 == len(set(dataset.class_names))
    assert dataset.class_names[:3] == ("wall", "building", "sky") and dataset.class_names[-1] == "flag"
    assert dataset.class_names[12] == "person" and dataset.class_names[7] == "bed"
    assert dataset.palette.shape == (150, 3) and dataset.palette.dtype == np.uint8
    assert dataset.palette[0].tolist() == [120, 120, 120] and dataset.palette[12].tolist() == [150, 5, 61]
    assert dataset.palette[-1].tolist() == [92, 0, 255]
    assert CLASS_NAMES == dataset.class_names and (PALETTE == dataset.palette).all()


def test_keeping_zero_gives_151_classes(release):
    dataset = ade20k("train", root=release, reduce_zero_label=False)
    assert dataset.num_classes == 151 and dataset.class_names[0] == "other" and dataset.class_names[1] == "wall"
    assert dataset.palette.shape == (151, 3) and dataset.palette[1].tolist() == [120, 120, 120]
    _, label = dataset[0]
    np.testing.assert_array_equal(label, annotation_of(TRAIN[0]))


def test_label_map_applies_before_reduction(release):
    _, label = ade20k("train", root=release, label_map={150: 0})[0]
    assert (label[:, 36:] == 255).all() and 149 not in np.unique(label)


def test_missing_root_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        ade20k("train", root=missing)
    assert str(missing) in str(info.value) and len(str(info.value).splitlines()) == 1


def test_missing_split_folder_names_it(release):
    (release / "annotations" / "validation" / f"{VAL[0]}.png").unlink()
    (release / "annotations" / "validation" / f"{VAL[1]}.png").unlink()
    (release / "annotations" / "validation").rmdir()
    with pytest.raises(FileNotFoundError) as info:
        ade20k("val", root=release)
    assert str(release / "annotations" / "validation") in str(info.value)


def test_image_without_annotation_names_it(release):
    (release / "annotations" / "training" / f"{TRAIN[1]}.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        ade20k("train", root=release)
    assert str(release / "annotations" / "training" / f"{TRAIN[1]}.png") in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_unknown_split_and_bad_label_map(release):
    with pytest.raises(ValueError, match="no split 'test'; expected one of: train, val"):
        ade20k("test", root=release)
    with pytest.raises(ValueError, match="label_map="):
        ade20k("train", root=release, label_map={-1: 3})


def test_registration_and_building_need_no_paddle(release):
    code = (
        "import sys\n"
        "sys.modules['paddle'] = None\n"
        "from semsegpaddle.plugins.datasets import ade20k\n"
        "names = []\n"
        "ade20k.semseg_register_datasets(lambda name, factory, **kw: names.append((name, sorted(kw['options']))))\n"
        f"dataset = ade20k.ade20k('train', root={str(release)!r})\n"
        "image, label = dataset[0]\n"
        "print(names, len(dataset), image.shape, int(label.max()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('ade20k', ['label_map', 'reduce_zero_label', 'root'])] 3 (32, 48, 3) 255"


def test_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    from semsegpaddle.core.plugin.manager import get_registry

    assert any(ep.value == "semsegpaddle.plugins.datasets.ade20k" for ep in entry_points(group="semsegpaddle"))
    component = get_registry("dataset").get("ade20k")
    defaults = {option.name: option.default for option in component.options}
    assert defaults["reduce_zero_label"] is True and defaults["label_map"] is None


@pytest.mark.parametrize("options", [{}, {"reduce_zero_label": False}])
def test_declared_label_space_is_the_datasets_own(release, options):
    from tests.helpers.labels import assert_declared_labels_match

    assert_declared_labels_match("ade20k", release, options)
