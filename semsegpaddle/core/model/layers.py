"""Small building blocks shared by the core and by plugins (conv-BN-ReLU, separable, resizing)."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn


class ConvBNReLU(nn.Sequential):
    """k×k convolution → BatchNorm → ReLU, 'same' padding for odd k with dilation.

    The convolution has no bias unless ``bias`` is set: BatchNorm cancels it. PaddleSeg's layers keep
    one, so heads offer ``conv_bias`` to reproduce its parameter counts exactly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = False, groups: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2D(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      groups=groups, bias_attr=None if bias else False),
            nn.BatchNorm2D(out_channels),
            nn.ReLU(),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise-separable k×k conv-BN-ReLU: a depthwise k×k conv-BN-ReLU (one filter per channel,
    dilated), then a pointwise 1×1 conv-BN-ReLU — DeepLabv3+'s "atrous separable convolution"."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = False) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, kernel_size, dilation, bias=bias, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1, bias=bias),
        )


def spatial_size(x: paddle.Tensor) -> list[int] | paddle.Tensor:
    """(H, W) of an N×C×H×W tensor: ints when running eagerly, a tensor when exporting, where
    H and W are unknown until run time."""
    return x.shape[-2:] if paddle.in_dynamic_mode() else paddle.shape(x)[2:]


def resize_to(x: paddle.Tensor, size: list[int] | paddle.Tensor, align_corners: bool = False) -> paddle.Tensor:
    """Bilinear resize of N×C×h×w to ``size`` = (H, W) (no-op if equal)."""
    if paddle.in_dynamic_mode() and list(x.shape[-2:]) == list(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
