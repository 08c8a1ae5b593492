"""DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution"): registration.

Imports no paddle: the model lives in ``deeplab_impl`` and is imported when a model is built, so
``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.common.lazy import lazy_attributes
from semsegpaddle.plugins.decoders.levels import (
    checked_names, conv_bn_names, conv_names, indexed_count, require_options, torchvision_aux_names, with_defaults,
)

#: names that used to be defined here, now in deeplab_impl (served lazily by ``__getattr__``)
_HEAD_NAMES = ("DeepLabV3", "ASPP", "ASPPPooling", "paper_rates")


def deeplabv3(feature_info, num_classes: int, *, channels: int = 256, atrous_rates: list[int] | None = None,
              dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False, refine_conv: bool = False):
    """DeepLabv3 head on the backbone's ``feature_info``: ASPP with image pooling, 1×1 classifier."""
    from semsegpaddle.plugins.decoders.deeplab_impl import DeepLabV3

    return DeepLabV3(feature_info, num_classes, channels=channels, atrous_rates=atrous_rates,
                     dropout=dropout, in_level=in_level, conv_bias=conv_bias, refine_conv=refine_conv)


__getattr__ = lazy_attributes("semsegpaddle.plugins.decoders.deeplab_impl", _HEAD_NAMES)


def atrous_branch_count(options: Mapping[str, Any]) -> int:
    """How many atrous branches the ASPP of these (defaults-filled) options builds (null: the paper's three)."""
    rates = options.get("atrous_rates")
    return 3 if rates is None else len(rates)


def _check_branch_count(source: str, found: int, options: Mapping[str, Any], extra: int) -> None:
    """The checkpoint's ASPP must have as many branches as ours: ``extra`` besides the atrous ones."""
    atrous = atrous_branch_count(options)
    if found != atrous + extra:
        raise SemsegError(f"the {source} ASPP has {max(found - extra, 0)} atrous branches, the config's "
                          f"atrous_rates give {atrous}: set atrous_rates to its rates")


def paddleseg_aspp_names(keys: Sequence[str], options: Mapping[str, Any], source: str,
                         separable: bool) -> dict[str, str]:
    """Our ``aspp.*`` names → PaddleSeg 2.8 ``head.aspp.*`` (``layers.ASPPModule`` with image pooling,
    aspp_ratios starting with 1). ``separable``: its atrous blocks are ``SeparableConvBNReLU``."""
    module = "head.aspp"
    _check_branch_count(source, indexed_count(keys, f"{module}.aspp_blocks."), options, extra=1)
    count = atrous_branch_count(options)
    names = conv_bn_names("aspp.branches.0", f"{module}.aspp_blocks.0._conv", f"{module}.aspp_blocks.0._batch_norm",
                          True)
    for index in range(1, count + 1):
        block, ours = f"{module}.aspp_blocks.{index}", f"aspp.branches.{index}"
        if separable:
            names.update(conv_bn_names(f"{ours}.0", f"{block}.depthwise_conv._conv",
                                       f"{block}.depthwise_conv._batch_norm", True))
            names.update(conv_bn_names(f"{ours}.1", f"{block}.piontwise_conv._conv",
                                       f"{block}.piontwise_conv._batch_norm", True))
        else:
            names.update(conv_bn_names(ours, f"{block}._conv", f"{block}._batch_norm", True))
    pool = f"{module}.global_avg_pool.1"
    names.update(conv_bn_names(f"aspp.branches.{count + 1}.conv", f"{pool}._conv", f"{pool}._batch_norm", False))
    names.update(conv_bn_names("aspp.project", f"{module}.conv_bn_relu._conv", f"{module}.conv_bn_relu._batch_norm",
                               True))
    return names


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``DeepLabV3`` checkpoint names (``head.aspp.*``, ``head.cls.*``).

    Its convs before BatchNorm have a bias (not the image-pooling one): the config must say
    ``conv_bias: true``; its ``aspp_ratios`` (1, r1, r2, r3) are our ``atrous_rates`` [r1, r2, r3].
    """
    options = with_defaults(deeplabv3, options)
    require_options("PaddleSeg DeepLabV3", options, conv_bias=True, refine_conv=False)
    names = paddleseg_aspp_names(keys, options, "PaddleSeg DeepLabV3", separable=False)
    names.update(conv_names("classifier", "head.cls"))
    return checked_names(names, keys, "PaddleSeg DeepLabV3")


def torchvision_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → torchvision ``DeepLabV3`` checkpoint names: ``classifier`` is its ``DeepLabHead``
    (ASPP, 3×3 conv-BN-ReLU, 1×1 conv), ``aux_classifier`` (an ``FCNHead``) fills the core's
    auxiliary head when present.

    The config must say ``refine_conv: true`` (the 3×3 conv) and ``conv_bias: false``; torchvision
    drops out 0.5 after the projection (``dropout: 0.5`` to train alike).
    """
    options = with_defaults(deeplabv3, options)
    require_options("torchvision DeepLabV3", options, conv_bias=False, refine_conv=True)
    aspp = "classifier.0"
    _check_branch_count("torchvision DeepLabV3", indexed_count(keys, f"{aspp}.convs."), options, extra=2)
    count = atrous_branch_count(options)
    names: dict[str, str] = {}
    for index in range(count + 1):  # the 1×1 branch, then the atrous ones: conv, BN, ReLU
        names.update(conv_bn_names(f"aspp.branches.{index}", f"{aspp}.convs.{index}.0", f"{aspp}.convs.{index}.1",
                                   False))
    pool = f"{aspp}.convs.{count + 1}"  # pool, conv, BN, ReLU
    names.update(conv_bn_names(f"aspp.branches.{count + 1}.conv", f"{pool}.1", f"{pool}.2", False))
    names.update(conv_bn_names("aspp.project", f"{aspp}.project.0", f"{aspp}.project.1", False))
    names.update(conv_bn_names("refine", "classifier.1", "classifier.2", False))
    names.update(conv_names("classifier", "classifier.4"))
    names = checked_names(names, keys, "torchvision DeepLabV3")
    return {**names, **torchvision_aux_names(keys)}


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
        options={
            **ASPP_OPTIONS,
            "refine_conv": "a 3×3 conv-BN-ReLU between ASPP and the classifier, as torchvision's DeepLabHead",
        },
        weight_sources={"paddleseg": paddleseg_names, "torchvision": torchvision_names},
    )
