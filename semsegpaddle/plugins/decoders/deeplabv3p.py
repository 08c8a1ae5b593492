"""DeepLabv3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution"): registration.

Imports no paddle: the model lives in ``deeplabv3p_impl`` and is imported when a model is built.
"""
from __future__ import annotations

from semsegpaddle import hookimpl
from semsegpaddle.plugins.decoders.deeplab import ASPP_OPTIONS


def deeplabv3p(feature_info, num_classes: int, *, channels: int = 256, atrous_rates: list[int] | None = None,
               dropout: float = 0.1, in_level: int = -1, low_level: int | None = None,
               low_level_channels: int = 48, decoder_channels: int = 256, separable: bool = True,
               conv_bias: bool = False):
    """DeepLabv3+ head on the backbone's ``feature_info``: ASPP, low-level decoder, classifier."""
    from semsegpaddle.plugins.decoders.deeplabv3p_impl import DeepLabV3PlusHead

    return DeepLabV3PlusHead(feature_info, num_classes, channels=channels, atrous_rates=atrous_rates,
                             dropout=dropout, in_level=in_level, low_level=low_level,
                             low_level_channels=low_level_channels, decoder_channels=decoder_channels,
                             separable=separable, conv_bias=conv_bias)


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
        },
    )
