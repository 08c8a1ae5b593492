"""train.cache_dir: decoded samples are stored once and read back memory-mapped; batches stay
identical, edited files and changed options are never served stale, bad folders are one-line errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data.datasets import train_loader
from semsegpaddle.core.data.file_dataset import FileDataset
from semsegpaddle.core.data.labels import LabelMapping
from semsegpaddle.core.common.errors import DataError

from tests.helpers.cli import semseg

COUNT, HEIGHT, WIDTH = 6, 40, 56


def write_pairs(root: Path, count: int = COUNT, seed: int = 0) -> list[tuple[Path, Path]]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        image, label = root / f"{index}.png", root / f"{index}_mask.png"
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)).save(image)
        mask = rng.integers(0, 3, (HEIGHT, WIDTH)).astype(np.uint8)
        mask[:3] = 255
        Image.fromarray(mask).save(label)
        pairs.append((image, label))
    return pairs


def config(cache_dir: Path | None, workers: int = 0, iters: int = 2 * COUNT // 2, label_map=None,
           root: Path = Path(".")) -> dict:
    """Two epochs of batches of 2 (by default); the dataset section only feeds the cache's entry names."""
    return config_from_dict({"train": {
        "crop_size": [24, 32], "scale_range": [0.5, 2.0], "flip": True, "photometric": True, "batch_size": 2,
        "num_workers": workers, "iters": iters, "cache_dir": cache_dir},
        "dataset": {"name": "folder", "root": root, "num_classes": 3, "label_map": label_map or {}}, "runtime": {"seed": 3}})


def batches(pairs, cfg, mapping: LabelMapping | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    dataset = FileDataset(pairs, num_classes=3, ignore_index=255, mapping=mapping)
    return [(images.numpy(), labels.numpy()) for images, labels in train_loader(dataset, cfg, start=0)]


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def assert_same(got, want):
    assert len(got) == len(want)
    for (gi, gl), (wi, wl) in zip(got, want):
        assert np.array_equal(gi, wi) and np.array_equal(gl, wl)


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_batches_equal_decoded_ones_and_later_epochs_decode_nothing(tmp_path, monkeypatch, workers):
    pairs = write_pairs(tmp_path / "data")
    cache = tmp_path / "cache"
    plain = batches(pairs, config(None, workers))
    first = batches(pairs, config(cache, workers))  # two epochs: the first fills the cache
    assert_same(first, plain)
    assert len(entries(cache)) == 2 * COUNT  # an image and a label file per sample

    def no_decoding(self, index):
        raise AssertionError("decoded a cached sample")

    monkeypatch.setattr(FileDataset, "__getitem__", no_decoding)  # forked workers inherit it
    assert_same(batches(pairs, config(cache, workers)), plain)


def test_an_edited_file_is_decoded_again_never_served_stale(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    cache = tmp_path / "cache"
    batches(pairs, config(cache))
    fresh = write_pairs(tmp_path / "other", seed=9)
    for (image, label), (new_image, new_label) in zip(pairs, fresh):
        os.replace(new_image, image)
        os.replace(new_label, label)
        os.utime(image, ns=(1, 1))  # whatever the clock: the size or time differs from the cached one
    assert_same(batches(pairs, config(cache)), batches(pairs, config(None)))
    assert len(entries(cache)) == 4 * COUNT


def test_other_dataset_options_make_other_entries(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    cache = tmp_path / "cache"
    batches(pairs, config(cache))
    mapping = LabelMapping(255, label_map={2: 1})
    remapped = batches(pairs, config(cache, label_map={2: 1}), mapping)
    assert len(entries(cache)) == 4 * COUNT
    assert_same(remapped, batches(pairs, config(None, label_map={2: 1}), mapping))
    assert not any((labels == 2).any() for _, labels in remapped)


def test_damaged_entries_and_leftover_temporaries_are_rewritten(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    cache = tmp_path / "cache"
    plain = batches(pairs, config(cache))
    images = sorted(cache.glob("*.image.npy"))
    images[0].write_bytes(images[0].read_bytes()[:100])  # cut short
    (cache / f".{images[1].name}.x.tmp").write_bytes(b"half-written")  # a writer killed mid-way
    assert_same(batches(pairs, config(cache)), plain)
    assert np.load(images[0]).shape == (HEIGHT, WIDTH, 3)


def test_a_bad_sample_is_named_and_not_cached(tmp_path):
    pairs = write_pairs(tmp_path / "data", count=2)
    Image.fromarray(np.full((HEIGHT, WIDTH), 7, np.uint8)).save(pairs[1][1])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"1_mask\.png\).*label values \[7\]"):
        batches(pairs, config(cache, iters=2))
    assert len(entries(cache)) <= 2  # at most the good sample


def test_a_cache_folder_that_cannot_be_made_is_one_line(tmp_path):
    pairs = write_pairs(tmp_path / "data", count=2)
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(DataError, match=r"^train\.cache_dir: cannot create folder .*taken/cache \(") as error:
        batches(pairs, config(tmp_path / "taken" / "cache", iters=1))
    assert "\n" not in str(error.value)


def test_a_generated_dataset_has_nothing_to_cache(plugin_site, tmp_path):
    """Through the CLI: one line, exit 1, the run folder not created."""
    run = tmp_path / "run"
    result = semseg(plugin_site, "train", "train.iters=1", "train.crop_size=[32,32]", f"train.cache_dir={tmp_path / 'c'}",
                    "model.backbone.name=tiny_cnn", "model.decoder.name=simple_fcn", f"runtime.output_dir={run}",
                    timeout=180)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.cache_dir: dataset 'synthetic' does not read its samples from files" in lines[0]
    assert not (tmp_path / "c").exists()
