"""Registers the GloRe decoder (the model lives in ``glore_impl``; paddle is imported on build only)."""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError


def glore(feature_info, num_classes, *, channels: int = 512, num_state: int = 128, num_node: int = 64,
          normalize: bool = False, dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False):
    """GloRe head (Chen et al. 2019): conv-BN-ReLU, Global Reasoning unit, classifier."""
    from semsegpaddle.plugins.decoders.glore_impl import GloReHead

    return GloReHead(feature_info, num_classes, channels=channels, num_state=num_state, num_node=num_node,
                     normalize=normalize, dropout=dropout, in_level=in_level, conv_bias=conv_bias)


# ---------------------------------------------------------------------------------------------------
# PaddleSeg 2.8 checkpoints (paddleseg/models/glore.py, layers.AuxLayer)
# ---------------------------------------------------------------------------------------------------

#: the options under which our head computes what PaddleSeg's GloRe computes with the same weights
PADDLESEG_OPTIONS = {"conv_bias": False, "normalize": False}
_BATCHNORM = ("weight", "bias", "_mean", "_variance")


def _batchnorm(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{leaf}": f"{theirs}.{leaf}" for leaf in _BATCHNORM}


def _conv_bn(ours: str, theirs: str) -> dict[str, str]:
    """Our ConvBNReLU (a Sequential: conv, BN) from a PaddleSeg ConvBNReLU (``_conv``, ``_batch_norm``)."""
    return {f"{ours}.0.weight": f"{theirs}._conv.weight", **_batchnorm(f"{ours}.1", f"{theirs}._batch_norm")}


def _weight_bias(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}


def _aux_head(keys: set[str]) -> dict[str, str]:
    """The core's FCN aux head from GloRe's ``head.auxlayer`` (level 2; its 3×3 conv has a bias, so
    the model needs ``model.aux.conv_bias: true``)."""
    if "head.auxlayer.conv.weight" not in keys:
        return {}
    names = {**_conv_bn("aux_head.conv", "head.auxlayer.conv_bn_relu"),
             **_weight_bias("aux_head.classifier", "head.auxlayer.conv")}
    if "head.auxlayer.conv_bn_relu._conv.bias" in keys:
        names["aux_head.conv.0.bias"] = "head.auxlayer.conv_bn_relu._conv.bias"
    return names


def _option(options: Mapping[str, Any], name: str) -> Any:
    return options.get(name, inspect.signature(glore).parameters[name].default)


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our GloRe head's tensors (and the core's aux head's) from a PaddleSeg 2.8 GloRe checkpoint."""
    present = set(keys)
    if "head.gru_module.reduction_dim.weight" not in present:
        raise SemsegError("the weights do not look like PaddleSeg's GloRe (no head.gru_module.reduction_dim.weight)")
    wrong = [f"{name}: {str(value).lower()} (config: {str(_option(options, name)).lower()})"
             for name, value in PADDLESEG_OPTIONS.items() if _option(options, name) != value]
    if wrong:
        raise SemsegError(f"PaddleSeg GloRe weights need decoder options {', '.join(wrong)}")
    unit = "head.gru_module"
    names = {
        **_conv_bn("conv", "head.conv_bn_relu"),
        **_weight_bias("reasoning.reduce", f"{unit}.reduction_dim"),
        **_weight_bias("reasoning.project", f"{unit}.projection_mat"),
        **_weight_bias("reasoning.gcn.node_conv", f"{unit}.gcn.conv1"),
        "reasoning.gcn.state_conv.weight": f"{unit}.gcn.conv2.weight",
        "reasoning.extend.weight": f"{unit}.extend_dim.weight",
        **_batchnorm("reasoning.norm", f"{unit}.extend_bn"),
        **_weight_bias("classifier", "head.classifier"),
        **_aux_head(present),
    }
    absent = sorted(source for source in names.values() if source not in present)
    if absent:
        raise SemsegError(f"the PaddleSeg GloRe weights lack {len(absent)} tensors the head needs, "
                          f"e.g. {', '.join(absent[:3])}")
    return names


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
