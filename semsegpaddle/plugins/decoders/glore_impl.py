"""GloRe (Chen et al., CVPR 2019, "Graph-Based Global Reasoning Networks"): the Global Reasoning unit
and the segmentation head built around it."""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU
from semsegpaddle.plugins.decoders.graph_ops import GraphConv, flatten_pixels, pixel_count, unflatten_like
from semsegpaddle.plugins.decoders.levels import check_dropout, check_positive, level_index


class GlobalReasoningUnit(nn.Layer):
    """Pixels → graph → pixels, added back to the input (section 3 of the paper).

    A 1×1 conv reduces the C input channels to ``num_state``; another predicts, per pixel, its
    weight on each of ``num_node`` nodes (the projection B). Node states are V = X Bᵀ (averaged over
    pixels with ``normalize``); the graph convolution reasons on them; Bᵀ projects them back to the
    pixels; a 1×1 conv + BatchNorm restores C channels, and the result is added to the input.
    """

    def __init__(self, channels: int, num_state: int, num_node: int, normalize: bool = False,
                 conv_bias: bool = False) -> None:
        super().__init__()
        self.num_state = num_state
        self.normalize = normalize
        self.reduce = nn.Conv2D(channels, num_state, 1)
        self.project = nn.Conv2D(channels, num_node, 1)
        self.gcn = GraphConv(num_state, num_node)
        self.extend = nn.Conv2D(num_state, channels, 1, bias_attr=None if conv_bias else False)
        self.norm = nn.BatchNorm2D(channels, epsilon=1e-4)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        states = flatten_pixels(self.reduce(x))  # N×S×L
        projection = flatten_pixels(self.project(x))  # N×K×L
        nodes = paddle.matmul(states, projection, transpose_y=True)  # N×S×K
        if self.normalize:
            nodes = nodes / pixel_count(x)
        y = paddle.matmul(self.gcn(nodes), projection)  # N×S×L
        return x + self.norm(self.extend(unflatten_like(y, x)))


class GloReHead(Decoder):
    """GloRe segmentation head: 1×1 conv-BN-ReLU from one backbone level to ``channels``, the Global
    Reasoning unit, dropout, 1×1 classifier (the layout of PaddleSeg's GloRe; its auxiliary FCN
    head on level 2 is the core's ``model.aux``)."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 512,
                 num_state: int = 128, num_node: int = 64, normalize: bool = False, dropout: float = 0.1,
                 in_level: int = -1, conv_bias: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        for option, value in (("channels", channels), ("num_state", num_state), ("num_node", num_node)):
            check_positive(option, value)
        check_dropout(dropout)
        self.conv = ConvBNReLU(feature_info[in_level].channels, channels, 1, bias=conv_bias)
        self.reasoning = GlobalReasoningUnit(channels, num_state, num_node, normalize, conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        return self.classifier(self.dropout(self.reasoning(self.conv(features[self.in_level]))))
