"""Multi-class soft Dice loss over softmax probabilities (V-Net's Dice, in MMSeg's form).

As MMSeg's DiceLoss: per image and class, ``smooth`` in numerator and denominator, ``exponent`` on
the denominator's terms, the mean over classes and images. Unlike it, ignored pixels are left out
of the denominator too (MMSeg masks only the numerator there).
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from semsegpaddle.plugins.losses.pixels import pixel_targets


class DiceLoss:
    """1 − (2·Σ p·t + smooth) / (Σ (p^e + t^e) + smooth) per image and class, averaged over both.

    p is the softmax probability of the class, t its one-hot target and e = ``exponent``; the sums
    run over the image's labelled pixels only (ignored pixels count in neither numerator nor
    denominator). With ``smooth`` > 0 a class absent from an image and predicted nowhere scores 0.
    """

    def __init__(self, ignore_index: int, smooth: float = 1.0, exponent: int = 2) -> None:
        self.ignore_index = ignore_index
        self.smooth = float(smooth)
        self.exponent = int(exponent)

    def __call__(self, logits: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """The mean Dice loss of ``logits`` (N×C×H×W) against ``label`` (N×H×W)."""
        targets = pixel_targets("dice", logits, label, self.ignore_index)
        num_classes = logits.shape[1]
        valid = targets.valid.astype(logits.dtype).unsqueeze(1)
        prob = F.softmax(logits, axis=1) * valid
        target = F.one_hot(targets.classes, num_classes).astype(logits.dtype).transpose([0, 3, 1, 2]) * valid
        spatial = [2, 3]
        numerator = 2.0 * (prob * target).sum(axis=spatial) + self.smooth
        denominator = (prob.pow(self.exponent) + target.pow(self.exponent)).sum(axis=spatial) + self.smooth
        # smooth = 0 and a class absent from an image and from its prediction: 0/0, a perfect score
        ratio = paddle.where(denominator > 0, numerator / paddle.clip(denominator, min=1e-12),
                             paddle.ones_like(denominator))
        return (1.0 - ratio).mean()
