"""ResNet and ResNeXt backbones (He et al. 2016; Xie et al. 2017) with the v1c/v1d stems: registration.

Sublayer names follow timm's ``ResNet`` (and so torchvision's), so an ImageNet checkpoint from
either converts by renaming BatchNorm buffers and dropping the classifier ``fc``.

Imports no paddle: the model lives in ``resnet_impl`` and is imported when a backbone is built,
so ``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

from typing import Any, Callable

from semsegpaddle import hookimpl
from semsegpaddle.core.common.lazy import lazy_attributes

#: names defined in resnet_impl, served lazily by ``__getattr__``
_MODEL_NAMES = ("RESNET_DEPTHS", "RESNEXT_VARIANTS", "STEMS", "STAGE_PLANES", "BasicBlock", "Bottleneck", "ResNet")


def build_resnet(
    depth: int = 50,
    stem: str = "standard",
    output_stride: int = 32,
    multi_grid: list[int] | None = None,
    norm_momentum: float = 0.9,
    norm_eps: float = 1e-5,
    frozen_stages: int = -1,
    freeze_bn_stats: bool = False,
):
    """ResNet-18/34/50/101/152 (v1.5 strided 3×3), with the standard, v1c or v1d stem."""
    from semsegpaddle.core.model.backbone_options import invalid_option
    from semsegpaddle.plugins.backbones.resnet_impl import RESNET_DEPTHS, ResNet

    if depth not in RESNET_DEPTHS or isinstance(depth, bool):
        raise invalid_option("resnet", "depth", depth, f"one of {', '.join(map(str, RESNET_DEPTHS))}")
    block, layers = RESNET_DEPTHS[depth]
    return ResNet(block, layers, stem=stem, output_stride=output_stride, multi_grid=multi_grid,
                  norm_momentum=norm_momentum, norm_eps=norm_eps, frozen_stages=frozen_stages,
                  freeze_bn_stats=freeze_bn_stats)


def build_resnext(
    variant: str = "50_32x4d",
    stem: str = "standard",
    output_stride: int = 32,
    multi_grid: list[int] | None = None,
    norm_momentum: float = 0.9,
    norm_eps: float = 1e-5,
    frozen_stages: int = -1,
    freeze_bn_stats: bool = False,
):
    """ResNeXt-50 32×4d, -101 32×8d or -101 64×4d, with the standard, v1c or v1d stem."""
    from semsegpaddle.core.model.backbone_options import invalid_option
    from semsegpaddle.plugins.backbones.resnet_impl import RESNEXT_VARIANTS, ResNet

    if variant not in RESNEXT_VARIANTS:
        raise invalid_option("resnet", "variant", variant, f"one of {', '.join(RESNEXT_VARIANTS)}")
    layers, cardinality, base_width = RESNEXT_VARIANTS[variant]
    return ResNet("bottleneck", layers, cardinality=cardinality, base_width=base_width, stem=stem,
                  output_stride=output_stride, multi_grid=multi_grid, norm_momentum=norm_momentum,
                  norm_eps=norm_eps, frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats)


def convert_resnet(state: dict[str, Any], options: dict) -> dict[str, Any]:
    """timm or torchvision ResNet/ResNeXt state dict -> our names (same names, minus ``fc.``)."""
    from semsegpaddle.core.model.weights import drop_prefixes, torch_to_paddle_names

    return torch_to_paddle_names(drop_prefixes(state, ("fc.",)))


__getattr__ = lazy_attributes("semsegpaddle.plugins.backbones.resnet_impl", _MODEL_NAMES)


_COMMON_OPTIONS = {
    "stem": "standard (7×7 conv), deep (3×3 convs 32-32-64, v1c) or deep_avgdown (v1d / ResNet_vd)",
    "output_stride": "8, 16 or 32; layer3/layer4 are dilated instead of strided below 32",
    "multi_grid": "layer4 dilation multiplier per block, e.g. [1, 2, 4] (DeepLabv3); null for none",
    "norm_momentum": "BatchNorm running-average weight (Paddle convention, = 1 - torch momentum)",
    "norm_eps": "BatchNorm epsilon",
    "frozen_stages": "-1 none; 0 freezes the stem; k freezes the stem and layer1..layerk",
    "freeze_bn_stats": "keep every BatchNorm in eval mode (fixed statistics) during training",
}


@hookimpl
def semseg_register_backbones(register: Callable[..., None]) -> None:
    """Register ``resnet`` and ``resnext``."""
    register(
        "resnet", build_resnet,
        options={"depth": "18, 34, 50, 101 or 152", **_COMMON_OPTIONS},
        description="ResNet-18/34/50/101/152 (v1.5; v1c/v1d stems); timm/torchvision weights",
        convert_weights=convert_resnet,
    )
    register(
        "resnext", build_resnext,
        options={"variant": "50_32x4d, 101_32x8d or 101_64x4d", **_COMMON_OPTIONS},
        description="ResNeXt-50 32x4d, -101 32x8d/64x4d (v1c/v1d stems); timm/torchvision weights",
        convert_weights=convert_resnet,
    )
