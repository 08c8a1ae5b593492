"""The embedded ``synthetic`` dataset: determinism, content, label space and registration."""
from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from semsegpaddle.core.data.base import SegDataset
from semsegpaddle.core.plugin.manager import new_state
from semsegpaddle.plugins.datasets import synthetic
from semsegpaddle.plugins.datasets.synthetic import build_synthetic
from semsegpaddle.plugins.datasets.synthetic_impl import CLASS_NAMES

NUM_CLASSES = len(CLASS_NAMES)


def digest(sample: tuple[np.ndarray, np.ndarray]) -> str:
    image, label = sample
    return hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def train() -> SegDataset:
    return build_synthetic("train", num_train=32, num_val=16)


@pytest.fixture(scope="module")
def samples(train):
    return [train[i] for i in range(len(train))]


# -------------------------------------------------------------------------------------------------
# determinism
# -------------------------------------------------------------------------------------------------


def test_same_sample_every_time_and_in_any_order(train):
    first = digest(train[5])
    assert digest(train[5]) == first
    fresh = build_synthetic("train", num_train=32)
    assert [digest(fresh[i]) for i in (9, 5, 2)] == [digest(train[i]) for i in (9, 5, 2)]
    assert digest(fresh[-1]) == digest(train[31])


def test_same_sample_in_another_process(train):
    code = (
        "import hashlib; from semsegpaddle.plugins.datasets.synthetic import build_synthetic;"
        "im, lb = build_synthetic('train')[3];"
        "print(hashlib.sha256(im.tobytes() + lb.tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == digest(train[3])


def test_survives_pickling(train):
    assert digest(pickle.loads(pickle.dumps(train))[7]) == digest(train[7])


def test_seeds_and_splits_give_different_samples(train):
    other_seed = build_synthetic("train", seed=1)
    assert all(digest(other_seed[i]) != digest(train[i]) for i in range(4))
    val = build_synthetic("val", num_val=16)
    assert len(val) == 16
    train_digests = {digest(train[i]) for i in range(len(train))}
    assert len(train_digests) == len(train)
    assert not train_digests & {digest(val[i]) for i in range(len(val))}


# -------------------------------------------------------------------------------------------------
# format and label space
# -------------------------------------------------------------------------------------------------


def test_declared_label_space(train):
    assert isinstance(train, SegDataset)
    assert train.num_classes == NUM_CLASSES == len(train.class_names) >= 5
    assert train.class_names[0] == "background"
    assert train.ignore_index == 255
    assert train.palette.shape == (NUM_CLASSES, 3) and train.palette.dtype == np.uint8
    assert len({tuple(c) for c in train.palette}) == NUM_CLASSES


def test_lengths_indexing_and_describe():
    ds = build_synthetic("val", num_train=5, num_val=3)
    assert len(ds) == 3
    assert ds.describe(2) == "synthetic val sample 2 (seed 0)"
    assert build_synthetic("train", seed=4).describe(3) == "synthetic train sample 3 (seed 4)"
    assert digest(ds[np.int64(1)]) == digest(ds[1])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    assert sum(1 for _ in ds) == 3  # the sequence protocol stops at IndexError


def test_shapes_dtypes_and_values(samples):
    allowed = set(range(NUM_CLASSES)) | {255}
    for image, label in samples:
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert label.shape == (96, 96) and label.dtype == np.int64
        assert set(np.unique(label).tolist()) <= allowed
        assert image.std() > 10  # not a blank canvas


def test_image_size_option():
    image, label = build_synthetic("val", image_size=64)[0]
    assert image.shape == (64, 64, 3) and label.shape == (64, 64)


def test_every_class_appears_in_a_few_samples(samples):
    seen = set()
    for _, label in samples[:16]:
        seen |= set(np.unique(label).tolist())
    assert seen >= set(range(NUM_CLASSES))


def test_several_objects_per_image_and_not_mostly_background(train, samples):
    counts = [len(train.objects(i)) for i in range(16)]
    assert min(counts) >= 2 and max(counts) > 2
    foreground = np.mean([((label > 0) & (label != 255)).mean() for _, label in samples])
    assert 0.1 < foreground < 0.6


# -------------------------------------------------------------------------------------------------
# ignore band, occlusion, colour
# -------------------------------------------------------------------------------------------------


def test_ignore_pixels_are_a_thin_band_on_object_boundaries():
    banded = build_synthetic("train", num_train=16)
    plain = build_synthetic("train", num_train=16, ignore_width=0)
    fractions = []
    for i in range(16):
        image, label = banded[i]
        plain_image, plain_label = plain[i]
        assert np.array_equal(image, plain_image)  # the band changes labels only
        assert not (plain_label == 255).any()
        ignored = label == 255
        assert np.array_equal(label[~ignored], plain_label[~ignored])
        # every ignored pixel touches a pixel of another class in the band-free label
        padded = np.pad(plain_label, 1, mode="edge")
        differs = np.zeros_like(ignored)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                differs |= padded[dy : dy + 96, dx : dx + 96] != plain_label
        assert differs[ignored].all()
        fractions.append(ignored.mean())
    assert all(f > 0 for f in fractions)
    assert 0.005 < np.mean(fractions) < 0.08
    wide = build_synthetic("train", num_train=16, ignore_width=3)
    assert np.mean([(wide[i][1] == 255).mean() for i in range(16)]) > 2 * np.mean(fractions)


def test_objects_match_the_label(train):
    unbanded = build_synthetic("train", num_train=32, ignore_width=0)
    for i in range(8):
        _, label = unbanded[i]
        objects = train.objects(i)
        covered = np.zeros(label.shape, dtype=bool)
        for obj in objects:
            assert (label[obj.visible] == obj.class_id).all()
            assert not (obj.visible & ~obj.mask).any()
            covered |= obj.mask
        assert (label[~covered] == 0).all()
        assert (label[covered] > 0).all()


def test_objects_occlude_each_other(train):
    partly_hidden = []
    for i in range(16):
        objects = train.objects(i)
        for order, obj in enumerate(objects):
            if 0.05 < obj.occluded_fraction < 0.95:
                hidden = obj.mask & ~obj.visible
                later = np.zeros_like(hidden)
                for above in objects[order + 1 :]:
                    later |= above.mask
                assert (later[hidden]).all()  # only objects drawn later can hide it
                partly_hidden.append(obj)
    assert len(partly_hidden) >= 5


def object_colours(ds: SegDataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB colour and class of every object with at least 30 visible pixels."""
    features, classes = [], []
    for i in range(len(ds)):
        image, _ = ds[i]
        for obj in ds.objects(i):
            if obj.visible.sum() >= 30:
                features.append(image[obj.visible].astype(np.float64).mean(axis=0))
                classes.append(obj.class_id)
    return np.array(features), np.array(classes)


def nearest_centroid_accuracy(features: np.ndarray, classes: np.ndarray) -> float:
    """Fit class centroids of mean colour on the first half of the objects, score the second."""
    half = len(classes) // 2
    centroids = np.array([features[:half][classes[:half] == c].mean(axis=0) for c in range(1, NUM_CLASSES)])
    predicted = 1 + np.argmin(((features[half:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((predicted == classes[half:]).mean())


def test_without_hue_bias_colour_does_not_decide_the_class():
    features, classes = object_colours(build_synthetic("train", num_train=32, hue_jitter=180.0))
    assert len(classes) >= 60
    for c in range(1, NUM_CLASSES):
        per_class = features[classes == c]
        assert len(per_class) >= 5
        assert per_class.std(axis=0).mean() > 25  # a fixed colour per class would give ~5
    assert nearest_centroid_accuracy(features, classes) < 0.4  # chance is 0.2 with five classes


def test_hue_jitter_sets_how_much_colour_tells(train):
    def hue_spread(ds: SegDataset) -> float:
        """Mean circular spread (0 = one hue, 1 = uniform) of object hues within a class."""
        features, classes = object_colours(ds)
        hsv = cv2.cvtColor(features.astype(np.float32)[None] / 255.0, cv2.COLOR_RGB2HSV)[0]
        angles = np.radians(hsv[:, 0])
        return float(np.mean([
            1 - np.abs(np.exp(1j * angles[classes == c]).mean()) for c in range(1, NUM_CLASSES)
        ]))

    narrow = hue_spread(build_synthetic("train", num_train=32, hue_jitter=10.0))
    default = hue_spread(train)
    uniform = hue_spread(build_synthetic("train", num_train=32, hue_jitter=180.0))
    assert narrow < default < uniform
    assert narrow < 0.15 and uniform > 0.6
    # the background takes every hue, so colour alone does not tell objects from clutter
    hues = []
    for image, label in (train[i] for i in range(len(train))):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hues.append(hsv[..., 0][(label == 0) & (hsv[..., 1] > 60)])
    counts = np.bincount(np.concatenate(hues).astype(np.int64) * 6 // 256, minlength=6)
    assert (counts > 0.02 * counts.sum()).all()  # every 60-degree sector of hue is present


def test_noise_option():
    clean = build_synthetic("train", noise_std=0.0)[0][0].astype(np.int64)
    noisy = build_synthetic("train", noise_std=20.0)[0][0].astype(np.int64)
    assert np.abs(noisy - clean).mean() > 8


def test_class_draw_weights_make_a_class_rare_and_leave_the_default_as_it_was():
    # the default samples are those drawn before the option existed (digest of 8 samples at 64×64)
    default = build_synthetic("train", image_size=64, num_train=8)
    digest_of_all = hashlib.sha256(b"".join(default[i][0].tobytes() + default[i][1].tobytes() for i in range(8)))
    assert digest_of_all.hexdigest() == "713087c6d3a8eff6e58494da6bd0cfc8eebdf993ba710c4359a1fed3079610b2"
    rare = build_synthetic("train", image_size=64, num_train=64, class_draw_weights=[1, 1, 1, 0.03, 1])
    pixels = np.zeros(NUM_CLASSES)
    for index in range(64):
        label = rare[index][1]
        pixels += np.bincount(label[label != 255], minlength=NUM_CLASSES)
    share = pixels / pixels.sum()
    assert 0 < share[4] < 0.01  # rings
    assert all(share[c] > 0.04 for c in (1, 2, 3, 5))


# -------------------------------------------------------------------------------------------------
# errors and registration
# -------------------------------------------------------------------------------------------------


def test_bad_split_names_it_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'test'.*train.*val"):
        build_synthetic("test")


@pytest.mark.parametrize(
    "options, name",
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 96.0}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"num_train": 0}, "num_train"),
        ({"num_val": True}, "num_val"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 4, "max_objects": 3}, "max_objects"),
        ({"max_distractors": -1}, "max_distractors"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"noise_std": "6"}, "noise_std"),
        ({"ignore_width": -1}, "ignore_width"),
        ({"hue_jitter": -5.0}, "hue_jitter"),
        ({"hue_jitter": 200}, "hue_jitter"),
        ({"class_draw_weights": [1, 1, 1, 1]}, "class_draw_weights"),
        ({"class_draw_weights": [1, 1, 1, -1, 1]}, "class_draw_weights"),
        ({"class_draw_weights": [0, 0, 0, 0, 0]}, "class_draw_weights"),
    ],
)
def test_bad_options(options, name):
    with pytest.raises(ValueError, match=name):
        build_synthetic("train", **options)


def test_registers_through_the_plugin_hook():
    state = new_state(plugins=[(synthetic, "synthetic-test")], entry_points=False)
    assert not state.failures
    component = state.registries["dataset"].get("synthetic")
    assert component.plugin == "synthetic-test"
    assert component.description
    defaults = component.defaults()
    assert defaults["seed"] == 0 and defaults["image_size"] == 96
    assert defaults["num_train"] == 256 and defaults["num_val"] == 64
    for option in component.options:
        assert option.description and option.type_name != "any"
    ds = component.factory("val", **{**defaults, "num_val": 2})
    assert len(ds) == 2 and ds[1][0].shape == (96, 96, 3)
