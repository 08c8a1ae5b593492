"""Joint Pyramid Upsampling (Wu et al. 2019, "FastFCN: Rethinking Dilated Convolution in the
Backbone for Semantic Segmentation"): fuses three backbone levels at the finest one's resolution."""
from __future__ import annotations

from typing import Sequence

import paddle
from paddle import nn

from semsegpaddle.core.model.layers import ConvBNReLU, resize_to, spatial_size


class JPUSeparableConv(nn.Sequential):
    """FastFCN's separable convolution: depthwise k×k (dilated) conv → BatchNorm → pointwise 1×1 conv →
    BatchNorm → ReLU (no ReLU between depthwise and pointwise, unlike the core's SeparableConvBNReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = False) -> None:
        bias_attr = None if bias else False
        super().__init__(
            nn.Conv2D(in_channels, in_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                      dilation=dilation, groups=in_channels, bias_attr=bias_attr),
            nn.BatchNorm2D(in_channels),
            nn.Conv2D(in_channels, out_channels, 1, bias_attr=bias_attr),
            nn.BatchNorm2D(out_channels),
            nn.ReLU(),
        )


class JPU(nn.Layer):
    """Each of three levels → 3×3 conv-BN-ReLU to ``width``; the two coarser ones are upsampled to the
    finest one's size and all three concatenated; then parallel separable convolutions with
    ``dilations`` (1, 2, 4, 8 in the paper), concatenated: ``width × len(dilations)`` channels at the
    stride of the finest input level.

    ``deepest_first`` concatenates the three levels deepest first and ``align_corners`` upsamples with
    aligned corners, as FastFCN and PaddleSeg do; the separable convolutions' weights depend on the order.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 512, dilations: Sequence[int] = (1, 2, 4, 8),
                 conv_bias: bool = False, deepest_first: bool = False, align_corners: bool = False) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"JPU fuses three levels, got {len(in_channels)}")
        self.deepest_first = deepest_first
        self.align_corners = align_corners
        self.reduce = nn.LayerList([ConvBNReLU(c, width, 3, bias=conv_bias) for c in in_channels])
        self.branches = nn.LayerList(
            [JPUSeparableConv(3 * width, width, 3, dilation=d, bias=conv_bias) for d in dilations])
        self.out_channels = width * len(dilations)

    def forward(self, levels: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """``levels``: three N×Cᵢ×Hᵢ×Wᵢ maps, finest first."""
        reduced = [conv(x) for conv, x in zip(self.reduce, levels)]
        size = spatial_size(reduced[0])
        aligned = [reduced[0]] + [resize_to(x, size, self.align_corners) for x in reduced[1:]]
        fused = paddle.concat(aligned[::-1] if self.deepest_first else aligned, axis=1)
        return paddle.concat([branch(fused) for branch in self.branches], axis=1)
