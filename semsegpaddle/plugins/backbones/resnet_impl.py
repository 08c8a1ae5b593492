"""The ResNet and ResNeXt model (He et al. 2016; Xie et al. 2017) with the v1c/v1d stems.

Imported by the ``resnet`` plugin's factories when a backbone is built (the plugin module itself
imports no paddle).

Sublayer names follow timm's ``ResNet`` (and so torchvision's), so an ImageNet checkpoint from
either converts by renaming BatchNorm buffers and dropping the classifier ``fc``.

Dilation for output strides 16 and 8 has two conventions (``dilation_style``):

- ``timm`` (also torchvision's ``replace_stride_with_dilation``): a dilated stage's first block
  keeps the previous stage's dilation in its first 3×3 conv, later blocks use the stage's own; an
  avg-down shortcut of a dilated stage pools 2×2 with stride 1 over a zero-padded edge.
- ``paddleseg`` (PaddleSeg ``ResNet_vd``): every block of a dilated stage uses the stage's
  dilation, and an avg-down shortcut of a dilated stage does not pool.
"""
from __future__ import annotations

from typing import Callable, Sequence

import paddle
from paddle import nn

from semsegpaddle.core.model.backbone_options import check_common_options, invalid_option
from semsegpaddle.core.model.interfaces import Backbone, FeatureInfo, FeatureLevel

#: depth -> (block kind, blocks per stage)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: variant -> (blocks per stage, cardinality, base width), as timm's resnext definitions
RESNEXT_VARIANTS: dict[str, tuple[tuple[int, int, int, int], int, int]] = {
    "50_32x4d": ((3, 4, 6, 3), 32, 4),
    "101_32x8d": ((3, 4, 23, 3), 32, 8),
    "101_64x4d": ((3, 4, 23, 3), 64, 4),
}
STEMS = ("standard", "deep", "deep_avgdown")
STAGE_PLANES = (64, 128, 256, 512)
DILATION_STYLES = ("timm", "paddleseg")
MULTI_GRID_MODES = ("relative", "absolute")


def _invalid(option: str, value: object, expected: str) -> ValueError:
    return invalid_option("resnet", option, value, expected)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1,
          groups: int = 1) -> nn.Conv2D:
    """A bias-free conv with 'same' padding for odd kernels, He-initialised (fan-out) as timm does."""
    return nn.Conv2D(
        in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation,
        groups=groups, bias_attr=False,
        weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal(mode="fan_out")),
    )


class _SamePadAvgPool(nn.Layer):
    """2×2 stride-1 average over a zero-padded right/bottom edge (timm's ``AvgPool2dSame(2, 1)``).

    The padded zeros count in the mean, exactly as in timm; used in the avg-down shortcut of a
    dilated stage, where the pooling must not reduce the resolution. Written as shifted sums
    rather than pad + pool: that pair, traced and converted by paddle2onnx, gave onnxruntime
    logits off by 1e12.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        right = paddle.concat([x[:, :, :, 1:], paddle.zeros_like(x[:, :, :, :1])], axis=3)
        rows = x + right
        below = paddle.concat([rows[:, :, 1:, :], paddle.zeros_like(rows[:, :, :1, :])], axis=2)
        return (rows + below) * 0.25


class BasicBlock(nn.Layer):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Layer | None,
                 dilation: int, first_dilation: int, norm: Callable[[int], nn.Layer],
                 cardinality: int = 1, base_width: int = 64) -> None:
        super().__init__()
        if cardinality != 1 or base_width != 64:
            raise ValueError("BasicBlock supports neither groups nor a changed base width")
        self.conv1 = _conv(inplanes, planes, 3, stride, first_dilation)
        self.bn1 = norm(planes)
        self.act1 = nn.ReLU()
        self.conv2 = _conv(planes, planes, 3, 1, dilation)
        self.bn2 = norm(planes)
        self.act2 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class Bottleneck(nn.Layer):
    """1×1 reduce, 3×3 (grouped for ResNeXt, strided: v1.5), 1×1 expand, with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Layer | None,
                 dilation: int, first_dilation: int, norm: Callable[[int], nn.Layer],
                 cardinality: int = 1, base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * cardinality
        self.conv1 = _conv(inplanes, width, 1)
        self.bn1 = norm(width)
        self.act1 = nn.ReLU()
        self.conv2 = _conv(width, width, 3, stride, first_dilation, groups=cardinality)
        self.bn2 = norm(width)
        self.act2 = nn.ReLU()
        self.conv3 = _conv(width, planes * self.expansion, 1)
        self.bn3 = norm(planes * self.expansion)
        self.act3 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)


def _downsample(inplanes: int, outplanes: int, stride: int, dilation: int, avg_down: bool,
                pool_when_dilated: bool, norm: Callable[[int], nn.Layer]) -> nn.Sequential:
    """The projection shortcut: a strided 1×1 conv (v1b/c), or avg-pool then 1×1 conv (v1d).

    In a dilated stage (stride 1, dilation > 1) the v1d pool is timm's padded 2×2 stride-1 average
    when ``pool_when_dilated``, else absent (PaddleSeg). The pool stays at index 0 either way, so
    the conv and norm keep their names.
    """
    if not avg_down:
        return nn.Sequential(_conv(inplanes, outplanes, 1, stride), norm(outplanes))
    if stride != 1:
        pool: nn.Layer = nn.AvgPool2D(2, stride, ceil_mode=True, exclusive=True)
    elif dilation > 1 and pool_when_dilated:
        pool = _SamePadAvgPool()
    else:
        pool = nn.Identity()
    return nn.Sequential(pool, _conv(inplanes, outplanes, 1), norm(outplanes))


def _check_variant_options(stem: str, stem_channels: int, dilation_style: str, multi_grid_mode: str,
                           multi_grid: Sequence[int] | None, layer4_blocks: int) -> None:
    """Raise a one-line :func:`invalid_option` error for the first bad structural option."""
    if stem not in STEMS:
        raise _invalid("stem", stem, f"one of {', '.join(STEMS)}")
    deep = stem != "standard"
    if not isinstance(stem_channels, int) or isinstance(stem_channels, bool) or stem_channels < 1 or (
        deep and stem_channels % 2
    ):
        expected = "a positive even integer (a deep stem's inner convs get half)" if deep else "a positive integer"
        raise _invalid("stem_channels", stem_channels, expected)
    if dilation_style not in DILATION_STYLES:
        raise _invalid("dilation_style", dilation_style, f"one of {', '.join(DILATION_STYLES)}")
    if multi_grid_mode not in MULTI_GRID_MODES:
        raise _invalid("multi_grid_mode", multi_grid_mode, f"one of {', '.join(MULTI_GRID_MODES)}")
    if multi_grid is not None:
        if not isinstance(multi_grid, (list, tuple)) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in multi_grid
        ):
            raise _invalid("multi_grid", multi_grid, "a list of positive integers or null")
        if len(multi_grid) != layer4_blocks:
            raise _invalid("multi_grid", multi_grid, f"{layer4_blocks} entries, one per layer4 block")


class ResNet(Backbone):
    """ResNet/ResNeXt returning layer1..layer4 (nominal strides 4, 8, 16, 32).

    ``block`` is "basic" or "bottleneck"; ``layers`` the blocks per stage. ``stem_channels`` is
    the stem's output width (a deep stem's first two convs have half of it). ``multi_grid``
    (DeepLabv3) sets every layer4 block's 3×3 dilation: layer4's dilation times its entry
    (``multi_grid_mode`` "relative"), or the entry itself ("absolute"). ``dilation_style`` picks
    the timm or PaddleSeg rule for dilated stages (see the module docstring).
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        *,
        cardinality: int = 1,
        base_width: int = 64,
        stem: str = "standard",
        stem_channels: int = 64,
        output_stride: int = 32,
        dilation_style: str = "timm",
        multi_grid: Sequence[int] | None = None,
        multi_grid_mode: str = "relative",
        norm_momentum: float = 0.9,
        norm_eps: float = 1e-5,
        frozen_stages: int = -1,
        freeze_bn_stats: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        _check_variant_options(stem, stem_channels, dilation_style, multi_grid_mode, multi_grid, layers[3])
        check_common_options("resnet", output_stride=output_stride, norm_momentum=norm_momentum,
                             norm_eps=norm_eps, frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats,
                             num_stages=4)
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.frozen_stages = frozen_stages
        self.freeze_bn_stats = freeze_bn_stats

        def norm(channels: int) -> nn.BatchNorm2D:
            return nn.BatchNorm2D(channels, momentum=norm_momentum, epsilon=norm_eps)

        inplanes = stem_channels
        if stem == "standard":
            self.conv1 = _conv(in_channels, inplanes, 7, stride=2)
        else:  # v1c: three 3×3 convs, the last one's norm is bn1 below
            mid = stem_channels // 2
            self.conv1 = nn.Sequential(
                _conv(in_channels, mid, 3, stride=2), norm(mid), nn.ReLU(),
                _conv(mid, mid, 3), norm(mid), nn.ReLU(),
                _conv(mid, inplanes, 3),
            )
        self.bn1 = norm(inplanes)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)

        avg_down = stem == "deep_avgdown"
        timm_rule = dilation_style == "timm"
        levels = []
        net_stride, dilation, prev_dilation = 4, 1, 1
        for index, (planes, num_blocks) in enumerate(zip(STAGE_PLANES, layers)):
            stride = 1 if index == 0 else 2
            if net_stride >= output_stride:
                dilation, stride = dilation * stride, 1
            else:
                net_stride *= stride
            outplanes = planes * block_cls.expansion
            blocks = []
            for block_index in range(num_blocks):
                downsample = None
                if block_index == 0 and (stride != 1 or inplanes != outplanes):
                    downsample = _downsample(inplanes, outplanes, stride, dilation, avg_down,
                                             pool_when_dilated=timm_rule, norm=norm)
                block_dilation = dilation
                first_dilation = prev_dilation if block_index == 0 and timm_rule else dilation
                if multi_grid is not None and index == 3:
                    grid = multi_grid[block_index]
                    absolute = multi_grid_mode == "absolute"
                    block_dilation = first_dilation = grid if absolute else dilation * grid
                blocks.append(block_cls(
                    inplanes, planes, stride if block_index == 0 else 1, downsample,
                    block_dilation, first_dilation, norm, cardinality=cardinality, base_width=base_width,
                ))
                inplanes = outplanes
            prev_dilation = dilation
            name = f"layer{index + 1}"
            self.add_sublayer(name, nn.Sequential(*blocks))
            levels.append(FeatureLevel(outplanes, net_stride, name))
        self.feature_info = FeatureInfo(levels)
        frozen = ["conv1", "bn1", *(f"layer{i}" for i in range(1, frozen_stages + 1))] if frozen_stages >= 0 else []
        self.freeze(frozen, freeze_bn_stats)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        features = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        return features
