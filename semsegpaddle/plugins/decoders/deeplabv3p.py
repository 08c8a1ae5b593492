"""DeepLabv3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution"): registration.

Imports no paddle: the model lives in ``deeplabv3p_impl`` and is imported when a model is built.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.plugins.decoders.deeplab import ASPP_OPTIONS, paddleseg_aspp_names
from semsegpaddle.plugins.decoders.levels import (
    checked_names, conv_bn_names, conv_names, require_options, with_defaults,
)


def deeplabv3p(feature_info, num_classes: int, *, channels: int = 256, atrous_rates: list[int] | None = None,
               dropout: float = 0.1, in_level: int = -1, low_level: int | None = None,
               low_level_channels: int = 48, decoder_channels: int = 256, separable: bool = True,
               conv_bias: bool = False, depthwise_relu: bool = True, align_corners: bool = False):
    """DeepLabv3+ head on the backbone's ``feature_info``: ASPP, low-level decoder, classifier."""
    from semsegpaddle.plugins.decoders.deeplabv3p_impl import DeepLabV3PlusHead

    return DeepLabV3PlusHead(feature_info, num_classes, channels=channels, atrous_rates=atrous_rates,
                             dropout=dropout, in_level=in_level, low_level=low_level,
                             low_level_channels=low_level_channels, decoder_channels=decoder_channels,
                             separable=separable, conv_bias=conv_bias, depthwise_relu=depthwise_relu,
                             align_corners=align_corners)


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``DeepLabV3P`` checkpoint names (``head.aspp.*``, ``head.decoder.*``).

    PaddleSeg's separable convs have no ReLU after the depthwise conv-BN and every conv before a
    BatchNorm but the image-pooling one has a bias: the config must say ``separable: true``,
    ``depthwise_relu: false`` and ``conv_bias: true``.
    """
    options = with_defaults(deeplabv3p, options)
    require_options("PaddleSeg DeepLabV3P", options, separable=True, depthwise_relu=False, conv_bias=True)
    names = paddleseg_aspp_names(keys, options, "PaddleSeg DeepLabV3P", separable=True)
    decoder = "head.decoder"
    names.update(conv_bn_names("low_project", f"{decoder}.conv_bn_relu1._conv", f"{decoder}.conv_bn_relu1._batch_norm",
                               True))
    for index, block in enumerate((f"{decoder}.conv_bn_relu2", f"{decoder}.conv_bn_relu3")):
        names.update(conv_bn_names(f"fuse.{index}.0", f"{block}.depthwise_conv._conv",
                                   f"{block}.depthwise_conv._batch_norm", True))
        names.update(conv_bn_names(f"fuse.{index}.1", f"{block}.piontwise_conv._conv",
                                   f"{block}.piontwise_conv._batch_norm", True))
    names.update(conv_names("classifier", f"{decoder}.conv"))
    return checked_names(names, keys, "PaddleSeg DeepLabV3P")


@hookimpl
def semseg_register_decoders(register):
    """Register the DeepLabv3+ decoder."""
    register(
        "deeplabv3p",
        deeplabv3p,
        description="DeepLabv3+: ASPP plus a decoder refining it with stride-4 features (Chen et al. 2018)",
        options={
            **ASPP_OPTIONS,
            "low_level": "backbone level of the decoder's low-level features; null: the stride closest to 4",
            "low_level_channels": "channels of the 1×1 projection of the low-level features",
            "decoder_channels": "channels of the decoder's two 3×3 convs",
            "separable": "depthwise-separable atrous convs in ASPP and in the decoder, as in the paper",
            "depthwise_relu": "a ReLU after the depthwise conv-BN of each separable conv; false: conv-BN only, "
                              "as PaddleSeg's SeparableConvBNReLU",
            "align_corners": "align_corners of the bilinear upsampling of the ASPP output to the low level "
                             "(PaddleSeg: its model's align_corners)",
        },
        weight_sources={"paddleseg": paddleseg_names},
    )
