"""Label options shared by every dataset: label_map, reduce_zero_label, colour masks (core.data.labels,
plugins.datasets.common)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.data.file_dataset import FileDataset
from semsegpaddle.core.data.labels import LabelMapping
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.plugins.datasets.common import LABEL_OPTIONS, check_split, label_mapping


def test_identity_keeps_values():
    raw = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)
    mapping = LabelMapping(255)
    assert mapping.is_identity
    out = mapping(raw)
    assert out.dtype == raw.dtype and (out == raw).all()


@pytest.mark.parametrize("label_map, raw_dtype, want", [
    ({255: 1}, np.uint8, np.uint8),        # 8-bit file, 8-bit ids: never widened
    ({7: 300}, np.uint8, np.uint16),       # an id beyond 255 needs 16 bits
    ({1000: 2}, np.uint16, np.uint16),     # a 16-bit file
])
def test_mapped_labels_take_the_smallest_type_holding_the_ids(label_map, raw_dtype, want):
    raw = np.array([[0, 7], [255, 1]], dtype=raw_dtype)
    if raw_dtype == np.uint16:
        raw[0, 0] = 1000
    out = LabelMapping(255, label_map=label_map)(raw)
    assert out.dtype == want
    expected = np.vectorize(lambda v: label_map.get(int(v), int(v)))(raw)
    assert out.tolist() == expected.tolist()


def test_a_negative_ignore_index_gives_signed_ids():
    out = LabelMapping(-1, reduce_zero_label=True)(np.array([[0, 1, 2]], dtype=np.uint8))
    assert out.dtype == np.int64 and out.tolist() == [[-1, 0, 1]]


def test_label_map_maps_only_listed_values():
    raw = np.array([[0, 255, 7], [255, 0, 3]], dtype=np.uint8)
    out = LabelMapping(255, label_map={255: 1, 7: 2})(raw)
    assert out.tolist() == [[0, 1, 2], [1, 0, 3]]


def test_reduce_zero_label_shifts_and_keeps_ignore():
    raw = np.array([[0, 1, 2], [150, 255, 0]], dtype=np.uint8)
    out = LabelMapping(255, reduce_zero_label=True)(raw)
    assert out.tolist() == [[255, 0, 1], [149, 255, 255]]


def test_label_map_applies_before_reduce_zero_label():
    raw = np.array([[0, 9, 3]], dtype=np.uint16)
    out = LabelMapping(255, label_map={9: 0, 3: 2}, reduce_zero_label=True)(raw)
    assert out.tolist() == [[255, 255, 1]]


def test_sixteen_bit_values_and_out_of_range_values():
    raw = np.array([[1000, 2]], dtype=np.uint16)
    assert LabelMapping(255, label_map={1000: 1})(raw).tolist() == [[1, 2]]
    with pytest.raises(DataError, match=r"m\.png: label values must lie in 0\.\.65535, found -1\.\.2"):
        LabelMapping(255, label_map={1: 0})(np.array([[-1, 2]]), where="m.png")


def test_colour_masks_become_class_ids_and_ignore_colours_become_ignore():
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    rgb = np.array([[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [224, 224, 192]]], dtype=np.uint8)
    mapping = LabelMapping(255, colors=palette, ignore_colors=[(224, 224, 192)])
    assert not mapping.is_identity
    assert mapping(rgb).tolist() == [[0, 1], [2, 255]]


def test_unknown_colour_is_named():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[1, 1] = (10, 20, 30)
    with pytest.raises(DataError, match=r"^m\.png: colours \(10, 20, 30\) are not in the dataset's palette$"):
        LabelMapping(255, colors=[(0, 0, 0), (128, 0, 0)])(rgb, where="m.png")


def test_colour_mask_without_palette_is_refused():
    with pytest.raises(DataError, match="no palette"):
        LabelMapping(255)(np.zeros((2, 2, 3), dtype=np.uint8), where="m.png")


def test_file_dataset_reads_colour_masks_through_its_mapping(tmp_path):
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[:, 3:] = palette[2]
    rgb[0, 0] = palette[1]
    Image.fromarray(rgb).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "i.png")
    dataset = FileDataset([(tmp_path / "i.png", tmp_path / "m.png")], num_classes=3, palette=palette,
                          mapping=label_mapping(255, colors=palette))
    _, label = dataset[0]
    expected = np.zeros((4, 6), np.int64)
    expected[:, 3:] = 2
    expected[0, 0] = 1
    assert (label == expected).all()


# -- plugins.datasets.common ------------------------------------------------------------------------


def test_label_options_describe_both_options():
    assert set(LABEL_OPTIONS) == {"label_map", "reduce_zero_label"}
    assert all(isinstance(text, str) and text and "\n" not in text for text in LABEL_OPTIONS.values())


def test_label_mapping_builds_the_mapping_and_accepts_integer_strings():
    mapping = label_mapping(255, {"255": 1}, reduce_zero_label=False)
    assert mapping.label_map == {255: 1}
    assert mapping(np.array([[0, 255]], np.uint8)).tolist() == [[0, 1]]
    zero = label_mapping(255, None, reduce_zero_label=True)
    assert zero(np.array([[0, 1, 255]], np.uint8)).tolist() == [[255, 0, 255]]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"label_map": {255: -1}}, r"^label_map=\{255: -1\} is not valid"),
    ({"label_map": {"x": 1}}, r"^label_map=\{'x': 1\} is not valid"),
    ({"label_map": {70000: 1}}, r"^label_map=\{70000: 1\} is not valid"),
    ({"label_map": [255, 1]}, r"^label_map=\[255, 1\] is not valid; expected a mapping"),
    ({"reduce_zero_label": "yes"}, r"^reduce_zero_label='yes' is not valid"),
    ({"colors": [(0, 0)]}, r"^palette=\[\[0, 0\]\] is not valid; expected RGB triples"),
    ({"ignore_colors": [(0, 0, 300)]}, r"^ignore_colors=.* is not valid"),
])
def test_label_mapping_rejects_bad_values_naming_the_option(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        label_mapping(255, **kwargs)


def test_label_mapping_accepts_numpy_palettes():
    palette = np.array([[0, 0, 0], [128, 0, 0]], dtype=np.uint8)
    mapping = label_mapping(255, colors=palette)
    assert mapping(np.array([[[128, 0, 0]]], np.uint8)).tolist() == [[1]]


def test_check_split_names_the_valid_splits():
    check_split("voc", "val", ("train", "val"))
    with pytest.raises(ValueError, match=r"^voc dataset has no split 'tset'; expected one of: train, val$"):
        check_split("voc", "tset", ("train", "val"))


def test_common_module_imports_no_numpy():
    code = ("import sys\nfrom semsegpaddle.plugins.datasets import common\n"
            "print(sorted(m for m in ('numpy', 'paddle', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
