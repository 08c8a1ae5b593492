"""DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution"): registration.

Imports no paddle: the model lives in ``deeplab_impl`` and is imported when a model is built, so
``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations


from semsegpaddle import hookimpl
from semsegpaddle.core.common.lazy import lazy_attributes

#: names that used to be defined here, now in deeplab_impl (served lazily by ``__getattr__``)
_HEAD_NAMES = ("DeepLabV3", "ASPP", "ASPPPooling", "paper_rates")


def deeplabv3(feature_info, num_classes: int, *, channels: int = 256, atrous_rates: list[int] | None = None,
              dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False):
    """DeepLabv3 head on the backbone's ``feature_info``: ASPP with image pooling, 1×1 classifier."""
    from semsegpaddle.plugins.decoders.deeplab_impl import DeepLabV3

    return DeepLabV3(feature_info, num_classes, channels=channels, atrous_rates=atrous_rates,
                     dropout=dropout, in_level=in_level, conv_bias=conv_bias)


__getattr__ = lazy_attributes("semsegpaddle.plugins.decoders.deeplab_impl", _HEAD_NAMES)


#: option descriptions shared with DeepLabv3+ (whose ASPP is the same)
ASPP_OPTIONS = {
    "channels": "channels of every ASPP branch and of the projection",
    "atrous_rates": "rates of the 3×3 atrous branches; null: the paper's (6, 12, 18) scaled to the feature stride",
    "dropout": "dropout after the ASPP projection",
    "in_level": "backbone level fed to ASPP (-1: the deepest)",
    "conv_bias": "give the convs before BatchNorm a bias, as PaddleSeg does (not the image-pooling conv)",
}


@hookimpl
def semseg_register_decoders(register):
    """Register the DeepLabv3 decoder."""
    register(
        "deeplabv3",
        deeplabv3,
        description="DeepLabv3: atrous spatial pyramid pooling with image-level features (Chen et al. 2017)",
        options=ASPP_OPTIONS,
    )
