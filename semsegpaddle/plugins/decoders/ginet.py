"""Registers the GINet decoder (the model lives in ``ginet_impl``; paddle is imported on build only)."""
from __future__ import annotations

from pathlib import Path

from semsegpaddle import hookimpl


def ginet(feature_info, num_classes, *, channels: int = 512, num_state: int = 256, num_node: int = 84,
          class_embeddings: Path | None = None, embedding_dim: int = 300, jpu: bool = True, jpu_width: int = 512,
          dropout: float = 0.1, context_weight: float = 0.2, conv_bias: bool = False):
    """GINet head (Wu et al. 2020): graph interaction between a visual and a semantic graph."""
    from semsegpaddle.plugins.decoders.ginet_impl import GINetHead

    return GINetHead(feature_info, num_classes, channels=channels, num_state=num_state, num_node=num_node,
                     class_embeddings=class_embeddings, embedding_dim=embedding_dim, jpu=jpu, jpu_width=jpu_width,
                     dropout=dropout, context_weight=context_weight, conv_bias=conv_bias)


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
            "jpu": "fuse the last three backbone levels with Joint Pyramid Upsampling (FastFCN) first",
            "jpu_width": "channels of each JPU branch (the head gets 4 × jpu_width)",
            "dropout": "dropout before the classifier",
            "context_weight": "loss weight of the semantic-context output (0: no such output)",
            "conv_bias": "keep a bias on convolutions followed by BatchNorm (PaddleSeg's GINet has none)",
        },
    )
