"""Class balance from the training split's pixel counts: the weights of every method on counts made
by hand, the counts' cache, rare-class sampling's probabilities, and its batch order across loader
workers, ranks and resumes."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.common.errors import ConfigError, DataError
from semsegpaddle.core.config.loader import config_from_dict, load_config
from semsegpaddle.core.data import class_stats
from semsegpaddle.core.data.base import SegDataset, default_palette
from semsegpaddle.core.data.class_balance import RareClassSampler, class_weights, rare_class_probabilities
from semsegpaddle.core.data.datasets import StepBatches, train_loader
from semsegpaddle.core.data.file_dataset import FileDataset

IGNORE = 255


def hand_labels() -> list[np.ndarray]:
    """Four 4×5 labels over 4 classes (class 3 never appears); pixel counts per image:

    image 0: 16 × class 0, 4 × class 1
    image 1: 18 × class 0, 2 ignored
    image 2: 10 × class 0, 8 × class 2, 2 ignored
    image 3: 12 × class 0, 6 × class 1, 2 × class 2
    """
    def label(*runs: tuple[int, int]) -> np.ndarray:
        flat = np.concatenate([np.full(n, value) for value, n in runs])
        assert flat.size == 20
        return flat.reshape(4, 5).astype(np.int64)

    return [label((0, 16), (1, 4)), label((0, 18), (IGNORE, 2)), label((0, 10), (2, 8), (IGNORE, 2)),
            label((1, 6), (0, 12), (2, 2))]


class HandMade(SegDataset):
    """The labels of :func:`hand_labels` (images all grey); counts how often a sample is read."""

    num_classes = 4
    ignore_index = IGNORE
    class_names = ("a", "b", "c", "never")

    def __init__(self, labels: list[np.ndarray] | None = None) -> None:
        self.labels = hand_labels() if labels is None else labels
        self.palette = default_palette(4)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        self.reads += 1
        label = self.labels[index]
        return np.full((*label.shape, 3), 128, np.uint8), label


# pixels per class: 56, 10, 10, 0 of 76 labelled pixels
PIXELS = np.array([56, 10, 10, 0])
SHARE = PIXELS / 76


def normalised(raw: list[float], maximum: float = 10.0) -> np.ndarray:
    """raw / Σ_c share_c · raw_c over the present classes, clipped; the absent class gets the maximum."""
    mean = sum(s * r for s, r in zip(SHARE[:3], raw))
    return np.array([min(r / mean, maximum) for r in raw] + [maximum])


def test_counts_are_per_image_labelled_pixels_after_ignore():
    counts = class_stats.count_classes(HandMade())
    assert counts.tolist() == [[16, 4, 0, 0], [18, 0, 0, 0], [10, 0, 8, 0], [12, 6, 2, 0]]


@pytest.mark.parametrize("method, expected", [
    # 1/f: Σ f·(1/f) = 3 present classes, so w = 1 / (3 f) = 76 / (3 · pixels)
    ("inverse_frequency", [76 / 168, 76 / 30, 76 / 30, 10.0]),
    ("inverse_sqrt", normalised([1 / math.sqrt(56 / 76), 1 / math.sqrt(10 / 76), 1 / math.sqrt(10 / 76)])),
    # g_c = class pixels / labelled pixels of the images holding it: 56/76 (all 4 images: 20+18+18+20),
    # 10/40 (images 0 and 3), 10/38 (images 2 and 3); median 10/38; r_c = median / g_c
    ("median_frequency", normalised([(10 / 38) / (56 / 76), (10 / 38) / (10 / 40), 1.0])),
    ("enet", normalised([1 / math.log(1.02 + 56 / 76), 1 / math.log(1.02 + 10 / 76), 1 / math.log(1.02 + 10 / 76)])),
])
def test_auto_weights_of_every_method_on_hand_counted_pixels(method, expected):
    counts = class_stats.count_classes(HandMade())
    weights = class_weights(counts, method)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    present = weights[:3]
    assert float(np.sum(SHARE[:3] * present)) == pytest.approx(1.0)  # pixel-weighted mean 1 (nothing clipped)


def test_weights_are_clipped_after_normalising_and_enet_c_is_used():
    counts = class_stats.count_classes(HandMade())
    np.testing.assert_allclose(class_weights(counts, "inverse_frequency", max_weight=2.0), [76 / 168, 2, 2, 2])
    np.testing.assert_allclose(class_weights(counts, "enet", enet_c=1.5),
                               normalised([1 / math.log(1.5 + s) for s in SHARE[:3]]), rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    ({"method": "balanced"}, "class_weights_method must be one of"),
    ({"max_weight": 0.5}, "class_weights_max must be a number >= 1"),
    ({"enet_c": 1.0}, "class_weights_enet_c must be a number > 1"),
])
def test_bad_weight_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        class_weights(np.ones((2, 3), np.int64), **options)
    assert "\n" not in str(info.value)


def test_no_labelled_pixel_is_a_clear_error():
    with pytest.raises(DataError, match="no labelled pixel"):
        class_weights(np.zeros((3, 4), np.int64))


# -------------------------------------------------------------------------------------------------
# the cache
# -------------------------------------------------------------------------------------------------


def test_the_second_pass_reads_the_cache_and_no_sample(tmp_path):
    options = {"name": "hand", "val_split": "val"}
    first = HandMade()
    stats, cached = class_stats.class_stats(first, options, tmp_path)
    assert not cached and first.reads == 4
    class_stats.save(stats, tmp_path)
    second = HandMade()
    again, cached = class_stats.class_stats(second, {**options, "val_split": "test"}, tmp_path)  # val split: same data
    assert cached and second.reads == 0
    assert np.array_equal(again.counts, stats.counts) and again.identity == stats.identity
    other = HandMade()
    _, cached = class_stats.class_stats(other, {**options, "label_map": {1: 2}}, tmp_path)  # other options: recount
    assert not cached and other.reads == 4


def write_pairs(root: Path, count: int = 3) -> list[tuple[Path, Path]]:
    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        image, label = root / f"{index}.png", root / f"{index}_mask.png"
        Image.fromarray(np.full((6, 8, 3), 100, np.uint8)).save(image)
        Image.fromarray(np.full((6, 8), index % 3, np.uint8)).save(label)
        pairs.append((image, label))
    return pairs


def test_a_changed_file_is_counted_again(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    dataset = FileDataset(pairs, num_classes=3)
    stats, _ = class_stats.class_stats(dataset, {"name": "folder"}, tmp_path / "cache")
    class_stats.save(stats, tmp_path / "cache")
    assert class_stats.class_stats(dataset, {"name": "folder"}, tmp_path / "cache")[1]
    Image.fromarray(np.full((6, 8), 2, np.uint8)).save(pairs[0][1])
    os.utime(pairs[0][1], ns=(1, 1))  # a new modification time whatever the clock's resolution
    fresh, cached = class_stats.class_stats(dataset, {"name": "folder"}, tmp_path / "cache")
    assert not cached and fresh.identity != stats.identity
    assert fresh.counts[0].tolist() == [0, 0, 48] and stats.counts[0].tolist() == [48, 0, 0]


def test_counting_with_workers_and_the_decoded_cache_gives_the_same_counts(tmp_path):
    pairs = write_pairs(tmp_path / "data", count=20)
    dataset = FileDataset(pairs, num_classes=3)
    plain = class_stats.count_classes(dataset)
    with_workers = class_stats.count_classes(dataset, num_workers=2, decoded_cache=(str(tmp_path / "decoded"), {}))
    assert np.array_equal(plain, with_workers)
    assert len(list((tmp_path / "decoded").glob("*.label.npy"))) == 20  # the pass filled the decoded cache


# -------------------------------------------------------------------------------------------------
# rare-class sampling
# -------------------------------------------------------------------------------------------------

#: 12 images × 4 classes: background everywhere, a class in 6 images, one in 3, a rare one in 2; the
#: last image is entirely ignored (counts 0) and must never be drawn
SAMPLER_COUNTS = np.array([
    [900, 100, 0, 0], [800, 200, 0, 0], [950, 50, 0, 0], [700, 300, 0, 0], [990, 10, 0, 0], [600, 300, 100, 0],
    [900, 0, 100, 0], [850, 0, 150, 0], [980, 0, 0, 20], [970, 0, 0, 30], [1000, 0, 0, 0], [0, 0, 0, 0]])


def expected_image_probabilities(counts: np.ndarray, temperature: float) -> np.ndarray:
    """The documented P(i) = Σ_{c in i} P(c) / |I_c|, P(c) ∝ exp((1 − f_c) / T), written out here."""
    pixels = counts.sum(axis=0)
    share = pixels / pixels.sum()
    weights = [math.exp((1 - f) / temperature) for f in share]
    p_class = [w / sum(weights) for w in weights]
    out = np.zeros(len(counts))
    for c in range(counts.shape[1]):
        holders = [i for i in range(len(counts)) if counts[i, c] > 0]
        for i in holders:
            out[i] += p_class[c] / len(holders)
    return out


def chi_square(observed: np.ndarray, expected_p: np.ndarray) -> float:
    keep = expected_p > 0
    expected = expected_p[keep] * observed.sum()
    return float(np.sum((observed[keep] - expected) ** 2 / expected))


def test_rare_class_sampling_draws_images_with_the_documented_probabilities():
    temperature, draws = 0.1, 30_000
    sampler = RareClassSampler(SAMPLER_COUNTS, temperature, seed=7)
    expected = expected_image_probabilities(SAMPLER_COUNTS, temperature)
    np.testing.assert_allclose(sampler.image_probabilities(), expected, rtol=1e-12)
    drawn = np.bincount([sampler.draw(p) for p in range(draws)], minlength=len(SAMPLER_COUNTS))
    assert drawn[11] == 0  # an image without labelled pixels
    critical = 29.59  # chi-square quantile 0.999 at 10 degrees of freedom (11 images that can be drawn)
    assert chi_square(drawn, expected) < critical
    # the test can tell: uniformly drawn images would fail it by far
    assert chi_square(np.full(11, draws / 11), expected[:11]) > 20 * critical
    # and the rare class (1 % of the pixels, 2 images) is drawn far more often than its pixel share
    assert drawn[8:10].sum() / draws > 0.2


def test_class_probabilities_follow_the_softmax_and_skip_absent_classes():
    counts = np.array([[90, 10, 0]])
    p = rare_class_probabilities(counts, 0.05)
    z = math.exp(0.1 / 0.05) + math.exp(0.9 / 0.05)
    np.testing.assert_allclose(p, [math.exp(0.1 / 0.05) / z, math.exp(0.9 / 0.05) / z, 0.0], rtol=1e-12)
    assert rare_class_probabilities(counts, 1e-4)[1] == pytest.approx(1.0)  # no overflow at tiny temperatures
    with pytest.raises(ConfigError, match="sampler_temperature must be a number > 0"):
        rare_class_probabilities(counts, 0.0)


def test_draws_are_a_pure_function_of_seed_and_position():
    a = RareClassSampler(SAMPLER_COUNTS, 0.1, seed=3)
    b = RareClassSampler(SAMPLER_COUNTS, 0.1, seed=3)
    assert [a.draw(p) for p in range(200)] == [b.draw(p) for p in reversed(range(200))][::-1]
    c = RareClassSampler(SAMPLER_COUNTS, 0.1, seed=4)
    assert [a.draw(p) for p in range(200)] != [c.draw(p) for p in range(200)]
    whole = list(StepBatches(12, 4, seed=3, start=0, total=8, sampler=a))
    tail = list(StepBatches(12, 4, seed=3, start=5, total=8, sampler=a))
    assert whole[5:] == tail  # a resume at step 5 replays the same draws


def test_ranks_hold_disjoint_shares_of_every_steps_draws():
    sampler = RareClassSampler(SAMPLER_COUNTS, 0.1, seed=1)
    single = list(StepBatches(12, 4, seed=1, start=0, total=5, sampler=sampler))
    ranks = [list(StepBatches(12, 2, seed=1, start=0, total=5, rank=r, world_size=2, sampler=sampler)) for r in (0, 1)]
    for step in range(5):
        first, second = ranks[0][step], ranks[1][step]
        assert not {d for _, d in first} & {d for _, d in second}
        assert first + second == single[step]


class Squares(SegDataset):
    """Images of one square of class 1 + index % 3 on background; class 3 only in every third image."""

    num_classes = 4
    ignore_index = IGNORE

    def __init__(self, count: int = 12) -> None:
        self.count = count
        self.palette = default_palette(4)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        rng = np.random.default_rng(index)
        image = rng.integers(0, 256, (24, 24, 3)).astype(np.uint8)
        label = np.zeros((24, 24), np.int64)
        side = 12 if index % 3 < 2 else 3
        label[4:4 + side, 6:6 + side] = 1 + index % 3
        return image, label


def loader_config(**train) -> dict:
    return config_from_dict({"train": {"crop_size": [16, 16], "scale_range": [0.75, 1.25], "batch_size": 4,
                                       "iters": 6, "sampler": "rare_class", "sampler_temperature": 0.05, **train},
                             "runtime": {"seed": 11}})


def batches(config, rank: int = 0, world_size: int = 1, start: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    dataset = Squares()
    counts = class_stats.count_classes(dataset)
    return [(images.numpy(), labels.numpy())
            for images, labels in train_loader(dataset, config, start, rank, world_size, class_counts=counts)]


def test_rare_class_batches_are_the_same_with_0_and_2_workers_ranks_and_resumes():
    reference = batches(loader_config(num_workers=0))
    assert len(reference) == 6
    for got in (batches(loader_config(num_workers=2)), batches(loader_config(num_workers=0), start=2)):
        for (gi, gl), (wi, wl) in zip(got, reference[-len(got):]):
            assert np.array_equal(gi, wi) and np.array_equal(gl, wl)
    halves = [batches(loader_config(num_workers=2, batch_size=2), rank=r, world_size=2) for r in (0, 1)]
    for step, (images, labels) in enumerate(reference):
        assert np.array_equal(np.concatenate([halves[0][step][0], halves[1][step][0]]), images)
        assert np.array_equal(np.concatenate([halves[0][step][1], halves[1][step][1]]), labels)
    uniform = batches(loader_config(sampler="uniform"))
    assert not all(np.array_equal(u[1], r[1]) for u, r in zip(uniform, reference))  # the sampler is in effect


def test_the_rare_class_sampler_needs_the_counts():
    with pytest.raises(DataError, match="needs the training split's per-image class counts"):
        next(iter(train_loader(Squares(), loader_config(), 0)))


def test_sampler_options_are_validated_with_the_config():
    with pytest.raises(ConfigError, match="train.sampler"):
        load_config(None, ["train.sampler=rare"])
    with pytest.raises(ConfigError, match="train.sampler_temperature"):
        load_config(None, ["train.sampler_temperature=0"])
    assert load_config(None, [])["train"]["sampler"] == "uniform"
