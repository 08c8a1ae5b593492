"""Class balance from a training split's class pixel counts: loss weights and rare-class sampling.

Both start from ``counts``, an images × classes array of labelled pixels (after the dataset's
label mapping, ``ignore_index`` excluded; see :mod:`class_stats`). With n_c the pixels of class c
over the split and f_c = n_c / Σ n its share:

Class weights (``class_weights: auto``), a raw weight r_c per method:

- ``inverse_frequency``: r_c = 1 / f_c
- ``inverse_sqrt``: r_c = 1 / √f_c
- ``median_frequency`` (Eigen & Fergus 2015, SegNet): g_c = n_c / M_c, where M_c is the labelled
  pixels of the images containing c; r_c = median of g over the present classes / g_c
- ``enet`` (Paszke et al. 2016): r_c = 1 / ln(k + f_c), k = ``class_weights_enet_c`` (1.02)

then normalised so that the mean weight of a labelled pixel is 1 (Σ_c f_c w_c = 1), then clipped
to ``class_weights_max``: w_c = min(r_c / Σ_c' f_c' r_c', max). A class with no pixel in the split
gets ``max``.

Rare-class sampling (``train.sampler: rare_class``, DAFormer's, Hoyer et al. 2022): a class c
with pixels is drawn with P(c) = exp((1 − f_c) / T) / Σ_c' exp((1 − f_c') / T) (T =
``train.sampler_temperature``), then an image containing c (at least one pixel) uniformly. So
image i comes with P(i) = Σ over the classes c in i of P(c) / |I_c|, I_c the images containing c;
an image without any labelled pixel is never drawn.
"""
from __future__ import annotations

import numpy as np

from semsegpaddle.core.common.errors import ConfigError, DataError

WEIGHT_METHODS = ("inverse_frequency", "inverse_sqrt", "median_frequency", "enet")
DEFAULT_METHOD = "inverse_frequency"
DEFAULT_MAX_WEIGHT = 10.0
DEFAULT_ENET_C = 1.02

#: the last entry of the seed of rare-class draws: their random stream differs from the
#: augmentation's (seeded by [seed, draw]) and from the epoch permutations' ([seed, epoch])
_RARE_CLASS_STREAM = 0x52435321


def check_weight_options(where: str, method: str, max_weight: float, enet_c: float) -> None:
    """A one-line ConfigError naming the option whose value is not valid, below the config section
    ``where`` (e.g. ``loss.main.0``; empty: the bare option names)."""
    prefix = f"{where}." if where else ""
    if method not in WEIGHT_METHODS:
        raise ConfigError(f"{prefix}class_weights_method must be one of {', '.join(WEIGHT_METHODS)}, got {method!r}")
    if isinstance(max_weight, bool) or not isinstance(max_weight, (int, float)) or not max_weight >= 1:
        raise ConfigError(f"{prefix}class_weights_max must be a number >= 1 (the mean weight of a pixel is 1), "
                          f"got {max_weight!r}")
    if isinstance(enet_c, bool) or not isinstance(enet_c, (int, float)) or not enet_c > 1:
        raise ConfigError(f"{prefix}class_weights_enet_c must be a number > 1 (ln(c + f) must be positive), "
                          f"got {enet_c!r}")


def _pixels(counts: np.ndarray) -> np.ndarray:
    """Pixels per class over the split (int64); a DataError when no pixel is labelled."""
    pixels = np.asarray(counts, dtype=np.int64).sum(axis=0)
    if pixels.sum() <= 0:
        raise DataError("the training split has no labelled pixel (every pixel is ignore_index): class balance "
                        "needs class pixel counts")
    return pixels


def class_weights(counts: np.ndarray, method: str = DEFAULT_METHOD, max_weight: float = DEFAULT_MAX_WEIGHT,
                  enet_c: float = DEFAULT_ENET_C) -> np.ndarray:
    """Per-class loss weights (float64, one per class) from ``counts`` (images × classes labelled
    pixels) by ``method``, normalised to a pixel-weighted mean of 1, then clipped to ``max_weight``
    (see the module docstring for the formulas)."""
    check_weight_options("", method, max_weight, enet_c)
    counts = np.asarray(counts, dtype=np.int64)
    pixels = _pixels(counts)
    share = pixels / pixels.sum()
    present = pixels > 0
    raw = np.zeros(len(pixels), dtype=np.float64)
    if method == "inverse_frequency":
        raw[present] = 1.0 / share[present]
    elif method == "inverse_sqrt":
        raw[present] = 1.0 / np.sqrt(share[present])
    elif method == "median_frequency":
        image_pixels = counts.sum(axis=1)
        in_images = (counts > 0).T.astype(np.int64) @ image_pixels  # labelled pixels of the images holding c
        frequency = pixels[present] / in_images[present]
        raw[present] = np.median(frequency) / frequency
    else:
        raw[present] = 1.0 / np.log(enet_c + share[present])
    weights = raw / float(np.sum(share[present] * raw[present]))
    weights[~present] = max_weight
    return np.minimum(weights, float(max_weight))


def rare_class_probabilities(counts: np.ndarray, temperature: float) -> np.ndarray:
    """P(c) of rare-class sampling, one per class: softmax of (1 − f_c) / T over the classes with
    pixels, 0 for the others."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ConfigError(f"train.sampler_temperature must be a number > 0, got {temperature!r}")
    pixels = _pixels(counts)
    present = pixels > 0
    logits = (1.0 - pixels[present] / pixels.sum()) / float(temperature)
    exp = np.exp(logits - logits.max())  # shifted: T = 1e-4 would overflow exp
    probabilities = np.zeros(len(pixels), dtype=np.float64)
    probabilities[present] = exp / exp.sum()
    return probabilities


class RareClassSampler:
    """Draws training images by rare-class sampling; draw ``p`` is a pure function of (seed, p).

    ``counts`` is the images × classes array of labelled pixels of the training split: an image
    contains a class when it has at least one of its pixels.
    """

    def __init__(self, counts: np.ndarray, temperature: float, seed: int) -> None:
        counts = np.asarray(counts)
        self.seed = int(seed)
        self.class_probabilities = rare_class_probabilities(counts, temperature)
        self.classes = np.flatnonzero(self.class_probabilities > 0)
        self._cumulative = np.cumsum(self.class_probabilities[self.classes])
        self._images = [np.flatnonzero(counts[:, c] > 0) for c in self.classes]
        self.num_images = counts.shape[0]

    def draw(self, position: int) -> int:
        """The image of draw ``position``: a class by P(c), then one of its images uniformly."""
        rng = np.random.default_rng([self.seed, int(position), _RARE_CLASS_STREAM])
        pick = rng.random() * self._cumulative[-1]
        which = min(int(np.searchsorted(self._cumulative, pick, side="right")), len(self.classes) - 1)
        images = self._images[which]
        return int(images[rng.integers(len(images))])

    def image_probabilities(self) -> np.ndarray:
        """P(i) of each image: Σ over the classes c it contains of P(c) / (images containing c)."""
        out = np.zeros(self.num_images, dtype=np.float64)
        for c, images in zip(self.classes, self._images):
            out[images] += self.class_probabilities[c] / len(images)
        return out
