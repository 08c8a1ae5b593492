"""Training-pipeline throughput on Cityscapes-size images: semsegpaddle against PaddleSeg 2.8.

Both sides run the same recipe on the same files, in the same process run: read a 1024×2048 image
(JPEG or PNG) and its PNG label, random rescale 0.5–2.0, random 512×1024 crop (padded where the
rescaled image is smaller), horizontal flip, photometric distortion (brightness, contrast,
saturation, hue), and batches delivered as paddle tensors — ours through
``core.data.datasets.train_loader``, PaddleSeg's through its ``Dataset`` and ``paddle.io.DataLoader``
as its ``train.py`` builds them — with each ``--workers`` count. Throughput is samples per second
after ``--warmup`` batches (worker start-up excluded on both sides).

PaddleSeg is a benchmark-only install, never a dependency of the package:

    pip install --target /tmp/pseg28 --no-deps paddleseg==2.8.0 six scipy scikit-learn joblib \
        threadpoolctl cloudpickle narwhals
    python benchmarks/pipeline.py --paddleseg /tmp/pseg28

(its pinned opencv-python needs numpy 1: with ``--no-deps`` it uses this environment's
opencv-python-headless). ``--profile`` adds a per-stage breakdown of one process on each side.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

HEIGHT, WIDTH, CLASSES = 1024, 2048, 19
CROP = (512, 1024)
SCALES = (0.5, 2.0)


# ------------------------------------------------------------------ synthetic Cityscapes-size files

def write_dataset(folder: Path, count: int, image_format: str, seed: int = 0) -> list[tuple[Path, Path]]:
    """``count`` image/label pairs: regions of 19 classes (and some ignore), textured like a photo."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, (256, 3)).astype(np.float32)
    pairs = []
    for index in range(count):
        coarse = rng.integers(0, CLASSES, (16, 32)).astype(np.uint8)
        label = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
        warp = cv2.resize(rng.normal(0, 24, (2, 32, 64)).astype(np.float32).transpose(1, 2, 0), (WIDTH, HEIGHT))
        grid = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        label = cv2.remap(label, grid[1] + warp[..., 0], grid[0] + warp[..., 1], cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REFLECT)  # wavy region borders, not a grid
        label[:40] = 255
        shade = cv2.resize(rng.uniform(0.7, 1.2, (8, 16)).astype(np.float32), (WIDTH, HEIGHT))[..., None]
        noise = rng.normal(0, 9, (HEIGHT, WIDTH, 3)).astype(np.float32)
        image = np.clip(palette[label] * shade + cv2.GaussianBlur(noise, (0, 0), 1.2) * 2, 0, 255).astype(np.uint8)
        image_path = folder / f"city_{index:04d}_leftImg8bit.{image_format}"
        label_path = folder / f"city_{index:04d}_gtFine_labelTrainIds.png"
        options = [cv2.IMWRITE_JPEG_QUALITY, 90] if image_format == "jpg" else []
        cv2.imwrite(str(image_path), image[..., ::-1], options)
        cv2.imwrite(str(label_path), label)
        pairs.append((image_path, label_path))
    return pairs


# ------------------------------------------------------------------ the two pipelines

Pairs = list[tuple[Path, Path]]


def ours_batches(pairs: Pairs, workers: int, batch_size: int, batches: int, seed: int,
                 cache_dir: Path | None = None) -> Iterator[Any]:
    """semsegpaddle's training batches (train_loader) for the recipe (``train.cache_dir``: ``cache_dir``)."""
    from semsegpaddle.core.config.loader import config_from_dict
    from semsegpaddle.core.data.datasets import train_loader
    from semsegpaddle.core.data.file_dataset import FileDataset

    dataset = FileDataset(pairs, num_classes=CLASSES, ignore_index=255)
    config = config_from_dict({"train": {
        "crop_size": list(CROP), "scale_range": list(SCALES), "flip": True, "photometric": True,
        "batch_size": batch_size, "num_workers": workers, "iters": batches, "cache_dir": cache_dir},
        "runtime": {"seed": seed}})
    return train_loader(dataset, config, start=0)


def paddleseg_transforms() -> list[Any]:
    """PaddleSeg's transforms for the recipe (its Cityscapes configs' order)."""
    import paddleseg.transforms as T

    return [T.ResizeStepScaling(SCALES[0], SCALES[1], 0.0),  # step 0: a uniform scale, as ours
            T.RandomPaddingCrop(crop_size=(CROP[1], CROP[0])), T.RandomHorizontalFlip(),
            T.RandomDistort(brightness_range=0.5, contrast_range=0.5, saturation_range=0.5, hue_range=18),
            T.Normalize()]


def _seed_worker(worker_id: int) -> None:
    np.random.seed(1000 + worker_id)


def paddleseg_batches(pairs: Pairs, workers: int, batch_size: int, batches: int, seed: int) -> Iterator[Any]:
    """PaddleSeg 2.8's training batches: its Dataset and the DataLoader its train.py builds."""
    import paddle
    from paddleseg.datasets import Dataset

    root = pairs[0][0].parent
    listing = root / "train_list.txt"
    listing.write_text("".join(f"{image.name} {label.name}\n" for image, label in pairs))
    np.random.seed(seed)
    dataset = Dataset(mode="train", dataset_root=str(root), train_path=str(listing), num_classes=CLASSES,
                      transforms=paddleseg_transforms(), ignore_index=255)
    sampler = paddle.io.DistributedBatchSampler(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, return_list=True,
                                  worker_init_fn=_seed_worker)
    return iter(loader)


def samples_per_second(batches: Iterator[Any], count: int, warmup: int, batch_size: int) -> float:
    """Throughput over ``count`` batches after ``warmup`` batches."""
    try:
        for _ in range(warmup):
            next(batches)
        tic = time.perf_counter()
        for _ in range(count):
            batch = next(batches)
        images = batch["img"] if isinstance(batch, dict) else batch[0]  # PaddleSeg's batches are dicts
        assert tuple(images.shape) == (batch_size, 3, *CROP), images.shape
        return count * batch_size / (time.perf_counter() - tic)
    finally:
        # stop the loader before the next one starts (and before the files go): ours is a generator,
        # Paddle's DataLoader iterators shut their thread or worker processes down with this method
        close = getattr(batches, "close", None) or getattr(batches, "_try_shutdown_all", None)
        if close is not None:
            close()


# ------------------------------------------------------------------ per-stage profile

def profile_ours(pairs: list[tuple[Path, Path]], count: int) -> dict[str, float]:
    """Milliseconds per sample of each stage of our pipeline, in this process."""
    from semsegpaddle.core.data.datasets import checked_sample, model_batch
    from semsegpaddle.core.data.file_dataset import FileDataset
    from semsegpaddle.core.data.image_io import read_image, read_label
    from semsegpaddle.core.data.transforms import Photometric, TrainTransform, rescaled_window, scaled_size, to_planes

    dataset = FileDataset(pairs, num_classes=CLASSES, ignore_index=255)
    photometric = Photometric.from_config(True)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        tic = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(1000 * (time.perf_counter() - tic))
        return out

    rng = np.random.default_rng(0)
    for index in range(count):
        image_path, label_path = pairs[index % len(pairs)]
        timed("read image (OpenCV decode, RGB)", lambda: read_image(image_path))
        timed("read label (OpenCV decode)", lambda: dataset.mapping(read_label(label_path)))
        image, label = timed("dataset[i] (both + checks)", lambda: checked_sample(dataset, index % len(dataset)))
        height, width = scaled_size(*label.shape, float(rng.uniform(*SCALES)))
        top = int(rng.integers(0, max(height - CROP[0], 0) + 1))
        left = int(rng.integers(0, max(width - CROP[1], 0) + 1))
        image, label = timed("rescale the crop's window", lambda: rescaled_window(
            image, label, (height, width), top, left, min(CROP[0], height - top), min(CROP[1], width - left)))
        image = timed("photometric", lambda: photometric(image, rng))
        image, label = timed("pad + flip", lambda: TrainTransform(list(CROP), [1.0, 1.0], True, [0, 0, 0], 255)(
            image, label, rng))
        planes = timed("to 3×H×W uint8", lambda: to_planes(image))
        timed("to paddle float32/int64", lambda: model_batch(planes[None], label[None]))
    return {name: statistics.fmean(values) for name, values in times.items()}


def profile_paddleseg(pairs: list[tuple[Path, Path]], count: int) -> dict[str, float]:
    """Milliseconds per sample of each of PaddleSeg's transforms, in this process."""
    from PIL import Image

    transforms = paddleseg_transforms()
    times: dict[str, list[float]] = {}
    for index in range(count):
        image_path, label_path = pairs[index % len(pairs)]
        tic = time.perf_counter()
        image = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR).astype("float32"), cv2.COLOR_BGR2RGB)
        times.setdefault("read image (cv2, to float32 RGB)", []).append(1000 * (time.perf_counter() - tic))
        tic = time.perf_counter()
        data = {"img": image, "label": np.asarray(Image.open(label_path)), "trans_info": [], "gt_fields": ["label"]}
        times.setdefault("read label (PIL)", []).append(1000 * (time.perf_counter() - tic))
        for op in transforms:
            tic = time.perf_counter()
            data = op(data)
            times.setdefault(type(op).__name__, []).append(1000 * (time.perf_counter() - tic))
        tic = time.perf_counter()
        data["img"] = np.transpose(data["img"], (2, 0, 1))
        times.setdefault("to CHW", []).append(1000 * (time.perf_counter() - tic))
    return {name: statistics.fmean(values) for name, values in times.items()}


# ------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12, help="distinct image/label pairs written")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="batches before timing starts")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeat", type=int, default=2, help="measurements per setting (the median is shown)")
    parser.add_argument("--format", choices=["jpg", "png"], default="jpg", help="image file format")
    parser.add_argument("--paddleseg", type=Path, help="folder holding a PaddleSeg 2.8 install (pip --target)")
    parser.add_argument("--profile", action="store_true", help="also print a per-stage breakdown")
    parser.add_argument("--cache", action="store_true",
                        help="also measure ours with train.cache_dir (filled by one untimed pass first)")
    args = parser.parse_args()

    if args.paddleseg:
        sys.path.insert(0, str(args.paddleseg))
    import warnings

    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle

    paddle.set_device("cpu")
    try:
        import paddleseg  # noqa: F401
        sides: dict[str, Callable[..., Iterator[Any]]] = {"semsegpaddle": ours_batches,
                                                          "PaddleSeg 2.8": paddleseg_batches}
    except ImportError as exc:
        print(f"PaddleSeg not importable ({exc}); measuring semsegpaddle only", file=sys.stderr)
        sides = {"semsegpaddle": ours_batches}

    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        pairs = write_dataset(Path(tmp), args.images, args.format)
        size = sum(p.stat().st_size for p, _ in pairs) / len(pairs) / 1e6
        print(f"{args.images} synthetic {HEIGHT}×{WIDTH} {args.format} images (~{size:.2f} MB each) + PNG labels "
              f"written in {time.perf_counter() - tic:.1f} s")
        needed = (args.warmup + args.batches) * args.batch_size
        listed = pairs * (needed // len(pairs) + 1)  # one epoch covers a measurement on both sides
        if args.cache:
            cache_dir = Path(tmp) / "decoded"
            tic = time.perf_counter()
            for _ in ours_batches(pairs, 0, 1, len(pairs), 0, cache_dir):  # every sample once: the cache is full
                pass
            print(f"decoded cache filled in {time.perf_counter() - tic:.1f} s "
                  f"({sum(f.stat().st_size for f in cache_dir.iterdir()) / 1e6:.0f} MB)")
            cached = {"semsegpaddle cached": functools.partial(ours_batches, cache_dir=cache_dir)}
            sides = {"semsegpaddle": ours_batches, **cached, **{k: v for k, v in sides.items() if k != "semsegpaddle"}}
        results: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.repeat):  # the sides interleaved, so a load change hits both
            for workers in args.workers:
                for name, make in sides.items():
                    batches = make(listed, workers, args.batch_size, args.warmup + args.batches, round_)
                    rate = samples_per_second(batches, args.batches, args.warmup, args.batch_size)
                    results.setdefault((name, workers), []).append(rate)
        print(f"\nbatch {args.batch_size}, crop {CROP[0]}×{CROP[1]}, scale {SCALES[0]}–{SCALES[1]}, flip, "
              f"photometric; samples/s, median of {args.repeat} × {args.batches} batches")
        print(f"{'pipeline':<20} {'workers':>7} {'samples/s':>10}  runs")
        for (name, workers), rates in results.items():
            print(f"{name:<20} {workers:>7} {statistics.median(rates):>10.2f}  "
                  + " ".join(f"{r:.2f}" for r in rates))
        if "PaddleSeg 2.8" in sides:
            for name in (n for n in sides if n.startswith("semsegpaddle")):
                for workers in args.workers:
                    ratio = statistics.median(results[name, workers]) / statistics.median(
                        results["PaddleSeg 2.8", workers])
                    print(f"{name}: speed-up with {workers} workers: {ratio:.2f}×")
        if args.profile:
            count = 3 * len(pairs)
            for name, profile in [("semsegpaddle", lambda: profile_ours(pairs, count)),
                                  ("PaddleSeg 2.8", lambda: profile_paddleseg(pairs, count))
                                  ][:1 + ("PaddleSeg 2.8" in sides)]:
                stages = profile()
                print(f"\n{name}: mean ms per sample and stage (one process, {count} samples)")
                for stage, ms in stages.items():
                    print(f"  {stage:<36} {ms:7.1f}")


if __name__ == "__main__":
    main()
