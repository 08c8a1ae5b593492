"""The ``folder`` dataset: split folders paired by sample name, list files, label options, the CLI."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.config.loader import load_config
from semsegpaddle.core.config.schema import SCHEMA
from semsegpaddle.core.common.errors import ConfigError, DataError
from semsegpaddle.plugins.datasets.folder import build_folder
from tests.helpers.packages import train_then_eval


def scene(index: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with one bright square (class 1) whose place depends on ``index``; a 255 corner."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    label = np.zeros((size, size), np.uint8)
    top, left = rng.integers(0, size // 2, size=2)
    image[top:top + size // 2, left:left + size // 2] = 220
    label[top:top + size // 2, left:left + size // 2] = 1
    label[0, 0] = 255
    return image, label


def write_pair(root: Path, image_rel: str, mask_rel: str, index: int, size: int = 48) -> None:
    image, label = scene(index, size)
    for rel, array in ((image_rel, image), (mask_rel, label)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)


def make_tree(root: Path, train: int = 6, val: int = 2, size: int = 48) -> Path:
    """images/<split>/NNN.jpg + masks/<split>/NNN.png; the train split has one sub-folder."""
    for i in range(train):
        sub = "city_b/" if i % 2 else ""
        write_pair(root, f"images/train/{sub}{i:03d}.jpg", f"masks/train/{sub}{i:03d}.png", i, size)
    for i in range(val):
        write_pair(root, f"images/val/{i:03d}.png", f"masks/val/{i:03d}.png", 100 + i, size)
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "data")


def names(dataset) -> list[str]:
    return [p[0].relative_to(dataset.image_dir).with_suffix("").as_posix() for p in dataset.pairs]


# -- folder layout ---------------------------------------------------------------------------------


def test_pairs_by_name_across_extensions_and_sub_folders_sorted(tree):
    (tree / "images/train/.DS_Store").write_bytes(b"x")
    (tree / "images/train/notes.txt").write_text("not an image")
    dataset = build_folder("train", root=tree, num_classes=2)
    assert names(dataset) == ["train/000", "train/002", "train/004", "train/city_b/001", "train/city_b/003",
                              "train/city_b/005"]
    for image_path, mask_path in dataset.pairs:
        assert mask_path.relative_to(tree / "masks").with_suffix("") == \
            image_path.relative_to(tree / "images").with_suffix("")
    image, label = dataset[3]
    expected_image, expected_label = scene(1)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert (label == expected_label).all()  # the pair of city_b/001 is sample 1's mask
    assert np.abs(image.astype(int) - expected_image).mean() < 8  # JPEG: close, not equal
    assert len(build_folder("val", root=tree, num_classes=2)) == 2


def test_order_does_not_depend_on_creation_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for i in (3, 1, 2):
        write_pair(first, f"images/train/{i}.png", f"masks/train/{i}.png", i, 8)
    for i in (1, 2, 3):
        write_pair(second, f"images/train/{i}.png", f"masks/train/{i}.png", i, 8)
    assert names(build_folder("train", root=first, num_classes=2)) == \
        names(build_folder("train", root=second, num_classes=2)) == ["train/1", "train/2", "train/3"]


def test_mask_suffix_and_one_shared_folder(tmp_path):
    for i in range(3):
        write_pair(tmp_path, f"all/train/{i}.jpg", f"all/train/{i}_mask.png", i, 16)
    dataset = build_folder("train", root=tmp_path, num_classes=2, images="all", masks="all", mask_suffix="_mask")
    assert [(p[0].name, p[1].name) for p in dataset.pairs] == [("0.jpg", "0_mask.png"), ("1.jpg", "1_mask.png"),
                                                                ("2.jpg", "2_mask.png")]
    with pytest.raises(ValueError, match=r"images='all' and masks='all' name the same folder; set mask_suffix"):
        build_folder("train", root=tmp_path, num_classes=2, images="all", masks="all")


def test_unmatched_files_are_named_and_counted_in_one_line(tree):
    for name in ("x1", "x2", "x3", "x4", "x5"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tree / f"images/train/{name}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tree / "masks/train/orphan.png")
    with pytest.raises(DataError) as info:
        build_folder("train", root=tree, num_classes=2)
    message = str(info.value)
    assert "\n" not in message
    assert "split 'train': 5 of 11 images have no mask in" in message
    assert "(x1, x2, x3, ... (2 more))" in message
    assert "1 mask has no image (orphan)" in message


def test_two_files_with_one_sample_name_are_refused(tree):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tree / "images/train/000.png")
    with pytest.raises(DataError, match=r"1 pair of images in .* share a name \(000\.jpg and 000\.png\)"):
        build_folder("train", root=tree, num_classes=2)


def test_missing_split_names_the_folder_and_the_list_option(tree):
    with pytest.raises(DataError, match=r"no split 'test': .*images/test does not exist and test_list is not set"):
        build_folder("test", root=tree, num_classes=2)


def test_missing_mask_folder_and_root_are_named(tree, tmp_path):
    import shutil

    shutil.rmtree(tree / "masks/val")
    with pytest.raises(FileNotFoundError, match="mask folder of split 'val' folder not found") as info:
        build_folder("val", root=tree, num_classes=2)
    assert info.value.filename == str(tree / "masks/val")
    with pytest.raises(FileNotFoundError, match="dataset root folder not found"):
        build_folder("val", root=tmp_path / "nowhere", num_classes=2)


def test_jpeg_masks_are_read_with_a_warning(tmp_path):
    write_pair(tmp_path, "images/train/a.png", "masks/train/a.jpg", 0, 16)
    with pytest.warns(UserWarning, match=r"1 masks of split 'train' are JPEG files"):
        dataset = build_folder("train", root=tmp_path, num_classes=2)
    assert len(dataset) == 1


# -- list files ------------------------------------------------------------------------------------


def test_pair_list_relative_to_the_list_file(tmp_path):
    root = tmp_path / "root"
    for i in range(3):
        write_pair(root, f"pics/{i}.jpg", f"labels/{i}.png", i, 16)
    (root / "splits").mkdir()
    (root / "splits/train.txt").write_text("# image mask\n../pics/2.jpg ../labels/2.png\n\n../pics/0.jpg ../labels/0.png\n")
    dataset = build_folder("train", root=root, num_classes=2, train_list="splits/train.txt")
    assert [(p[0].name, p[1].name) for p in dataset.pairs] == [("2.jpg", "2.png"), ("0.jpg", "0.png")]
    assert (dataset[0][1] == scene(2, 16)[1]).all()


def test_pair_list_relative_to_root_when_the_first_pair_is_there(tmp_path):
    for i in range(2):
        write_pair(tmp_path, f"pics/{i}.jpg", f"labels/{i}.png", i, 16)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists/val.txt").write_text("pics/1.jpg labels/1.png\npics/0.jpg labels/0.png\n")
    dataset = build_folder("val", root=tmp_path, num_classes=2, val_list="lists/val.txt")
    assert [p[0] for p in dataset.pairs] == [tmp_path / "pics/1.jpg", tmp_path / "pics/0.jpg"]


def test_list_file_takes_precedence_over_split_folders(tree):
    (tree / "train.txt").write_text("images/val/000.png masks/val/000.png\n")
    dataset = build_folder("train", root=tree, num_classes=2, train_list="train.txt")
    assert [p[0] for p in dataset.pairs] == [tree / "images/val/000.png"]


def test_missing_listed_files_are_named(tree):
    (tree / "val.txt").write_text("images/val/000.png masks/val/000.png\nimages/val/gone.png masks/val/gone.png\n")
    with pytest.raises(DataError, match=r"val\.txt: 2 listed files of split 'val' not found \(.*gone\.png, .*gone\.png\)"):
        build_folder("val", root=tree, num_classes=2, val_list="val.txt")


def test_name_list_selects_samples_from_the_folders(tree):
    (tree / "sel.txt").write_text("city_b/003\n002.jpg\n")
    dataset = build_folder("train", root=tree, num_classes=2, train_list="sel.txt")
    assert names(dataset) == ["train/city_b/003", "train/002"]
    (tree / "bad.txt").write_text("002\nnope\n")
    with pytest.raises(DataError, match=r"bad\.txt: 1 listed name found no image in .*images/train \(nope\)"):
        build_folder("train", root=tree, num_classes=2, train_list="bad.txt")


def test_list_lines_of_mixed_width_are_refused(tree):
    (tree / "mixed.txt").write_text("a.png b.png\nc.png\n")
    with pytest.raises(DataError, match=r"mixed\.txt:2: expected 'image mask' or a sample name"):
        build_folder("train", root=tree, num_classes=2, train_list="mixed.txt")


# -- label space and label options -------------------------------------------------------------------


def test_label_space_defaults_and_options(tree):
    plain = build_folder("val", root=tree, num_classes=2)
    assert plain.num_classes == 2 and plain.ignore_index == 255 and plain.class_names == ()
    assert plain.palette.tolist() == [[0, 0, 0], [128, 0, 0]]
    named = build_folder("val", root=tree, num_classes=2, class_names=["bg", "square"],
                         palette=[[1, 2, 3], [4, 5, 6]])
    assert named.class_names == ("bg", "square") and named.palette.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_label_map_and_reduce_zero_label(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.array([[0, 255, 255, 0]] * 4, np.uint8)
    for sub, array in (("images/train/a.png", image), ("masks/train/a.png", mask)):
        (tmp_path / sub).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / sub)
    assert build_folder("train", root=tmp_path, num_classes=2, label_map={255: 1})[0][1][0].tolist() == [0, 1, 1, 0]
    Image.fromarray(np.array([[0, 1, 2, 255]] * 4, np.uint8)).save(tmp_path / "masks/train/a.png")
    label = build_folder("train", root=tmp_path, num_classes=2, reduce_zero_label=True)[0][1]
    assert label[0].tolist() == [255, 0, 1, 255]


def test_colour_masks_with_palette_and_ignore_colours(tmp_path):
    palette = [[0, 0, 0], [250, 50, 50], [50, 50, 250]]
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:, 2:4] = palette[1]
    rgb[:, 4:] = palette[2]
    rgb[0, 0] = (255, 255, 255)
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "masks/train").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "images/train/a.png")
    Image.fromarray(rgb).save(tmp_path / "masks/train/a.png")
    dataset = build_folder("train", root=tmp_path, num_classes=3, palette=palette, color_masks=True,
                           ignore_colors=[[255, 255, 255]])
    label = dataset[0][1]
    assert label[1].tolist() == [0, 0, 1, 1, 2, 2] and label[0, 0] == 255
    without_ignore = build_folder("train", root=tmp_path, num_classes=3, palette=palette, color_masks=True)
    with pytest.raises(DataError, match=r"colours \(255, 255, 255\) are not in the dataset's palette"):
        without_ignore[0]
    as_ids = build_folder("train", root=tmp_path, num_classes=3, palette=palette)
    with pytest.raises(DataError, match=r"label file holds colours"):
        as_ids[0]


@pytest.mark.parametrize("options, pattern", [
    ({"num_classes": 0}, r"^num_classes=0 is not valid"),
    ({"ignore_index": 1}, r"^ignore_index=1 is a class id \(num_classes=2\)"),
    ({"class_names": ["a"]}, r"^class_names=\['a'\]: 1 names for num_classes=2"),
    ({"palette": [[0, 0, 0]]}, r"^palette=\[1 colours\] is not valid"),
    ({"palette": [[0, 0, 0], [0, 0, 999]]}, r"^palette=.* is not valid; expected RGB triples"),
    ({"ignore_colors": [[1, 1, 1]]}, r"^ignore_colors=.* only applies to colour masks"),
    ({"label_map": {255: "one"}}, r"^label_map=\{255: 'one'\} is not valid"),
    ({"mask_suffix": "x/y"}, r"^mask_suffix='x/y' is not valid"),
])
def test_bad_option_values_name_the_option(tree, options, pattern):
    kwargs = {"root": tree, "num_classes": 2, **options}
    with pytest.raises(ValueError, match=pattern):
        build_folder("val", **kwargs)


def test_config_error_names_the_key(tree, tmp_path):
    config_file = tmp_path / "my.yaml"
    config_file.write_text(f"dataset:\n  name: folder\n  root: {tree}\n  num_classes: 2\n  ignore_index: 1\n")
    config = load_config(config_file)
    with pytest.raises(ConfigError, match=r"my\.yaml: dataset\.ignore_index \(dataset 'folder'\): ignore_index=1"):
        build_component(config, "dataset", "dataset", "train", extra=SCHEMA["dataset"].extra)


def test_root_resolves_against_the_config_file(tree):
    (tree / "cfg.yaml").write_text("dataset:\n  name: folder\n  root: .\n  num_classes: 2\n")
    config = load_config(tree / "cfg.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = build_component(config, "dataset", "dataset", "val", extra=SCHEMA["dataset"].extra)
    assert dataset.root == tree and len(dataset) == 2


def test_registration_module_imports_no_numpy(tree):
    """Registering imports nothing heavy; reading samples needs no paddle (OpenCV decodes the pixels)."""
    code = ("import sys\nfrom semsegpaddle.plugins.datasets import folder\n"
            "print(sorted(m for m in ('numpy', 'paddle', 'cv2', 'PIL') if m in sys.modules))\n"
            f"d = folder.build_folder('val', root={str(tree)!r}, num_classes=2); d[0]\n"
            "print(sorted(m for m in ('paddle',) if m in sys.modules), len(d))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "[] 2"]


# -- through the CLI -----------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semsegpaddle.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_train_and_eval_on_a_custom_folder_through_the_cli(tmp_path):
    root = make_tree(tmp_path / "mine", train=8, val=2)
    metrics = train_then_eval(tmp_path, ["dataset.name=folder", f"dataset.root={root}", "dataset.num_classes=2",
                                         "dataset.class_names=[background,square]"], crop=48, iters=3, eval_batch=2)
    assert list(metrics["per_class"]) == ["background", "square"]
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_cli_missing_required_option_is_one_line(tree, tmp_path):
    result = run_cli("train", "dataset.name=folder", f"dataset.root={tree}", "train.iters=1",
                     "runtime.progress=false", f"runtime.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "dataset.num_classes is required by dataset 'folder'" in lines[0]
    assert not (tmp_path / "run" / "model_last.safetensors").exists()


def test_cli_unmatched_files_stop_training_in_one_line(tree, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tree / "images/train/lonely.png")
    result = run_cli("train", "dataset.name=folder", f"dataset.root={tree}", "dataset.num_classes=2",
                     "train.iters=1", "runtime.progress=false", f"runtime.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "1 of 7 images has no mask" in lines[0] and "(lonely)" in lines[0]
