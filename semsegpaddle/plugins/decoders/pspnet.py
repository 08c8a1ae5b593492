"""PSPNet (Zhao et al., CVPR 2017, "Pyramid Scene Parsing Network"): registration.

Imports no paddle: the model lives in ``pspnet_impl`` and is imported when a model is built.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.plugins.decoders.levels import (
    checked_names, conv_bn_names, conv_names, indexed_count, paddleseg_aux_names, require_options, with_defaults,
)


def pspnet(feature_info, num_classes: int, *, bins: list[int] = (1, 2, 3, 6), channels: int = 512,
           branch_channels: int | None = None, dropout: float = 0.1, in_level: int = -1,
           conv_bias: bool = False, pool_order: str = "bins", pooling: str = "adaptive",
           align_corners: bool = False):
    """PSPNet head on the backbone's ``feature_info``: pyramid pooling, 3×3 bottleneck, classifier."""
    from semsegpaddle.plugins.decoders.pspnet_impl import PSPNetHead

    return PSPNetHead(feature_info, num_classes, bins=bins, channels=channels, branch_channels=branch_channels,
                      dropout=dropout, in_level=in_level, conv_bias=conv_bias, pool_order=pool_order,
                      pooling=pooling, align_corners=align_corners)


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``PSPNet`` checkpoint names (``head.psp_module.*``, ``head.conv.*``),
    plus its ``head.auxlayer`` as the core's auxiliary head when the checkpoint has one.

    PaddleSeg's PPModule concatenates the pooled maps in reverse bin order and gives every conv a
    bias: the config must say ``pool_order: reversed`` and ``conv_bias: true``.
    """
    options = with_defaults(pspnet, options)
    require_options("PaddleSeg PSPNet", options, pool_order="reversed", pooling="adaptive", conv_bias=True)
    module = "head.psp_module"
    stages = indexed_count(keys, f"{module}.stages.")
    if stages != len(options["bins"]):
        raise SemsegError(f"the PaddleSeg PSPNet weights have {stages} pooling branches, the config's bins "
                          f"{list(options['bins'])} give {len(options['bins'])}")
    names: dict[str, str] = {}
    for index in range(len(options["bins"])):
        stage = f"{module}.stages.{index}.1"
        names.update(conv_bn_names(f"pyramid.branches.{index}.1", f"{stage}._conv", f"{stage}._batch_norm", True))
    names.update(conv_bn_names("bottleneck", f"{module}.conv_bn_relu2._conv", f"{module}.conv_bn_relu2._batch_norm",
                               True))
    names.update(conv_names("classifier", "head.conv"))
    names = checked_names(names, keys, "PaddleSeg PSPNet")
    return {**names, **paddleseg_aux_names(keys)}


@hookimpl
def semseg_register_decoders(register):
    """Register the PSPNet decoder."""
    register(
        "pspnet",
        pspnet,
        description="PSPNet: pyramid pooling module over bins of the deepest level (Zhao et al. 2017)",
        options={
            "bins": "output sizes of the pools, one branch each",
            "channels": "channels of the 3×3 bottleneck after the concatenation (PaddleSeg: 1024)",
            "branch_channels": "channels of each pooling branch; null: input channels / number of bins",
            "dropout": "dropout before the classifier",
            "in_level": "backbone level fed to the pyramid pooling (-1: the deepest)",
            "conv_bias": "give the convs before BatchNorm a bias, as PaddleSeg does",
            "pool_order": "order of the pooled maps after the input in the concatenation: bins (as listed) "
                          "or reversed (PaddleSeg's PPModule)",
            "pooling": "how each branch pools to bin × bin: adaptive (adaptive average pooling) or fixed_kernel "
                       "(SemSegPaddle's dygraph PSPNet: kernel and stride size // bin + 1, padding excluded)",
            "align_corners": "align_corners of the bilinear upsampling of the pooled maps (PaddleSeg: its "
                             "model's align_corners)",
        },
        weight_sources={"paddleseg": paddleseg_names},
    )
