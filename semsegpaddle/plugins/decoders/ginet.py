"""Registers the GINet decoder (the model lives in ``ginet_impl``; paddle is imported on build only)."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError


def ginet(feature_info, num_classes, *, channels: int = 512, num_state: int = 256, num_node: int = 84,
          class_embeddings: Path | None = None, embedding_dim: int = 300, embedding_init: str = "normal",
          train_embeddings: bool = True, jpu: bool = True, jpu_width: int = 512, jpu_deepest_first: bool = False,
          jpu_align_corners: bool = False, dropout: float = 0.1, context_weight: float = 0.2,
          conv_bias: bool = False):
    """GINet head (Wu et al. 2020): graph interaction between a visual and a semantic graph."""
    from semsegpaddle.plugins.decoders.ginet_impl import GINetHead

    return GINetHead(feature_info, num_classes, channels=channels, num_state=num_state, num_node=num_node,
                     class_embeddings=class_embeddings, embedding_dim=embedding_dim, embedding_init=embedding_init,
                     train_embeddings=train_embeddings, jpu=jpu, jpu_width=jpu_width,
                     jpu_deepest_first=jpu_deepest_first, jpu_align_corners=jpu_align_corners, dropout=dropout,
                     context_weight=context_weight, conv_bias=conv_bias)


# ---------------------------------------------------------------------------------------------------
# PaddleSeg 2.8 checkpoints (paddleseg/models/ginet.py, layers.JPU, layers.AuxLayer)
# ---------------------------------------------------------------------------------------------------

#: the options under which our head computes what PaddleSeg's GINet computes with the same weights
PADDLESEG_OPTIONS = {"conv_bias": False, "context_weight": 0, "jpu_deepest_first": True, "jpu_align_corners": True}
_BATCHNORM = ("weight", "bias", "_mean", "_variance")


def _batchnorm(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{leaf}": f"{theirs}.{leaf}" for leaf in _BATCHNORM}


def _conv_bn(ours: str, theirs: str) -> dict[str, str]:
    """Our ConvBNReLU (a Sequential: conv, BN) from a PaddleSeg ConvBN/ConvBNReLU (``_conv``, ``_batch_norm``)."""
    return {f"{ours}.0.weight": f"{theirs}._conv.weight", **_batchnorm(f"{ours}.1", f"{theirs}._batch_norm")}


def _weight_bias(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}


def _gcn(ours: str, theirs: str) -> dict[str, str]:
    return {**_weight_bias(f"{ours}.node_conv", f"{theirs}.conv1"),
            f"{ours}.state_conv.weight": f"{theirs}.conv2.weight"}


def _jpu() -> dict[str, str]:
    """Our JPU levels run finest first (its conv3, conv4, conv5); branch i is its dilation{i + 1}."""
    names = {}
    for i, level in enumerate(("conv3", "conv4", "conv5")):
        names.update(_conv_bn(f"jpu.reduce.{i}", f"jpu.{level}"))
    for i in range(4):
        theirs = f"jpu.dilation{i + 1}"
        names.update({f"jpu.branches.{i}.0.weight": f"{theirs}.depthwise_conv._conv.weight",
                      f"jpu.branches.{i}.2.weight": f"{theirs}.piontwise_conv._conv.weight",
                      **_batchnorm(f"jpu.branches.{i}.1", f"{theirs}.depthwise_conv._batch_norm"),
                      **_batchnorm(f"jpu.branches.{i}.3", f"{theirs}.piontwise_conv._batch_norm")})
    return names


def _aux_head(keys: set[str]) -> dict[str, str]:
    """The core's FCN aux head from GINet's ``auxlayer`` (level 2; its 3×3 conv has no bias)."""
    if "auxlayer.conv.weight" not in keys:
        return {}
    names = {**_conv_bn("aux_head.conv", "auxlayer.conv_bn_relu"),
             **_weight_bias("aux_head.classifier", "auxlayer.conv")}
    if "auxlayer.conv_bn_relu._conv.bias" in keys:
        names["aux_head.conv.0.bias"] = "auxlayer.conv_bn_relu._conv.bias"
    return names


def _option(options: Mapping[str, Any], name: str) -> Any:
    return options.get(name, inspect.signature(ginet).parameters[name].default)


def _check_options(options: Mapping[str, Any], jpu: bool) -> None:
    wrong = [f"{name}: {str(value).lower()} (config: {str(_option(options, name)).lower()})"
             for name, value in PADDLESEG_OPTIONS.items()
             if _option(options, name) != value and (jpu or not name.startswith("jpu_"))]
    if wrong:
        raise SemsegError(f"PaddleSeg GINet weights need decoder options {', '.join(wrong)}")


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our GINet head's tensors (and the core's aux head's) from a PaddleSeg 2.8 GINet checkpoint."""
    present = set(keys)
    if "head.gloru.conv_theta.weight" not in present:
        raise SemsegError("the weights do not look like PaddleSeg's GINet (no head.gloru.conv_theta.weight)")
    jpu = bool(_option(options, "jpu"))
    if jpu != ("jpu.conv5._conv.weight" in present):
        raise SemsegError(f"PaddleSeg GINet weights {'without' if jpu else 'with'} a JPU need decoder option "
                          f"jpu: {str(not jpu).lower()}")
    _check_options(options, jpu)
    gloru = "head.gloru"
    names = {
        "embeddings": "head.inp",
        **_weight_bias("embed.0", "head.fc1.0"), **_batchnorm("embed.1", "head.fc1.1"),
        **_weight_bias("embed.3", "head.fc2.0"), **_batchnorm("embed.4", "head.fc2.1"),
        **_conv_bn("conv", "head.conv5"),
        **_weight_bias("interaction.project", f"{gloru}.conv_theta"),
        **_weight_bias("interaction.reduce", f"{gloru}.conv_phi"),
        **_gcn("interaction.visual_gcn", f"{gloru}.graph.vis_gcn"),
        **_gcn("interaction.semantic_gcn", f"{gloru}.graph.word_gcn"),
        **_weight_bias("interaction.interaction.query", f"{gloru}.graph.transfer.query_conv"),
        **_weight_bias("interaction.interaction.key", f"{gloru}.graph.transfer.key_conv"),
        **_weight_bias("interaction.interaction.visual_value", f"{gloru}.graph.transfer.value_conv_vis"),
        **_weight_bias("interaction.interaction.semantic_value", f"{gloru}.graph.transfer.value_conv_word"),
        "interaction.gamma_visual": f"{gloru}.graph.gamma_vis",
        "interaction.gamma_semantic": f"{gloru}.graph.gamma_word",
        "interaction.extend.weight": f"{gloru}.extend_dim.weight",
        **_batchnorm("interaction.norm", f"{gloru}.bn"),
        **_weight_bias("classifier", "head.conv6.1"),
        **(_jpu() if jpu else {}),
        **_aux_head(present),
    }
    absent = sorted(source for source in names.values() if source not in present)
    if absent:
        raise SemsegError(f"the PaddleSeg GINet weights lack {len(absent)} tensors the head needs, "
                          f"e.g. {', '.join(absent[:3])}")
    return names


@hookimpl
def semseg_register_decoders(register):
    """Register the GINet decoder."""
    register(
        "ginet",
        ginet,
        description="GINet: graph interaction of visual and class-embedding graphs, semantic-context loss "
                    "(Wu et al. 2020)",
        options={
            "channels": "width of the 3×3 conv-BN-ReLU before the GI unit, and of the unit itself",
            "num_state": "channels of each graph node, visual and semantic",
            "num_node": "number of visual graph nodes the pixels are projected onto",
            "class_embeddings": ".npy file of num_classes × D class-name embeddings (fixed); null: learnable ones",
            "embedding_dim": "width D of the learnable class embeddings (ignored with class_embeddings)",
            "embedding_init": "start of the class embeddings without class_embeddings: normal (N(0, 1)) or "
                              "zeros (PaddleSeg's)",
            "train_embeddings": "train the class embeddings made without class_embeddings; false keeps them "
                                "at their start or loaded values, as PaddleSeg does",
            "jpu": "fuse the last three backbone levels with Joint Pyramid Upsampling (FastFCN) first",
            "jpu_width": "channels of each JPU branch (the head gets 4 × jpu_width)",
            "jpu_deepest_first": "concatenate the JPU's three levels deepest first (FastFCN's and PaddleSeg's "
                                 "order) instead of finest first",
            "jpu_align_corners": "upsample the JPU's coarser levels with aligned corners (as PaddleSeg)",
            "dropout": "dropout before the classifier",
            "context_weight": "loss weight of the semantic-context output (0: no such output and no class "
                              "centroids, as PaddleSeg's GINet)",
            "conv_bias": "keep a bias on convolutions followed by BatchNorm (PaddleSeg's GINet has none)",
        },
        weight_sources={"paddleseg": paddleseg_names},
    )
