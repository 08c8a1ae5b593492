"""FCN head (Long et al., CVPR 2015, "Fully Convolutional Networks"), as torchvision's ``FCNHead``
builds it on a dilated backbone: one 3×3 conv-BN-ReLU, dropout, a 1×1 classifier."""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU
from semsegpaddle.plugins.decoders.levels import check_bool, check_dropout, check_positive, level_index


class FCNHead(Decoder):
    """3×3 conv-BN-ReLU on one backbone level to ``channels`` (None: a quarter of its channels),
    dropout, 1×1 classifier. Output at that level's stride."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int | None = None,
                 dropout: float = 0.1, in_level: int = -1, conv_bias: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        in_channels = feature_info[self.in_level].channels
        if channels is None:
            channels = max(1, in_channels // 4)
        check_positive("channels", channels)
        check_dropout(dropout)
        check_bool("conv_bias", conv_bias)
        self.conv = ConvBNReLU(in_channels, channels, 3, bias=conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        return self.classifier(self.dropout(self.conv(features[self.in_level])))
