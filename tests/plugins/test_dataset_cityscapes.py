"""The ``cityscapes`` dataset on tiny trees in the official and SemSegPaddle layouts: the label table
against cityscapesScripts, splits, pairing, train-id files, list files, coarse labels, errors, CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers import labels as official
from PIL import Image

from semsegpaddle.core.common.errors import DataError
from semsegpaddle.plugins.datasets import cityscapes_labels
from semsegpaddle.plugins.datasets.cityscapes import cityscapes
from tests.helpers.packages import missing_root_config_error, missing_root_error, train_then_eval

WIDTH, HEIGHT = 64, 32
#: split -> city -> frame numbers
LAYOUT = {"train": {"aachen": [1, 2], "bochum": [3]}, "val": {"frankfurt": [4, 5]}, "test": {"berlin": [6]}}
#: train classes by labelId, one per frame (road, car, sky, person, bicycle, building)
FRAME_LABEL_ID = {1: 7, 2: 26, 3: 23, 4: 24, 5: 33, 6: 11}


def expected_train_id(label_id: int) -> int:
    """cityscapesScripts' train id of a labelId, 255 for every label that is not trained."""
    train_id = official.id2label[label_id].trainId
    return train_id if 0 <= train_id < 255 else 255


def stem(city: str, frame: int) -> str:
    return f"{city}_{frame:06d}_000019"


def colour_of(frame: int) -> tuple[int, int, int]:
    """A distinct flat colour per frame, so a read image tells which file it came from."""
    return (30 * frame, 200 - 20 * frame, 7 * frame)


def label_ids_of(frame: int) -> np.ndarray:
    """The frame's class on the left half; 'unlabeled' (0) and 'ego vehicle' (1) on the right."""
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[:, : WIDTH // 2] = FRAME_LABEL_ID[frame]
    label[HEIGHT // 2:, WIDTH // 2:] = 1
    return label


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_cityscapes(root: Path, train_ids_for: tuple[str, ...] = ()) -> Path:
    """leftImg8bit + gtFine for LAYOUT (no test labels); ``*_labelTrainIds.png`` for the cities in
    ``train_ids_for``, all class 5 (pole) so they differ from the converted labelIds."""
    for split, cities in LAYOUT.items():
        for city, frames in cities.items():
            for frame in frames:
                name = stem(city, frame)
                save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png",
                     np.full((HEIGHT, WIDTH, 3), colour_of(frame), np.uint8))
                if split == "test":
                    continue
                save(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids_of(frame))
                save(root / "gtFine" / split / city / f"{name}_gtFine_color.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
                if city in train_ids_for:
                    save(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png",
                         np.full((HEIGHT, WIDTH), 5, np.uint8))
    return root


@pytest.fixture
def root(tmp_path):
    return make_cityscapes(tmp_path / "cityscapes")


def frame_of(path: Path) -> int:
    return int(path.name.split("_")[1])


# -------------------------------------------------------------------------------------------------
# the label table
# -------------------------------------------------------------------------------------------------


def test_label_table_is_the_official_one():
    ours = {label.id: label for label in cityscapes_labels.LABELS}
    assert len(ours) == len(official.labels) == 35
    for label in official.labels:
        mine = ours[label.id]
        assert (mine.name, mine.train_id, mine.category, mine.category_id) == \
               (label.name, label.trainId, label.category, label.categoryId), label.name
        assert (mine.has_instances, mine.ignore_in_eval, mine.color) == \
               (label.hasInstances, label.ignoreInEval, label.color), label.name
        assert cityscapes_labels.train_id(label.id) == expected_train_id(label.id), label.name
    assert cityscapes_labels.train_id(-1) == 255  # license plate: official train id -1, ignored
    with pytest.raises(KeyError):
        cityscapes_labels.train_id(34)


def test_class_names_and_palette_are_the_official_train_classes(root):
    dataset = cityscapes("train", root=root)
    trained = sorted((l for l in official.labels if 0 <= l.trainId < 255), key=lambda l: l.trainId)
    assert dataset.num_classes == 19 and dataset.ignore_index == 255
    assert dataset.class_names == tuple(l.name for l in trained)
    assert dataset.palette.dtype == np.uint8 and dataset.palette.shape == (19, 3)
    assert [tuple(c) for c in dataset.palette.tolist()] == [l.color for l in trained]
    assert dataset.class_names[0] == "road" and tuple(dataset.palette[0]) == (128, 64, 128)


def test_every_label_id_is_read_as_its_official_train_id(root):
    """A labelIds file holding every id 0..33 (and 255) reads as cityscapesScripts' train ids."""
    every = (np.arange(WIDTH)[None, :] % 34).repeat(HEIGHT, axis=0).astype(np.uint8)
    every[0, :3] = 255
    path = root / "gtFine" / "val" / "frankfurt" / f"{stem('frankfurt', 4)}_gtFine_labelIds.png"
    save(path, every)
    for use_train_ids in (True, False):  # no train-id file here: both convert
        dataset = cityscapes("val", root=root, use_train_ids=use_train_ids)
        _, label = dataset[0]
        expected = np.vectorize(lambda v: 255 if v == 255 else expected_train_id(int(v)))(every)
        assert label.dtype == np.uint8 and np.array_equal(label, expected)
        assert set(np.unique(label).tolist()) == set(range(19)) | {255}


def test_values_outside_the_table_are_reported_with_the_file(root):
    from semsegpaddle.core.data.datasets import checked_sample

    bad = label_ids_of(4)
    bad[0, 0] = 40
    save(root / "gtFine" / "val" / "frankfurt" / f"{stem('frankfurt', 4)}_gtFine_labelIds.png", bad)
    dataset = cityscapes("val", root=root)
    with pytest.raises(DataError) as info:
        checked_sample(dataset, 0)
    assert "[40]" in str(info.value) and f"{stem('frankfurt', 4)}_leftImg8bit.png" in str(info.value)


# -------------------------------------------------------------------------------------------------
# splits and pairing in the official layout
# -------------------------------------------------------------------------------------------------


def test_sample_count_per_split(root):
    assert [len(cityscapes(split, root=root)) for split in ("train", "val", "test")] == [3, 2, 1]


def test_images_are_paired_with_their_labels(root):
    for split in ("train", "val"):
        dataset = cityscapes(split, root=root)
        for index in range(len(dataset)):
            image, label = dataset[index]
            image_path, label_path = dataset.pairs[index]
            frame = frame_of(image_path)
            assert frame_of(label_path) == frame and label_path.name.endswith("_gtFine_labelIds.png")
            assert image.shape == (HEIGHT, WIDTH, 3) and tuple(image[0, 0]) == colour_of(frame)
            assert label.shape == (HEIGHT, WIDTH)
            assert (label[:, : WIDTH // 2] == expected_train_id(FRAME_LABEL_ID[frame])).all()
            assert (label[:, WIDTH // 2:] == 255).all()
            assert str(image_path) in dataset.describe(index)
            assert image_path.name in dataset.describe(index)


def test_test_images_without_labels_read_as_ignored(root):
    dataset = cityscapes("test", root=root)
    image, label = dataset[0]
    assert dataset.pairs[0][1] is None and tuple(image[0, 0]) == colour_of(6)
    assert label.shape == (HEIGHT, WIDTH) and (label == 255).all()


def test_train_id_files_are_used_where_present(tmp_path):
    root = make_cityscapes(tmp_path / "cs", train_ids_for=("aachen",))
    by_frame = lambda ds: {frame_of(ds.pairs[i][0]): ds[i][1] for i in range(len(ds))}
    labels = by_frame(cityscapes("train", root=root))
    assert (labels[1] == 5).all() and (labels[2] == 5).all()  # aachen: from *_labelTrainIds.png
    assert (labels[3][:, : WIDTH // 2] == expected_train_id(23)).all()  # bochum: converted labelIds
    labels = by_frame(cityscapes("train", root=root, use_train_ids=False))
    assert (labels[1][:, : WIDTH // 2] == expected_train_id(7)).all() and (labels[1][:, WIDTH // 2:] == 255).all()
    assert (labels[2][:, : WIDTH // 2] == expected_train_id(26)).all()


def test_label_options_act_on_train_ids(tmp_path):
    root = make_cityscapes(tmp_path / "cs", train_ids_for=("aachen",))
    dataset = cityscapes("train", root=root, label_map={5: 255, 10: 3})
    labels = {frame_of(dataset.pairs[i][0]): dataset[i][1] for i in range(len(dataset))}
    assert (labels[1] == 255).all()  # pole (5) from the train-id file, mapped to ignore
    assert (labels[3][:, : WIDTH // 2] == 3).all()  # sky (10) from converted labelIds, mapped to 3
    reduced = cityscapes("train", root=root, reduce_zero_label=True)
    assert reduced.num_classes == 18 and reduced.class_names[0] == "sidewalk" and len(reduced.palette) == 18
    assert (reduced[0][1] == 4).all()  # pole 5 -> 4
    with pytest.raises(ValueError, match="label_map="):
        cityscapes("train", root=root, label_map={-1: 3})


# -------------------------------------------------------------------------------------------------
# list files (SemSegPaddle) and coarse labels
# -------------------------------------------------------------------------------------------------


def test_seed_list_file_is_used_when_present(root):
    lines = [(f"leftImg8bit/train/bochum/{stem('bochum', 3)}_leftImg8bit.png\t"
              f"gtFine/train/bochum/{stem('bochum', 3)}_gtFine_labelIds.png"),
             (f"leftImg8bit/val/frankfurt/{stem('frankfurt', 5)}_leftImg8bit.png "
              f"gtFine/val/frankfurt/{stem('frankfurt', 5)}_gtFine_labelIds.png")]
    (root / "cityscapes_list").mkdir()
    (root / "cityscapes_list" / "trainval.lst").write_text("\n".join(lines) + "\n")
    dataset = cityscapes("trainval", root=root)
    assert dataset.source == root / "cityscapes_list" / "trainval.lst"
    assert [frame_of(image) for image, _ in dataset.pairs] == [3, 5]  # list order, both splits
    assert (dataset[1][1][:, : WIDTH // 2] == expected_train_id(33)).all()
    (root / "cityscapes_list" / "train.lst").write_text(lines[0] + "\n")
    assert len(cityscapes("train", root=root)) == 1
    assert len(cityscapes("train", root=root, list_file=None)) == 3  # null: scan the folders


def test_labels_list_with_single_paths(tmp_path):
    root = make_cityscapes(tmp_path / "cs", train_ids_for=("aachen",))
    (root / "valLabels.txt").write_text(
        "".join(f"gtFine/val/frankfurt/{stem('frankfurt', f)}_gtFine_labelIds.png\n" for f in (5, 4)))
    dataset = cityscapes("val", root=root)
    assert [frame_of(image) for image, _ in dataset.pairs] == [5, 4]
    assert all(image.name.endswith("_leftImg8bit.png") and image.is_file() for image, _ in dataset.pairs)
    (root / "images.txt").write_text(f"leftImg8bit/train/aachen/{stem('aachen', 1)}_leftImg8bit.png\n")
    dataset = cityscapes("train", root=root, list_file="images.txt")
    assert dataset.pairs[0][1].name == f"{stem('aachen', 1)}_gtFine_labelTrainIds.png"  # train ids preferred
    assert (dataset[0][1] == 5).all()
    assert cityscapes("train", root=root, list_file="images.txt", use_train_ids=False).pairs[0][1].name \
        == f"{stem('aachen', 1)}_gtFine_labelIds.png"


def test_list_file_errors_name_the_file(root):
    with pytest.raises(FileNotFoundError) as info:
        cityscapes("train", root=root, list_file="lists/{split}.txt")
    assert str(root / "lists" / "train.txt") in str(info.value)
    (root / "empty.lst").write_text("# nothing\n\n")
    with pytest.raises(DataError, match="empty.lst: lists no samples"):
        cityscapes("train", root=root, list_file="empty.lst")
    (root / "bad.lst").write_text("a b c\n")
    with pytest.raises(DataError, match=r"bad.lst:1: expected"):
        cityscapes("train", root=root, list_file="bad.lst")
    (root / "missing.lst").write_text("leftImg8bit/train/x/x_000001_000019_leftImg8bit.png\n")
    with pytest.raises(DataError) as info:
        cityscapes("train", root=root, list_file="missing.lst")
    assert "x_000001_000019_leftImg8bit.png" in str(info.value) and len(str(info.value).splitlines()) == 1
    (root / "unlabelled.lst").write_text(f"leftImg8bit/test/berlin/{stem('berlin', 6)}_leftImg8bit.png\n")
    with pytest.raises(DataError) as info:
        cityscapes("train", root=root, list_file="unlabelled.lst")
    assert str(root / "gtFine" / "test" / "berlin" / f"{stem('berlin', 6)}_gtFine_labelIds.png") in str(info.value)
    assert len(cityscapes("test", root=root, list_file="unlabelled.lst")) == 1  # test images may lack labels


def test_coarse_labels_and_train_extra(root):
    for split, city, frame in (("train", "aachen", 1), ("train_extra", "erlangen", 7), ("train_extra", "erlangen", 8)):
        name = stem(city, frame)
        if split == "train_extra":
            save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png",
                 np.full((HEIGHT, WIDTH, 3), colour_of(frame), np.uint8))
        save(root / "gtCoarse" / split / city / f"{name}_gtCoarse_labelIds.png", np.full((HEIGHT, WIDTH), 21, np.uint8))
    extra = cityscapes("train_extra", root=root, coarse=True)
    assert len(extra) == 2 and all(label.parent.parent.parent.name == "gtCoarse" for _, label in extra.pairs)
    assert (extra[1][1] == expected_train_id(21)).all() and tuple(extra[1][0][0, 0]) == colour_of(8)
    with pytest.raises(DataError, match="2 image"):  # coarse train: aachen_2 and bochum_3 have no coarse label
        cityscapes("train", root=root, coarse=True)
    with pytest.raises(ValueError, match="coarse=False"):
        cityscapes("train_extra", root=root)


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------


def test_missing_root_and_folders_are_one_line_errors_naming_them(tmp_path, root):
    with pytest.raises(FileNotFoundError) as info:
        cityscapes("train", root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        cityscapes("val", root=tmp_path)
    (tmp_path / "only_images" / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        cityscapes("train", root=tmp_path / "only_images")
    assert str(tmp_path / "only_images" / "gtFine" / "train") in str(info.value)
    with pytest.raises(ValueError, match="no split"):
        cityscapes("../train", root=root)


def test_empty_split_names_the_folder(root):
    (root / "leftImg8bit" / "val" / "empty_city").mkdir()
    for path in (root / "leftImg8bit" / "val" / "frankfurt").iterdir():
        path.unlink()
    with pytest.raises(DataError) as info:
        cityscapes("val", root=root)
    assert str(root / "leftImg8bit" / "val") in str(info.value) and "no Cityscapes images" in str(info.value)


def test_image_without_label_names_the_label_file(root):
    missing = root / "gtFine" / "train" / "bochum" / f"{stem('bochum', 3)}_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(DataError) as info:
        cityscapes("train", root=root)
    assert str(missing) in str(info.value) and len(str(info.value).splitlines()) == 1


def test_config_error_names_the_key(tmp_path):
    message = missing_root_config_error("cityscapes", tmp_path)
    assert "dataset.root" in message and "nowhere" in message


# -------------------------------------------------------------------------------------------------
# registration and the CLI
# -------------------------------------------------------------------------------------------------


def test_registration_modules_import_without_heavy_dependencies(root):
    code = (
        "import sys\n"
        "for name in ('paddle', 'numpy', 'cv2'):\n"
        "    sys.modules[name] = None\n"
        "from semsegpaddle.plugins.datasets import cityscapes, cityscapes_labels, pascal_context\n"
        "names = []\n"
        "for module in (cityscapes, pascal_context):\n"
        "    module.semseg_register_datasets(lambda name, factory, **kw: names.append((name, sorted(kw['options']))))\n"
        "print(names, cityscapes_labels.CLASS_NAMES[18])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[('cityscapes', ['coarse', 'label_map', 'list_file', 'reduce_zero_label', 'root', 'use_train_ids']), "
        "('pascal_context', ['label_map', 'list_file', 'num_classes', 'reduce_zero_label', 'root'])] bicycle")
    building = ("import sys\nsys.modules['paddle'] = None\n"
                "from semsegpaddle.plugins.datasets.cityscapes import cityscapes\n"
                f"dataset = cityscapes('val', root={str(root)!r})\n"
                "print(len(dataset), dataset[0][1].shape)\n")
    result = subprocess.run([sys.executable, "-c", building], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 ({HEIGHT}, {WIDTH})"


def test_train_and_eval_through_the_cli(root, tmp_path):
    metrics = train_then_eval(tmp_path, ["dataset.name=cityscapes", f"dataset.root={root}"], eval_batch=1)
    assert list(metrics["per_class"]) == list(cityscapes_labels.CLASS_NAMES)
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_cli_missing_root_is_one_line(tmp_path):
    lines = missing_root_error("cityscapes", tmp_path)
    assert len(lines) == 1 and "dataset.root" in lines[0] and str(tmp_path / "nowhere") in lines[0], lines


@pytest.mark.parametrize("options", [{}, {"reduce_zero_label": True}])
def test_declared_label_space_is_the_datasets_own(root, options):
    """Predicting with a zoo model needs the classes without the dataset's files: what the plugin
    declares equals what the dataset built from files has."""
    from tests.helpers.labels import assert_declared_labels_match

    assert_declared_labels_match("cityscapes", root, options)
