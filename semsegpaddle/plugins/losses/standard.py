"""Registers the built-in losses (each lives in a sibling module; paddle is imported on build only)."""
from __future__ import annotations

from typing import Literal

from semsegpaddle import hookimpl
from semsegpaddle.plugins.losses.options import (check_auto_weight_options, check_choice, check_class_weights,
                                                 check_range)

CLASS_WEIGHTS_HELP = ("weight of each class, one per output channel, or auto: computed from the training split's "
                      "pixel counts by semseg train (class_weights_method); null: all 1. The mean is weighted by them")
AUTO_WEIGHT_HELP = {
    "class_weights_method": "class_weights: auto: inverse_frequency 1/f, inverse_sqrt 1/√f, median_frequency "
                            "(median g / g_c, g_c = class pixels / pixels of the images holding it), enet 1/ln(c + f); "
                            "f = the class's share of labelled pixels",
    "class_weights_max": "class_weights: auto: clip the weights, normalised to a pixel-weighted mean of 1, to this "
                         "(>= 1); also the weight of a class without pixels",
    "class_weights_enet_c": "class_weights: auto, method enet: the constant c of 1/ln(c + f) (> 1)",
}
WeightMethod = Literal["inverse_frequency", "inverse_sqrt", "median_frequency", "enet"]


def cross_entropy(ignore_index, *, class_weights: list[float] | Literal["auto"] | None = None,
                  class_weights_method: WeightMethod = "inverse_frequency", class_weights_max: float = 10.0,
                  class_weights_enet_c: float = 1.02, label_smoothing: float = 0.0):
    """Pixel-wise cross-entropy, averaged over labelled pixels."""
    check_auto_weight_options(class_weights, class_weights_method, class_weights_max, class_weights_enet_c)
    check_class_weights(class_weights)
    check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    from semsegpaddle.plugins.losses.cross_entropy import CrossEntropyLoss

    return CrossEntropyLoss(ignore_index, class_weights=class_weights, label_smoothing=label_smoothing)


def ohem_cross_entropy(ignore_index, *, thresh: float = 0.7, min_kept: int = 100000,
                       class_weights: list[float] | Literal["auto"] | None = None,
                       class_weights_method: WeightMethod = "inverse_frequency", class_weights_max: float = 10.0,
                       class_weights_enet_c: float = 1.02):
    """Cross-entropy over the hard pixels only (online hard example mining)."""
    check_range("thresh", thresh, 0.0, low_open=True)
    check_range("min_kept", min_kept, 0)
    check_auto_weight_options(class_weights, class_weights_method, class_weights_max, class_weights_enet_c)
    check_class_weights(class_weights)
    from semsegpaddle.plugins.losses.cross_entropy import OhemCrossEntropyLoss

    return OhemCrossEntropyLoss(ignore_index, thresh=thresh, min_kept=int(min_kept), class_weights=class_weights)


def dice(ignore_index, *, smooth: float = 1.0, exponent: int = 2):
    """Soft Dice loss over softmax probabilities, per image and class, averaged."""
    check_range("smooth", smooth, 0.0)
    check_range("exponent", exponent, 1)
    from semsegpaddle.plugins.losses.dice import DiceLoss

    return DiceLoss(ignore_index, smooth=smooth, exponent=exponent)


def lovasz_softmax(ignore_index, *, classes: Literal["present", "all"] = "present", per_image: bool = False):
    """Lovász-Softmax: convex surrogate of the Jaccard (IoU) loss."""
    check_choice("classes", classes, ("present", "all"))
    from semsegpaddle.plugins.losses.lovasz import LovaszSoftmaxLoss

    return LovaszSoftmaxLoss(ignore_index, classes=classes, per_image=per_image)


def semantic_context(ignore_index):
    """GINet's semantic-context loss on an N×C output of per-class presence logits."""
    from semsegpaddle.plugins.losses.semantic_context import semantic_context_loss

    def loss(context_logits, label):
        """Binary cross-entropy of each class's presence logit against the label's classes."""
        return semantic_context_loss(context_logits, label, context_logits.shape[-1], ignore_index)

    return loss


@hookimpl
def semseg_register_losses(register):
    """Register cross_entropy, ohem_cross_entropy, dice, lovasz_softmax and semantic_context."""
    register("cross_entropy", cross_entropy,
             description="pixel-wise cross-entropy, mean over labelled pixels (weighted with class_weights)",
             options={"class_weights": CLASS_WEIGHTS_HELP, **AUTO_WEIGHT_HELP,
                      "label_smoothing": "ε in [0, 1): target (1−ε)·one-hot + ε/C, as PyTorch's cross_entropy"})
    register("ohem_cross_entropy", ohem_cross_entropy,
             description="cross-entropy over hard pixels: true-class probability < thresh, at least min_kept "
                         "of the batch (PaddleSeg's OhemCrossEntropyLoss)",
             options={"thresh": "keep the pixels whose softmax probability of the true class is below this",
                      "min_kept": "keep at least this many pixels of the batch, the lowest-probability ones",
                      "class_weights": CLASS_WEIGHTS_HELP, **AUTO_WEIGHT_HELP})
    register("dice", dice,
             description="soft Dice over softmax probabilities, per image and class, averaged (MMSeg's DiceLoss)",
             options={"smooth": "added to numerator and denominator: 1 − (2Σpt + s) / (Σ(p^e + t^e) + s)",
                      "exponent": "power e of p and t in the denominator"})
    register("lovasz_softmax", lovasz_softmax,
             description="Lovász-Softmax: convex surrogate of 1 − IoU per class (Berman et al. 2018)",
             options={"classes": "average over the classes present in the labels, or over all classes",
                      "per_image": "compute per image and average over images (else over the whole batch)"})
    register("semantic_context", semantic_context,
             description="GINet's semantic context: BCE of N×C class-presence logits against the label's classes "
                         "(Wu et al. 2020)",
             options={})
