"""An embedded, download-free dataset of procedurally drawn scenes (the quick start's default): registration.

On a cluttered background, segment a few overlapping, textured objects of five classes (disc,
square, triangle, ring, striped bar); every sample is a pure function of ``(seed, split, index)``.
See ``synthetic_impl`` for the full description.

Imports neither cv2 nor paddle: the dataset lives in ``synthetic_impl`` and is imported when a
dataset is built, so ``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

import numbers

from semsegpaddle import hookimpl
from semsegpaddle.core.common.lazy import lazy_attributes

#: names defined in synthetic_impl, served lazily by ``__getattr__``
_SCENE_NAMES = ("CLASS_NAMES", "SPLITS", "IGNORE_INDEX", "SyntheticObject", "SyntheticDataset")


__getattr__ = lazy_attributes("semsegpaddle.plugins.datasets.synthetic_impl", _SCENE_NAMES)


def build_synthetic(
    split: str,
    *,
    seed: int = 0,
    image_size: int = 96,
    num_train: int = 256,
    num_val: int = 64,
    min_objects: int = 2,
    max_objects: int = 5,
    max_distractors: int = 6,
    noise_std: float = 6.0,
    ignore_width: int = 1,
    hue_jitter: float = 30.0,
    class_draw_weights: list[float] | None = None,
):
    """Procedural scenes of textured, overlapping shapes on clutter; nothing to download."""
    from semsegpaddle.plugins.datasets.synthetic_impl import SPLITS, SyntheticDataset

    if split not in SPLITS:
        raise ValueError(f"synthetic dataset has no split {split!r}; expected one of: {', '.join(SPLITS)}")
    _check_int("seed", seed, 0)
    _check_int("image_size", image_size, 32)
    _check_int("num_train", num_train, 1)
    _check_int("num_val", num_val, 1)
    _check_int("min_objects", min_objects, 1)
    _check_int("max_objects", max_objects, min_objects, "at least min_objects")
    _check_int("max_distractors", max_distractors, 0)
    _check_int("ignore_width", ignore_width, 0)
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not 0 <= noise_std <= 100:
        raise ValueError(f"noise_std={noise_std!r} is not valid; expected a number from 0 to 100")
    if isinstance(hue_jitter, bool) or not isinstance(hue_jitter, (int, float)) or not 0 <= hue_jitter <= 180:
        raise ValueError(f"hue_jitter={hue_jitter!r} is not valid; expected a number of degrees from 0 to 180")
    if class_draw_weights is not None:
        weights = list(class_draw_weights)
        if (len(weights) != 5 or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                         for w in weights) or sum(weights) <= 0):
            raise ValueError(f"class_draw_weights={class_draw_weights!r} is not valid; expected 5 numbers >= 0 "
                             f"(disc, square, triangle, ring, striped-bar) with a positive sum")
        class_draw_weights = [float(w) for w in weights]
    return SyntheticDataset(
        split,
        seed=seed,
        image_size=image_size,
        length=num_train if split == "train" else num_val,
        min_objects=min_objects,
        max_objects=max_objects,
        max_distractors=max_distractors,
        noise_std=float(noise_std),
        ignore_width=ignore_width,
        hue_jitter=float(hue_jitter),
        class_draw_weights=class_draw_weights,
    )


def _check_int(name: str, value: object, minimum: int, expected: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an integer {expected or f'>= {minimum}'}")


@hookimpl
def semseg_register_datasets(register):
    """Register the ``synthetic`` dataset."""
    register(
        "synthetic",
        build_synthetic,
        options={
            "seed": "seed of the generator; with split and index it fixes every sample",
            "image_size": "height and width of the square images, in pixels (>= 32)",
            "num_train": "number of samples in the train split",
            "num_val": "number of samples in the val split",
            "min_objects": "fewest objects drawn per image",
            "max_objects": "most objects drawn per image (>= min_objects)",
            "max_distractors": "most background scribbles / speck clusters per image (labelled background)",
            "noise_std": "standard deviation of the Gaussian pixel noise, in 0-255 intensity units",
            "ignore_width": "width in pixels of the ignore band (255) along object boundaries; 0 disables it",
            "hue_jitter": "spread in degrees of each class's typical hue (classes 72° apart); 180: colour carries no class information",
            "class_draw_weights": "relative chance of each object class (disc, square, triangle, ring, striped-bar) "
                                  "when an object is drawn, e.g. [1, 1, 1, 0.03, 1] makes rings rare; null: all equal",
        },
        description="procedural shapes with per-class textures, occlusion and clutter; no download",
    )
