"""DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution"): ASPP on the deepest feature map."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from semsegpaddle import hookimpl
from semsegpaddle.core.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.layers import ConvBNReLU, spatial_size

#: ASPP rates of the paper for output stride 16; they double at output stride 8.
_PAPER_RATES_OS16 = (6, 12, 18)


class ASPPPooling(nn.Layer):
    """Image-level features: global average pool → 1×1 conv-BN-ReLU → upsample to the input size."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.conv = ConvBNReLU(in_channels, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.interpolate(self.conv(self.pool(x)), size=spatial_size(x), mode="bilinear", align_corners=False)


class ASPP(nn.Layer):
    """Atrous spatial pyramid pooling: a 1×1 conv, one 3×3 atrous conv per rate, image pooling;
    concatenated and projected by a 1×1 conv-BN-ReLU (section 3.3 of the paper)."""

    def __init__(self, in_channels: int, channels: int, rates: list[int], dropout: float) -> None:
        super().__init__()
        branches = [ConvBNReLU(in_channels, channels, 1)]
        branches += [ConvBNReLU(in_channels, channels, 3, dilation=rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, channels))
        self.branches = nn.LayerList(branches)
        self.project = ConvBNReLU(channels * len(branches), channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.dropout(self.project(paddle.concat([branch(x) for branch in self.branches], axis=1)))


def paper_rates(stride: int) -> list[int]:
    """The paper's ASPP rates scaled to a feature stride (16 → 6, 12, 18; 8 → 12, 24, 36)."""
    return [max(1, rate * 16 // stride) for rate in _PAPER_RATES_OS16]


class DeepLabV3(Decoder):
    """DeepLabv3 head: ASPP on one backbone level, then a 1×1 classifier."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 256,
                 atrous_rates: list[int] | None = None, dropout: float = 0.1, in_level: int = -1) -> None:
        super().__init__()
        if not -len(feature_info) <= in_level < len(feature_info):
            raise ValueError(f"in_level {in_level} is out of range for a backbone with {len(feature_info)} levels")
        level = feature_info[in_level]
        rates = list(atrous_rates) if atrous_rates is not None else paper_rates(level.stride)
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"atrous_rates must be positive integers, got {rates}")
        self.in_level = in_level
        self.rates = rates
        self.aspp = ASPP(level.channels, channels, rates, dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        return self.classifier(self.aspp(features[self.in_level]))


@hookimpl
def semseg_register_decoders(register):
    """Register the DeepLabv3 decoder."""
    register(
        "deeplabv3",
        DeepLabV3,
        description="DeepLabv3: atrous spatial pyramid pooling with image-level features (Chen et al. 2017)",
        options={
            "channels": "channels of every ASPP branch and of the projection",
            "atrous_rates": "rates of the 3×3 atrous branches; null: the paper's (6, 12, 18) scaled to the feature stride",
            "dropout": "dropout after the ASPP projection",
            "in_level": "backbone level fed to ASPP (-1: the deepest)",
        },
    )
