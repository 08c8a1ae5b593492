"""PSPNet (Zhao et al., CVPR 2017, "Pyramid Scene Parsing Network"): the pyramid pooling head."""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU, resize_to, spatial_size
from semsegpaddle.plugins.decoders.levels import check_dropout, check_positive, check_positive_list, level_index


class PyramidPooling(nn.Layer):
    """Pyramid pooling module: per bin size b, adaptive average pooling to b×b → 1×1 conv-BN-ReLU →
    bilinear upsampling back; the input and every branch concatenated along channels."""

    def __init__(self, in_channels: int, branch_channels: int, bins: list[int], bias: bool = False) -> None:
        super().__init__()
        self.branches = nn.LayerList([
            nn.Sequential(nn.AdaptiveAvgPool2D(b), ConvBNReLU(in_channels, branch_channels, 1, bias=bias))
            for b in bins
        ])
        self.out_channels = in_channels + branch_channels * len(bins)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        size = spatial_size(x)
        return paddle.concat([x] + [resize_to(branch(x), size) for branch in self.branches], axis=1)


class PSPNetHead(Decoder):
    """PSPNet head: pyramid pooling on one backbone level, 3×3 conv-BN-ReLU bottleneck, dropout,
    1×1 classifier. Each branch reduces to ``in_channels // len(bins)`` channels unless
    ``branch_channels`` is given (the paper's 1/N reduction)."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, bins: list[int] = (1, 2, 3, 6),
                 channels: int = 512, branch_channels: int | None = None, dropout: float = 0.1,
                 in_level: int = -1, conv_bias: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        self.bins = check_positive_list("bins", bins)
        check_positive("channels", channels)
        check_dropout(dropout)
        in_channels = feature_info[self.in_level].channels
        if branch_channels is None:
            branch_channels = in_channels // len(self.bins)
            if branch_channels < 1:
                raise ValueError(f"bins={self.bins!r}: {len(self.bins)} branches cannot share the "
                                 f"{in_channels} input channels; set branch_channels")
        check_positive("branch_channels", branch_channels)
        self.pyramid = PyramidPooling(in_channels, branch_channels, self.bins, bias=conv_bias)
        self.bottleneck = ConvBNReLU(self.pyramid.out_channels, channels, 3, bias=conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        return self.classifier(self.dropout(self.bottleneck(self.pyramid(features[self.in_level]))))
