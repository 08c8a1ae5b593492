"""EfficientNet B0–B7 backbone (Tan & Le, 2019, https://arxiv.org/abs/1905.11946).

MBConv blocks with squeeze-excitation and SiLU (swish), compound-scaled in width and depth.
Sublayer names mirror timm's ``efficientnet_b*`` (``conv_stem``, ``bn1``, ``blocks.i.j.conv_pw``,
``...bn1``, ``...conv_dw``, ``...bn2``, ``...se.conv_reduce``, ``...se.conv_expand``,
``...conv_pwl``, ``...bn3``), so timm weights import after dropping the classification head
(``conv_head``, top-level ``bn2``, ``classifier``).

The four returned levels are the outputs of blocks 1, 2, 4 and 6 (nominal strides 4, 8, 16, 32),
as timm's ``features_only=True, out_indices=(1, 2, 3, 4)``.

The model only: the ``efficientnet`` plugin module registers it and imports this module when a
backbone is built.
"""
from __future__ import annotations

import math
from typing import Any

import paddle
import paddle.nn.functional as F
from paddle import nn

from semsegpaddle.core.model.backbone_options import check_common_options
from semsegpaddle.core.model.interfaces import Backbone, FeatureInfo, FeatureLevel

#: variant -> (width multiplier, depth multiplier), the paper's compound scaling (timm's values)
VARIANTS: dict[str, tuple[float, float]] = {
    "b0": (1.0, 1.0),
    "b1": (1.0, 1.1),
    "b2": (1.1, 1.2),
    "b3": (1.2, 1.4),
    "b4": (1.4, 1.8),
    "b5": (1.6, 2.2),
    "b6": (1.8, 2.6),
    "b7": (2.0, 3.1),
}

# The B0 body (the paper's Table 1): (depthwise-separable?, repeats, kernel, stride, expansion, channels)
_B0_STAGES = (
    (True, 1, 3, 1, 1, 16),
    (False, 2, 3, 2, 6, 24),
    (False, 2, 5, 2, 6, 40),
    (False, 3, 3, 2, 6, 80),
    (False, 3, 5, 1, 6, 112),
    (False, 4, 5, 2, 6, 192),
    (False, 1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_SE_RATIO = 0.25
#: block stages whose output is returned (strides 4, 8, 16, 32)
_OUT_STAGES = (1, 2, 4, 6)
#: frozen_stages k freezes the stem and the block stages of levels 1..k
_LEVEL_STAGES = ((0, 1), (2,), (3, 4), (5, 6))
_PADDINGS = ("symmetric", "same")


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def scaled_channels(channels: int, width: float) -> int:
    """Channels of a B0 layer after width scaling, rounded to a multiple of 8 (as the references)."""
    return make_divisible(channels * width)


def scaled_repeats(repeats: int, depth: float) -> int:
    """Blocks in a B0 stage after depth scaling (rounded up)."""
    return int(math.ceil(repeats * depth))


class Conv2DSame(nn.Conv2D):
    """A convolution with TensorFlow "SAME" padding (asymmetric where needed), as TF checkpoints use."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self._kernel_size[::-1], self._stride[::-1],
                                 self._dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads, data_format="NCHW")
        return super().forward(x)


def _conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, dilation: int = 1,
          groups: int = 1, bias: bool = False, padding: str = "symmetric") -> nn.Conv2D:
    """A conv with PyTorch-style symmetric padding, or TF "SAME" padding where that differs."""
    bias_attr = None if bias else False
    if padding == "same" and stride > 1:
        return Conv2DSame(in_ch, out_ch, kernel, stride=stride, padding=0, dilation=dilation,
                          groups=groups, bias_attr=bias_attr)
    # stride 1, odd kernel: SAME padding is symmetric, dilation * (k - 1) / 2 on each side
    pad = ((stride - 1) + dilation * (kernel - 1)) // 2
    return nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=pad, dilation=dilation,
                     groups=groups, bias_attr=bias_attr)


def drop_path(x: paddle.Tensor, rate: float, training: bool) -> paddle.Tensor:
    """Stochastic depth ("drop-connect"): zero whole samples with probability ``rate``, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = paddle.floor(keep + paddle.rand([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
    return x / keep * mask


class SqueezeExcite(nn.Layer):
    """Channel attention: global pool, reduce (SiLU), expand, sigmoid gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2D(channels, reduced, 1)
        self.conv_expand = nn.Conv2D(reduced, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        s = x.mean(axis=[2, 3], keepdim=True)
        s = self.conv_expand(F.silu(self.conv_reduce(s)))
        return x * F.sigmoid(s)


class _Block(nn.Layer):
    """Common parts of the two block kinds: skip rule and drop-path."""

    has_skip: bool
    drop_path_rate: float

    def _residual(self, x: paddle.Tensor, shortcut: paddle.Tensor) -> paddle.Tensor:
        if self.has_skip:
            return drop_path(x, self.drop_path_rate, self.training) + shortcut
        return x


class DepthwiseSeparable(_Block):
    """MBConv with expansion 1 (first stage): depthwise conv, SE, linear pointwise projection."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, dilation: int,
                 se_channels: int, drop_path_rate: float, bn: Any, padding: str) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_path_rate = drop_path_rate
        self.conv_dw = _conv(in_ch, in_ch, kernel, stride=stride, dilation=dilation, groups=in_ch,
                             padding=padding)
        self.bn1 = bn(in_ch)
        self.se = SqueezeExcite(in_ch, se_channels)
        self.conv_pw = _conv(in_ch, out_ch, 1)
        self.bn2 = bn(out_ch)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.se(F.silu(self.bn1(self.conv_dw(x))))
        return self._residual(self.bn2(self.conv_pw(y)), x)


class InvertedResidual(_Block):
    """MBConv: pointwise expansion, depthwise conv, SE, linear pointwise projection."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, dilation: int,
                 expansion: int, se_channels: int, drop_path_rate: float, bn: Any, padding: str) -> None:
        super().__init__()
        mid = make_divisible(in_ch * expansion)
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_path_rate = drop_path_rate
        self.conv_pw = _conv(in_ch, mid, 1)
        self.bn1 = bn(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride=stride, dilation=dilation, groups=mid,
                             padding=padding)
        self.bn2 = bn(mid)
        self.se = SqueezeExcite(mid, se_channels)
        self.conv_pwl = _conv(mid, out_ch, 1)
        self.bn3 = bn(out_ch)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = F.silu(self.bn1(self.conv_pw(x)))
        y = self.se(F.silu(self.bn2(self.conv_dw(y))))
        return self._residual(self.bn3(self.conv_pwl(y)), x)


class EfficientNet(Backbone):
    """EfficientNet B0–B7 body (stem + MBConv stages, no head); 4 levels at strides 4, 8, 16, 32."""

    def __init__(self, variant: str = "b0", drop_connect_rate: float = 0.2, output_stride: int = 32,
                 norm_momentum: float = 0.9, norm_eps: float = 1e-5, frozen_stages: int = -1,
                 freeze_bn_stats: bool = False, padding: str = "symmetric",
                 in_channels: int = 3) -> None:
        super().__init__()
        _validate(variant, drop_connect_rate, output_stride, norm_momentum, norm_eps, frozen_stages,
                  freeze_bn_stats, padding)
        width, depth = VARIANTS[variant]
        self.variant = variant
        self.frozen_stages = frozen_stages
        self.freeze_bn_stats = freeze_bn_stats

        def bn(channels: int) -> nn.BatchNorm2D:
            return nn.BatchNorm2D(channels, momentum=norm_momentum, epsilon=norm_eps)

        stem = scaled_channels(_STEM_CHANNELS, width)
        self.conv_stem = _conv(in_channels, stem, 3, stride=2, padding=padding)
        self.bn1 = bn(stem)

        plan = [(dw, scaled_repeats(r, depth), k, s, e, scaled_channels(c, width))
                for dw, r, k, s, e, c in _B0_STAGES]
        total_blocks = sum(p[1] for p in plan)
        in_ch, current_stride, dilation, index = stem, 2, 1, 0
        stages, levels = [], []
        for stage_index, (is_ds, repeats, kernel, stage_stride, expansion, out_ch) in enumerate(plan):
            blocks = []
            for repeat in range(repeats):
                stride = stage_stride if repeat == 0 else 1
                block_dilation = dilation
                if stride > 1:
                    if current_stride * stride > output_stride:
                        # keep the resolution: this block keeps the old dilation, later ones dilate
                        dilation *= stride
                        stride = 1
                    else:
                        current_stride *= stride
                # SE width is a fraction of the block's input channels (paper / timm), computed
                # from the expanded width exactly as timm does so rounding agrees
                mid = in_ch if is_ds else make_divisible(in_ch * expansion)
                se_channels = round(mid * (_SE_RATIO / expansion))
                rate = drop_connect_rate * index / total_blocks
                common = dict(kernel=kernel, stride=stride, dilation=block_dilation,
                              se_channels=se_channels, drop_path_rate=rate, bn=bn, padding=padding)
                if is_ds:
                    blocks.append(DepthwiseSeparable(in_ch, out_ch, **common))
                else:
                    blocks.append(InvertedResidual(in_ch, out_ch, expansion=expansion, **common))
                in_ch = out_ch
                index += 1
            stages.append(nn.Sequential(*blocks))
            if stage_index in _OUT_STAGES:
                levels.append(FeatureLevel(out_ch, current_stride, f"blocks.{stage_index}"))
        self.blocks = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(levels)
        frozen = ["conv_stem", "bn1"] if frozen_stages >= 0 else []
        for level in range(max(frozen_stages, 0)):
            frozen += [f"blocks.{i}" for i in _LEVEL_STAGES[level]]
        self.freeze(frozen, freeze_bn_stats)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Return the 4 declared levels (outputs of block stages 1, 2, 4, 6)."""
        x = F.silu(self.bn1(self.conv_stem(x)))
        outs = []
        for stage_index, stage in enumerate(self.blocks):
            x = stage(x)
            if stage_index in _OUT_STAGES:
                outs.append(x)
        return outs


def _validate(variant: str, drop_connect_rate: float, output_stride: int, norm_momentum: float,
              norm_eps: float, frozen_stages: int, freeze_bn_stats: bool, padding: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not an EfficientNet variant; expected one of "
                         f"{', '.join(VARIANTS)}")
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ValueError(f"drop_connect_rate={drop_connect_rate!r} must be in [0, 1)")
    check_common_options("efficientnet", output_stride=output_stride, norm_momentum=norm_momentum,
                         norm_eps=norm_eps, frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats,
                         num_stages=len(_LEVEL_STAGES))
    if padding not in _PADDINGS:
        raise ValueError(f"padding={padding!r} is not allowed; expected one of {', '.join(_PADDINGS)}")
