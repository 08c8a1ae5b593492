"""Registers the GINet decoder (the model lives in ``ginet_impl``; paddle is imported on build only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.plugins.decoders.levels import (
    BATCHNORM_TENSORS, checked_names, conv_bn_names, conv_names, paddleseg_aux_names, require_options, with_defaults,
)


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


def _batchnorm_names(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{tensor}": f"{theirs}.{tensor}" for tensor in BATCHNORM_TENSORS}


def _paddleseg_jpu_names() -> dict[str, str]:
    """PaddleSeg's ``jpu.conv3/4/5`` are our levels finest first; its ``jpu.dilation{i + 1}`` our branch i
    (depthwise conv, BN, pointwise conv, BN)."""
    names: dict[str, str] = {}
    for index, level in enumerate(("conv3", "conv4", "conv5")):
        names.update(conv_bn_names(f"jpu.reduce.{index}", f"jpu.{level}._conv", f"jpu.{level}._batch_norm", False))
    for index in range(4):
        ours, depthwise, pointwise = (f"jpu.branches.{index}", f"jpu.dilation{index + 1}.depthwise_conv",
                                      f"jpu.dilation{index + 1}.piontwise_conv")
        names.update(conv_names(f"{ours}.0", f"{depthwise}._conv", bias=False))
        names.update(_batchnorm_names(f"{ours}.1", f"{depthwise}._batch_norm"))
        names.update(conv_names(f"{ours}.2", f"{pointwise}._conv", bias=False))
        names.update(_batchnorm_names(f"{ours}.3", f"{pointwise}._batch_norm"))
    return names


def _graph_conv_names(ours: str, theirs: str) -> dict[str, str]:
    return {**conv_names(f"{ours}.node_conv", f"{theirs}.conv1"),
            **conv_names(f"{ours}.state_conv", f"{theirs}.conv2", bias=False)}


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``GINet`` checkpoint names (``jpu.*``, ``head.*``); its ``auxlayer``
    (level 2, no bias on its 3×3 conv) fills the core's auxiliary head. Its class embeddings
    ``head.inp`` are a (frozen) parameter of the checkpoint and fill ours.

    The config must say ``context_weight: 0`` (PaddleSeg has no class centroids), ``conv_bias: false``
    and, with the JPU, ``jpu_deepest_first: true`` and ``jpu_align_corners: true``.
    """
    options = with_defaults(ginet, options)
    present = set(keys)
    if "head.gloru.conv_theta.weight" not in present:
        raise SemsegError("these are not PaddleSeg GINet weights: no tensor 'head.gloru.conv_theta.weight'")
    jpu = bool(options["jpu"])
    if jpu != ("jpu.conv5._conv.weight" in present):
        raise SemsegError(f"PaddleSeg GINet weights {'without' if jpu else 'with'} a JPU need decoder option "
                          f"jpu: {str(not jpu).lower()}")
    require_options("PaddleSeg GINet", options, context_weight=0, conv_bias=False,
                    **({"jpu_deepest_first": True, "jpu_align_corners": True} if jpu else {}))
    unit, graph = "head.gloru", "head.gloru.graph"
    names = {"embeddings": "head.inp"}
    for ours, theirs in (("embed.0", "head.fc1.0"), ("embed.3", "head.fc2.0")):
        names.update(conv_names(ours, theirs))
    for ours, theirs in (("embed.1", "head.fc1.1"), ("embed.4", "head.fc2.1"), ("interaction.norm", f"{unit}.bn")):
        names.update(_batchnorm_names(ours, theirs))
    names.update(conv_bn_names("conv", "head.conv5._conv", "head.conv5._batch_norm", False))
    names.update(conv_names("interaction.project", f"{unit}.conv_theta"))
    names.update(conv_names("interaction.reduce", f"{unit}.conv_phi"))
    names.update(_graph_conv_names("interaction.visual_gcn", f"{graph}.vis_gcn"))
    names.update(_graph_conv_names("interaction.semantic_gcn", f"{graph}.word_gcn"))
    for ours, theirs in (("query", "query_conv"), ("key", "key_conv"), ("visual_value", "value_conv_vis"),
                         ("semantic_value", "value_conv_word")):
        names.update(conv_names(f"interaction.interaction.{ours}", f"{graph}.transfer.{theirs}"))
    names.update({"interaction.gamma_visual": f"{graph}.gamma_vis",
                  "interaction.gamma_semantic": f"{graph}.gamma_word"})
    names.update(conv_names("interaction.extend", f"{unit}.extend_dim", bias=False))
    names.update(conv_names("classifier", "head.conv6.1"))
    if jpu:
        names.update(_paddleseg_jpu_names())
    names = checked_names(names, keys, "PaddleSeg GINet")
    return {**names, **paddleseg_aux_names(keys, "auxlayer")}


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
