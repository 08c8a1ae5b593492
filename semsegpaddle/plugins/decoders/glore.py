"""Registers the GloRe decoder (the model lives in ``glore_impl``; paddle is imported on build only)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.plugins.decoders.levels import (
    BATCHNORM_TENSORS, checked_names, conv_bn_names, conv_names, paddleseg_aux_names, require_options, with_defaults,
)


def glore(feature_info, num_classes, *, channels: int = 512, num_state: int = 128, num_node: int = 64,
          normalize: bool = False, dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False):
    """GloRe head (Chen et al. 2019): conv-BN-ReLU, Global Reasoning unit, classifier."""
    from semsegpaddle.plugins.decoders.glore_impl import GloReHead

    return GloReHead(feature_info, num_classes, channels=channels, num_state=num_state, num_node=num_node,
                     normalize=normalize, dropout=dropout, in_level=in_level, conv_bias=conv_bias)


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``GloRe`` checkpoint names (``head.conv_bn_relu``, ``head.gru_module``,
    ``head.classifier``); its ``head.auxlayer`` (level 2, a bias on its 3×3 conv: ``model.aux.conv_bias:
    true``) fills the core's auxiliary head. The config must keep ``conv_bias`` and ``normalize`` false."""
    options = with_defaults(glore, options)
    require_options("PaddleSeg GloRe", options, conv_bias=False, normalize=False)
    unit = "head.gru_module"
    names = conv_bn_names("conv", "head.conv_bn_relu._conv", "head.conv_bn_relu._batch_norm", False)
    names.update(conv_names("reasoning.reduce", f"{unit}.reduction_dim"))
    names.update(conv_names("reasoning.project", f"{unit}.projection_mat"))
    names.update(conv_names("reasoning.gcn.node_conv", f"{unit}.gcn.conv1"))
    names.update(conv_names("reasoning.gcn.state_conv", f"{unit}.gcn.conv2", bias=False))
    names.update(conv_names("reasoning.extend", f"{unit}.extend_dim", bias=False))
    names.update({f"reasoning.norm.{tensor}": f"{unit}.extend_bn.{tensor}" for tensor in BATCHNORM_TENSORS})
    names.update(conv_names("classifier", "head.classifier"))
    names = checked_names(names, keys, "PaddleSeg GloRe")
    return {**names, **paddleseg_aux_names(keys)}


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
        weight_sources={"paddleseg": paddleseg_names},
    )
