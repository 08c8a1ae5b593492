"""DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution"): ASPP on the deepest feature map.

The ASPP here is shared with DeepLabv3+ (``deeplabv3p_impl``), which can make its atrous branches
depthwise-separable.
"""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU, SeparableConvBNReLU, resize_to, spatial_size
from semsegpaddle.plugins.decoders.levels import (
    check_bool, check_dropout, check_positive, check_positive_list, level_index,
)

#: ASPP rates of the paper for output stride 16; they double at output stride 8.
_PAPER_RATES_OS16 = (6, 12, 18)


class ASPPPooling(nn.Layer):
    """Image-level features: global average pool → 1×1 conv-BN-ReLU → upsample to the input size."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.conv = ConvBNReLU(in_channels, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return resize_to(self.conv(self.pool(x)), spatial_size(x))


def separable_conv(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                   bias: bool = False, depthwise_relu: bool = True) -> nn.Sequential:
    """A depthwise-separable conv-BN-ReLU; without ``depthwise_relu`` its depthwise half is conv-BN only
    (PaddleSeg's ``SeparableConvBNReLU``). Both variants name their tensors alike (``0.0``, ``0.1``,
    ``1.0``, ``1.1``)."""
    if depthwise_relu:
        return SeparableConvBNReLU(in_channels, out_channels, kernel_size, dilation, bias=bias)
    padding = dilation * (kernel_size - 1) // 2
    depthwise = nn.Sequential(
        nn.Conv2D(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation, groups=in_channels,
                  bias_attr=None if bias else False),
        nn.BatchNorm2D(in_channels),
    )
    return nn.Sequential(depthwise, ConvBNReLU(in_channels, out_channels, 1, bias=bias))


class ASPP(nn.Layer):
    """Atrous spatial pyramid pooling: a 1×1 conv, one 3×3 atrous conv per rate, image pooling;
    concatenated and projected by a 1×1 conv-BN-ReLU (section 3.3 of the paper), then dropout.

    ``separable`` makes the atrous branches depthwise-separable (DeepLabv3+), with a ReLU after the
    depthwise conv-BN unless ``depthwise_relu`` is False. ``bias`` gives every conv a bias except
    the image-pooling one, the layout of PaddleSeg's ASPP.
    """

    def __init__(self, in_channels: int, channels: int, rates: list[int], dropout: float,
                 separable: bool = False, bias: bool = False, depthwise_relu: bool = True) -> None:
        super().__init__()
        branches = [ConvBNReLU(in_channels, channels, 1, bias=bias)]
        for rate in rates:
            if separable:
                branches.append(separable_conv(in_channels, channels, 3, rate, bias=bias,
                                               depthwise_relu=depthwise_relu))
            else:
                branches.append(ConvBNReLU(in_channels, channels, 3, rate, bias=bias))
        branches.append(ASPPPooling(in_channels, channels))
        self.branches = nn.LayerList(branches)
        self.project = ConvBNReLU(channels * len(branches), channels, 1, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.dropout(self.project(paddle.concat([branch(x) for branch in self.branches], axis=1)))


def paper_rates(stride: int) -> list[int]:
    """The paper's ASPP rates scaled to a feature stride (16 → 6, 12, 18; 8 → 12, 24, 36)."""
    return [max(1, rate * 16 // stride) for rate in _PAPER_RATES_OS16]


def aspp_rates(atrous_rates: list[int] | None, stride: int) -> list[int]:
    """The checked ``atrous_rates``, or the paper's for ``stride`` when None."""
    return paper_rates(stride) if atrous_rates is None else check_positive_list("atrous_rates", atrous_rates)


class DeepLabV3(Decoder):
    """DeepLabv3 head: ASPP on one backbone level, optionally a 3×3 conv-BN-ReLU (``refine_conv``,
    torchvision's ``DeepLabHead``), then a 1×1 classifier."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 256,
                 atrous_rates: list[int] | None = None, dropout: float = 0.1, in_level: int = -1,
                 conv_bias: bool = False, refine_conv: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        check_positive("channels", channels)
        check_dropout(dropout)
        check_bool("refine_conv", refine_conv)
        level = feature_info[self.in_level]
        self.rates = aspp_rates(atrous_rates, level.stride)
        self.aspp = ASPP(level.channels, channels, self.rates, dropout, bias=conv_bias)
        self.refine = ConvBNReLU(channels, channels, 3, bias=conv_bias) if refine_conv else None
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        x = self.aspp(features[self.in_level])
        if self.refine is not None:
            x = self.refine(x)
        return self.classifier(x)
