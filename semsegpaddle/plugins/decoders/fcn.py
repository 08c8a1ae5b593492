"""FCN head (Long et al., CVPR 2015, "Fully Convolutional Networks"): registration.

Imports no paddle: the model lives in ``fcn_impl`` and is imported when a model is built.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.plugins.decoders.levels import (
    checked_names, conv_bn_names, conv_names, require_options, torchvision_aux_names, with_defaults,
)


def fcn(feature_info, num_classes: int, *, channels: int | None = None, dropout: float = 0.1, in_level: int = -1,
        conv_bias: bool = False):
    """FCN head on the backbone's ``feature_info``: 3×3 conv-BN-ReLU, dropout, 1×1 classifier."""
    from semsegpaddle.plugins.decoders.fcn_impl import FCNHead

    return FCNHead(feature_info, num_classes, channels=channels, dropout=dropout, in_level=in_level,
                   conv_bias=conv_bias)


def torchvision_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → torchvision ``FCN`` checkpoint names: ``classifier`` is its ``FCNHead`` (conv 0,
    BN 1, classifier 4); ``aux_classifier`` fills the core's auxiliary head when present. The config
    must say ``conv_bias: false`` (torchvision's 3×3 conv has no bias)."""
    options = with_defaults(fcn, options)
    require_options("torchvision FCN", options, conv_bias=False)
    names = conv_bn_names("conv", "classifier.0", "classifier.1", False)
    names.update(conv_names("classifier", "classifier.4"))
    names = checked_names(names, keys, "torchvision FCN")
    return {**names, **torchvision_aux_names(keys)}


@hookimpl
def semseg_register_decoders(register):
    """Register the FCN decoder."""
    register(
        "fcn",
        fcn,
        description="FCN: one 3×3 conv-BN-ReLU and a 1×1 classifier on the deepest level (torchvision's FCNHead)",
        options={
            "channels": "channels of the 3×3 conv-BN-ReLU; null: a quarter of the input channels",
            "dropout": "dropout before the classifier",
            "in_level": "backbone level the head reads (-1: the deepest)",
            "conv_bias": "give the 3×3 conv before BatchNorm a bias (torchvision: none)",
        },
        weight_sources={"torchvision": torchvision_names},
    )
