"""Registers the GloRe decoder (the model lives in ``glore_impl``; paddle is imported on build only)."""
from __future__ import annotations

from semsegpaddle import hookimpl


def glore(feature_info, num_classes, *, channels: int = 512, num_state: int = 128, num_node: int = 64,
          normalize: bool = False, dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False):
    """GloRe head (Chen et al. 2019): conv-BN-ReLU, Global Reasoning unit, classifier."""
    from semsegpaddle.plugins.decoders.glore_impl import GloReHead

    return GloReHead(feature_info, num_classes, channels=channels, num_state=num_state, num_node=num_node,
                     normalize=normalize, dropout=dropout, in_level=in_level, conv_bias=conv_bias)


@hookimpl
def semseg_register_decoders(register):
    """Register the GloRe decoder."""
    register(
        "glore",
        glore,
        description="GloRe: graph-based global reasoning over projected pixel features (Chen et al. 2019)",
        options={
            "channels": "width of the conv-BN-ReLU before the reasoning unit, and of the unit itself",
            "num_state": "channels of each graph node (the reduced feature width)",
            "num_node": "number of graph nodes the pixels are projected onto",
            "normalize": "average node states over the pixels instead of summing them",
            "dropout": "dropout before the classifier",
            "in_level": "backbone level fed to the head (-1: the deepest)",
            "conv_bias": "keep a bias on convolutions followed by BatchNorm (PaddleSeg's GloRe has none)",
        },
    )
