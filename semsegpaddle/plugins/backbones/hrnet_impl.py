"""HRNetV2 backbones (Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition", TPAMI 2020), as used for semantic segmentation.

HRNet keeps a stride-4 branch through the whole network and adds one lower-resolution branch per
stage (strides 8, 16, 32), exchanging information between branches after every module. The
backbone returns the four branch outputs of the last stage — what the HRNetV2 head concatenates.

Sublayer names mirror timm's ``HighResolutionNet`` (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1``, ``stage2``, ... ``stage4``), so timm / HRNet-Image-Classification
checkpoints convert by dropping the classification head (``incre_modules``, ``downsamp_modules``,
``final_layer``, ``classifier``) and renaming BatchNorm buffers.

The model only: the ``hrnet`` plugin module registers it and imports this module when a backbone
is built.
"""
from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddle import nn

from semsegpaddle.core.model.backbone_options import check_common_options
from semsegpaddle.core.model.interfaces import Backbone, FeatureInfo, FeatureLevel


@dataclass(frozen=True)
class _Arch:
    """One HRNet variant: stage 1 (bottleneck blocks at stride 4) and stages 2-4.

    Stage k (2..4) has ``modules[k-2]`` high-resolution modules of ``k`` branches, each branch
    ``blocks`` basic blocks; branch i has ``width * 2**i`` channels.
    """

    layer1_blocks: int
    layer1_planes: int
    modules: tuple[int, int, int]
    blocks: int
    width: int


# The same configurations as timm's hrnet_w18_small / _small_v2 / w18 / w32 / w48 and
# HRNet-Semantic-Segmentation's seg_hrnet_w18_small_v1 / _v2 / w48 experiment files.
ARCHS: dict[str, _Arch] = {
    "18_small": _Arch(layer1_blocks=1, layer1_planes=32, modules=(1, 1, 1), blocks=2, width=16),
    "18_small_v2": _Arch(layer1_blocks=2, layer1_planes=64, modules=(1, 3, 2), blocks=2, width=18),
    "18": _Arch(layer1_blocks=4, layer1_planes=64, modules=(1, 4, 3), blocks=4, width=18),
    "32": _Arch(layer1_blocks=4, layer1_planes=64, modules=(1, 4, 3), blocks=4, width=32),
    "48": _Arch(layer1_blocks=4, layer1_planes=64, modules=(1, 4, 3), blocks=4, width=48),
}


# the number of stages frozen_stages can name: stem (0), layer1 (1), stages 2..4
NUM_STAGES = 4


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2D:
    """A bias-free conv, Kaiming-normal initialised with fan_out as timm and the HRNet code do."""
    init = nn.initializer.KaimingNormal(fan_in=out_ch * kernel * kernel)
    return nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2,
                     weight_attr=paddle.ParamAttr(initializer=init), bias_attr=False)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, norm: dict, relu: bool) -> nn.Sequential:
    """conv (no bias) -> BN [-> ReLU], indexed 0/1/2 like timm's nn.Sequential."""
    layers = [
        _conv(in_ch, out_ch, kernel, stride),
        nn.BatchNorm2D(out_ch, **norm),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Layer):
    """Two 3×3 convs with a residual connection (ResNet's basic block, expansion 1)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, norm: dict, downsample: nn.Layer | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, planes, 3)
        self.bn1 = nn.BatchNorm2D(planes, **norm)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2D(planes, **norm)
        self.downsample = downsample

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Layer):
    """1×1 reduce, 3×3, 1×1 expand (×4) with a residual connection (ResNet's bottleneck)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, norm: dict, downsample: nn.Layer | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, planes, 1)
        self.bn1 = nn.BatchNorm2D(planes, **norm)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2D(planes, **norm)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2D(planes * 4, **norm)
        self.downsample = downsample

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + shortcut)


def _make_blocks(block: type, in_ch: int, planes: int, count: int, norm: dict) -> nn.Sequential:
    """``count`` blocks; the first gets a 1×1 conv + BN shortcut when the channels change."""
    out_ch = planes * block.expansion
    downsample = None
    if in_ch != out_ch:
        downsample = nn.Sequential(_conv(in_ch, out_ch, 1), nn.BatchNorm2D(out_ch, **norm))
    layers = [block(in_ch, planes, norm, downsample)]
    layers += [block(out_ch, planes, norm) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Layer):
    """Parallel branches of basic blocks, then every output branch sums all inputs.

    Into output i, a finer branch j < i comes through i-j stride-2 3×3 convs; a coarser branch
    j > i through a 1×1 conv + BN, then nearest-neighbour upsampling to branch i's size (as in
    HRNet-Image-Classification and timm; HRNet-Semantic-Segmentation upsamples bilinearly).
    """

    def __init__(self, channels: list[int], blocks: int, norm: dict) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.LayerList([_make_blocks(BasicBlock, c, c, blocks, norm) for c in channels])
        fuse_layers = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:
                    row.append(_conv_bn(channels[j], channels[i], 1, 1, norm, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [
                        _conv_bn(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, 2, norm,
                                 relu=k < i - j - 1)
                        for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.LayerList(row))
        self.fuse_layers = nn.LayerList(fuse_layers)

    def forward(self, xs: list[paddle.Tensor]) -> list[paddle.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = None
            for j, fuse in enumerate(row):
                z = fuse(xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="nearest")
                y = z if y is None else y + z
            out.append(F.relu(y))
        return out


class HRNet(Backbone):
    """HRNetV2 backbone: the four branch outputs of the last stage (nominal strides 4, 8, 16, 32).

    ``output_stride``: HRNet has no dilated variant; its stride-4 branch always exists. Branches
    coarser than ``output_stride`` are bilinearly upsampled (align_corners=False) to the size of
    the ``output_stride`` branch, so level k reports stride ``min(4 * 2**k, output_stride)``:
    32 -> 4, 8, 16, 32 (the raw branches), 16 -> 4, 8, 16, 16, 8 -> 4, 8, 8, 8. Channels do not
    change. This only resamples outputs; the network and its weights are the same for every value.

    ``frozen_stages``: 0 freezes the stem (conv1, bn1, conv2, bn2); 1 adds ``layer1``; k = 2..4
    adds ``transition{k-1}`` and ``stage{k}``.
    """

    def __init__(
        self,
        width: str = "18",
        output_stride: int = 32,
        norm_momentum: float = 0.9,
        norm_eps: float = 1e-5,
        frozen_stages: int = -1,
        freeze_bn_stats: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        arch = _check_options(width, output_stride, norm_momentum, norm_eps, frozen_stages, freeze_bn_stats)
        norm = {"momentum": norm_momentum, "epsilon": norm_eps}
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.freeze_bn_stats = freeze_bn_stats

        self.conv1 = _conv(in_channels, 64, 3, stride=2)
        self.bn1 = nn.BatchNorm2D(64, **norm)
        self.conv2 = _conv(64, 64, 3, stride=2)
        self.bn2 = nn.BatchNorm2D(64, **norm)
        self.layer1 = _make_blocks(Bottleneck, 64, arch.layer1_planes, arch.layer1_blocks, norm)

        previous = [arch.layer1_planes * Bottleneck.expansion]
        for stage, num_modules in enumerate(arch.modules, start=2):
            channels = [arch.width * 2**i for i in range(stage)]
            setattr(self, f"transition{stage - 1}", self._transition(previous, channels, norm))
            modules = [HighResolutionModule(channels, arch.blocks, norm) for _ in range(num_modules)]
            setattr(self, f"stage{stage}", nn.LayerList(modules))
            previous = channels

        self.feature_info = FeatureInfo([
            FeatureLevel(c, min(4 * 2**i, output_stride), f"stage4.branch{i}") for i, c in enumerate(previous)
        ])
        self.freeze(self._stage_names(frozen_stages), freeze_bn_stats)

    @staticmethod
    def _transition(previous: list[int], channels: list[int], norm: dict) -> nn.LayerList:
        """Adapt the branches of the last stage to the next one and add the new, coarser branch."""
        layers = []
        for i, c in enumerate(channels):
            if i < len(previous):
                layers.append(nn.Identity() if previous[i] == c else _conv_bn(previous[i], c, 3, 1, norm, relu=True))
            else:  # a new branch: stride-2 convs from the coarsest existing one
                steps = i + 1 - len(previous)
                layers.append(nn.Sequential(*[
                    _conv_bn(previous[-1], c if k == steps - 1 else previous[-1], 3, 2, norm, relu=True)
                    for k in range(steps)
                ]))
        return nn.LayerList(layers)

    @staticmethod
    def _stage_names(stages: int) -> list[str]:
        """The sublayers of the stem and stages 1..``stages`` (stem only for 0, none for -1)."""
        names: list[str] = ["conv1", "bn1", "conv2", "bn2"] if stages >= 0 else []
        if stages >= 1:
            names.append("layer1")
        for stage in range(2, stages + 1):
            names += [f"transition{stage - 1}", f"stage{stage}"]
        return names

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """Return the four last-stage branches, coarse ones upsampled to ``output_stride``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for stage in (2, 3, 4):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [t(ys[i] if i < len(ys) else ys[-1]) for i, t in enumerate(transition)]
            for module in getattr(self, f"stage{stage}"):
                xs = module(xs)
            ys = xs
        last = {8: 1, 16: 2, 32: 3}[self.output_stride]  # the branch at output_stride
        size = ys[last].shape[-2:]
        coarse = [F.interpolate(y, size=size, mode="bilinear", align_corners=False) for y in ys[last + 1:]]
        return ys[: last + 1] + coarse


def _check_options(
    width: str, output_stride: int, norm_momentum: float, norm_eps: float, frozen_stages: int, freeze_bn_stats: bool
) -> _Arch:
    """Validate the options (one-line ValueError naming option, value and what is expected)."""
    width = str(width) if isinstance(width, int) and not isinstance(width, bool) else width  # YAML `width: 18`
    if not isinstance(width, str) or width not in ARCHS:
        raise ValueError(f"hrnet option width={width!r} is not one of {', '.join(repr(w) for w in ARCHS)}")
    check_common_options("hrnet", output_stride=output_stride, norm_momentum=norm_momentum, norm_eps=norm_eps,
                         frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats, num_stages=NUM_STAGES)
    return ARCHS[width]
