"""PSPNet (Zhao et al., CVPR 2017, "Pyramid Scene Parsing Network"): registration.

Imports no paddle: the model lives in ``pspnet_impl`` and is imported when a model is built.
"""
from __future__ import annotations

from semsegpaddle import hookimpl


def pspnet(feature_info, num_classes: int, *, bins: list[int] = (1, 2, 3, 6), channels: int = 512,
           branch_channels: int | None = None, dropout: float = 0.1, in_level: int = -1,
           conv_bias: bool = False):
    """PSPNet head on the backbone's ``feature_info``: pyramid pooling, 3×3 bottleneck, classifier."""
    from semsegpaddle.plugins.decoders.pspnet_impl import PSPNetHead

    return PSPNetHead(feature_info, num_classes, bins=bins, channels=channels, branch_channels=branch_channels,
                      dropout=dropout, in_level=in_level, conv_bias=conv_bias)


@hookimpl
def semseg_register_decoders(register):
    """Register the PSPNet decoder."""
    register(
        "pspnet",
        pspnet,
        description="PSPNet: pyramid pooling module over bins of the deepest level (Zhao et al. 2017)",
        options={
            "bins": "output sizes of the adaptive average pools, one branch each",
            "channels": "channels of the 3×3 bottleneck after the concatenation (PaddleSeg: 1024)",
            "branch_channels": "channels of each pooling branch; null: input channels / number of bins",
            "dropout": "dropout before the classifier",
            "in_level": "backbone level fed to the pyramid pooling (-1: the deepest)",
            "conv_bias": "give the convs before BatchNorm a bias, as PaddleSeg does",
        },
    )
