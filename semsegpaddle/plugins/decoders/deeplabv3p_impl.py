"""DeepLabv3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution"):
DeepLabv3's ASPP as encoder, plus a decoder that refines it with low-level features."""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU, resize_to, spatial_size
from semsegpaddle.plugins.decoders.deeplab_impl import ASPP, aspp_rates, separable_conv
from semsegpaddle.plugins.decoders.levels import (
    check_bool, check_dropout, check_positive, level_index, nearest_stride_level,
)

#: stride of the paper's low-level features (ResNet's conv2 / layer1 output)
LOW_LEVEL_STRIDE = 4


class DeepLabV3PlusHead(Decoder):
    """DeepLabv3+ head: ASPP on ``in_level``; the ``low_level`` map projected by a 1×1 conv-BN-ReLU
    to ``low_level_channels``; ASPP output upsampled to it and concatenated; two 3×3 conv-BN-ReLU of
    ``decoder_channels``; 1×1 classifier. Output at the low level's stride.

    ``separable`` makes the atrous ASPP branches and the two decoder convs depthwise-separable, as
    in the paper; ``depthwise_relu`` False leaves out the ReLU after their depthwise conv-BN
    (PaddleSeg). ``low_level`` None takes the level whose stride is closest to 4. ``align_corners``
    is that of the bilinear upsampling of the ASPP output to the low level.
    """

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 256,
                 atrous_rates: list[int] | None = None, dropout: float = 0.1, in_level: int = -1,
                 low_level: int | None = None, low_level_channels: int = 48, decoder_channels: int = 256,
                 separable: bool = True, conv_bias: bool = False, depthwise_relu: bool = True,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        if low_level is None:
            self.low_level = nearest_stride_level(feature_info, LOW_LEVEL_STRIDE)
        else:
            self.low_level = level_index(feature_info, "low_level", low_level)
        for option, value in (("channels", channels), ("low_level_channels", low_level_channels),
                              ("decoder_channels", decoder_channels)):
            check_positive(option, value)
        check_dropout(dropout)
        check_bool("separable", separable)
        check_bool("depthwise_relu", depthwise_relu)
        check_bool("align_corners", align_corners)
        self.align_corners = align_corners
        deep, low = feature_info[self.in_level], feature_info[self.low_level]
        self.rates = aspp_rates(atrous_rates, deep.stride)
        self.aspp = ASPP(deep.channels, channels, self.rates, dropout, separable=separable, bias=conv_bias,
                         depthwise_relu=depthwise_relu)
        self.low_project = ConvBNReLU(low.channels, low_level_channels, 1, bias=conv_bias)

        def conv(in_channels: int, out_channels: int) -> nn.Layer:
            if separable:
                return separable_conv(in_channels, out_channels, 3, bias=conv_bias, depthwise_relu=depthwise_relu)
            return ConvBNReLU(in_channels, out_channels, 3, bias=conv_bias)

        self.fuse = nn.Sequential(conv(channels + low_level_channels, decoder_channels),
                                  conv(decoder_channels, decoder_channels))
        self.classifier = nn.Conv2D(decoder_channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        low = self.low_project(features[self.low_level])
        context = resize_to(self.aspp(features[self.in_level]), spatial_size(low), self.align_corners)
        return self.classifier(self.fuse(paddle.concat([context, low], axis=1)))
