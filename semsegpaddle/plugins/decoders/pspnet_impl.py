"""PSPNet (Zhao et al., CVPR 2017, "Pyramid Scene Parsing Network"): the pyramid pooling head."""
from __future__ import annotations

import paddle
from paddle import nn

from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU, resize_to, spatial_size
from semsegpaddle.plugins.decoders.levels import (
    check_bool, check_choice, check_dropout, check_positive, check_positive_list, level_index,
)

#: orders of the pooled maps after the input in the concatenation
POOL_ORDERS = ("bins", "reversed")
#: how a branch pools its input down to bin × bin
POOLINGS = ("adaptive", "fixed_kernel")


def fixed_kernel_weights(size: int | paddle.Tensor, bins: int) -> paddle.Tensor:
    """A bins × size matrix averaging the windows of a fixed-kernel average pool along one axis.

    The kernel and stride are ``size // bins + 1`` and the padding ``kernel * bins - size`` on each
    side, padding left out of the mean (SemSegPaddle's dygraph PSPNet). Built from tensor ops, so
    ``size`` may be a run-time tensor when the model is exported.
    """
    kernel = size // bins + 1
    starts = paddle.arange(bins, dtype="int64") * kernel - (kernel * bins - size)
    positions = paddle.arange(size, dtype="int64")
    inside = (positions.unsqueeze(0) >= starts.unsqueeze(1)) & (positions.unsqueeze(0) < (starts + kernel).unsqueeze(1))
    weights = inside.astype("float32")
    return weights / weights.sum(axis=1, keepdim=True)


def check_fixed_kernel_size(size: int, bins: int, axis: str) -> None:
    """The fixed-kernel pool gives exactly ``bins`` windows, none of them all padding, only when
    size // bins + size % bins >= bins (always for size > bins × (bins − 1))."""
    if size // bins + size % bins < bins:
        raise ValueError(f"pooling='fixed_kernel' cannot pool a feature map {size} wide ({axis}) into {bins} "
                         f"bins: its first window would hold only padding (use a map wider than "
                         f"{bins * (bins - 1)}, or pooling: adaptive)")


class FixedKernelAvgPool(nn.Layer):
    """Average pooling to bins × bins with a kernel fixed by the input size (see :func:`fixed_kernel_weights`),
    written as two small matrix products so it exports with a dynamic input size."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        size = spatial_size(x)
        height, width = size[0], size[1]
        if paddle.in_dynamic_mode():
            check_fixed_kernel_size(height, self.bins, "height")
            check_fixed_kernel_size(width, self.bins, "width")
        rows = fixed_kernel_weights(height, self.bins)
        columns = fixed_kernel_weights(width, self.bins)
        return paddle.matmul(paddle.matmul(rows, x), columns, transpose_y=True)


class PyramidPooling(nn.Layer):
    """Pyramid pooling module: per bin size b, average pooling to b×b → 1×1 conv-BN-ReLU →
    bilinear upsampling back; the input and every branch concatenated along channels.

    ``pool_order`` "bins" concatenates the branches in the order of ``bins``, "reversed" in the
    reverse order (PaddleSeg's PPModule). ``pooling`` "adaptive" pools adaptively, "fixed_kernel"
    with SemSegPaddle's fixed kernel (:class:`FixedKernelAvgPool`).
    """

    def __init__(self, in_channels: int, branch_channels: int, bins: list[int], bias: bool = False,
                 pool_order: str = "bins", pooling: str = "adaptive", align_corners: bool = False) -> None:
        super().__init__()
        pool = nn.AdaptiveAvgPool2D if pooling == "adaptive" else FixedKernelAvgPool
        self.branches = nn.LayerList([
            nn.Sequential(pool(b), ConvBNReLU(in_channels, branch_channels, 1, bias=bias)) for b in bins
        ])
        self.out_channels = in_channels + branch_channels * len(bins)
        self.reversed = pool_order == "reversed"
        self.align_corners = align_corners

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        size = spatial_size(x)
        pooled = [resize_to(branch(x), size, self.align_corners) for branch in self.branches]
        return paddle.concat([x] + (pooled[::-1] if self.reversed else pooled), axis=1)


class PSPNetHead(Decoder):
    """PSPNet head: pyramid pooling on one backbone level, 3×3 conv-BN-ReLU bottleneck, dropout,
    1×1 classifier. Each branch reduces to ``in_channels // len(bins)`` channels unless
    ``branch_channels`` is given (the paper's 1/N reduction)."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, bins: list[int] = (1, 2, 3, 6),
                 channels: int = 512, branch_channels: int | None = None, dropout: float = 0.1,
                 in_level: int = -1, conv_bias: bool = False, pool_order: str = "bins",
                 pooling: str = "adaptive", align_corners: bool = False) -> None:
        super().__init__()
        self.in_level = level_index(feature_info, "in_level", in_level)
        self.bins = check_positive_list("bins", bins)
        check_positive("channels", channels)
        check_dropout(dropout)
        check_choice("pool_order", pool_order, POOL_ORDERS)
        check_choice("pooling", pooling, POOLINGS)
        check_bool("align_corners", align_corners)
        in_channels = feature_info[self.in_level].channels
        if branch_channels is None:
            branch_channels = in_channels // len(self.bins)
            if branch_channels < 1:
                raise ValueError(f"bins={self.bins!r}: {len(self.bins)} branches cannot share the "
                                 f"{in_channels} input channels; set branch_channels")
        check_positive("branch_channels", branch_channels)
        self.pyramid = PyramidPooling(in_channels, branch_channels, self.bins, bias=conv_bias,
                                      pool_order=pool_order, pooling=pooling, align_corners=align_corners)
        self.bottleneck = ConvBNReLU(self.pyramid.out_channels, channels, 3, bias=conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        return self.classifier(self.dropout(self.bottleneck(self.pyramid(features[self.in_level]))))
