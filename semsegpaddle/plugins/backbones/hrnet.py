"""HRNetV2 backbones (Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition", TPAMI 2020), as used for semantic segmentation: registration.

timm / HRNet-Image-Classification checkpoints convert by dropping the classification head
(``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``) and renaming BatchNorm
buffers.

Imports no paddle: the model lives in ``hrnet_impl`` and is imported when a backbone is built,
so ``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

from typing import Annotated, Any

from semsegpaddle import hookimpl
from semsegpaddle.core.common.lazy import lazy_attributes
from semsegpaddle.core.common.typecheck import OneOf

# timm's ImageNet classification head, which segmentation does not use
CLASSIFIER_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
#: names defined in hrnet_impl, served lazily by ``__getattr__``
_MODEL_NAMES = ("ARCHS", "NUM_STAGES", "BasicBlock", "Bottleneck", "HighResolutionModule", "HRNet")


def build_hrnet(
    width: Annotated[str | int, OneOf("18_small", "18_small_v2", "18", "32", "48", 18, 32, 48)] = "18",
    output_stride: Annotated[int, OneOf(8, 16, 32)] = 32,
    norm_momentum: float = 0.9,
    norm_eps: float = 1e-5,
    frozen_stages: int = -1,
    freeze_bn_stats: bool = False,
    in_channels: int = 3,
):
    """HRNetV2 backbone (W18-Small-v1/v2, W18, W32, W48): four branches at strides 4, 8, 16, 32."""
    from semsegpaddle.plugins.backbones.hrnet_impl import HRNet

    return HRNet(width, output_stride, norm_momentum, norm_eps, frozen_stages, freeze_bn_stats, in_channels)


def convert_hrnet(state: dict[str, Any], options: dict) -> dict[str, Any]:
    """Map a timm ``hrnet_w*`` (or HRNet-Image-Classification) state dict to our names.

    The names already match; only the classification head is dropped and the BatchNorm buffers
    renamed. ``options`` is unused: ``output_stride`` adds no parameters.
    """
    from semsegpaddle.core.model.weights import drop_prefixes, torch_to_paddle_names

    return torch_to_paddle_names(drop_prefixes(state, CLASSIFIER_PREFIXES))


__getattr__ = lazy_attributes("semsegpaddle.plugins.backbones.hrnet_impl", _MODEL_NAMES)


@hookimpl
def semseg_register_backbones(register) -> None:
    """Register the ``hrnet`` backbone."""
    register(
        "hrnet",
        build_hrnet,
        options={
            "width": "variant: 18_small (W18-Small-v1), 18_small_v2, 18, 32 or 48 (timm hrnet_w*)",
            "output_stride": "8, 16 or 32: branches coarser than this are bilinearly upsampled to it, "
                             "so strides are min(4/8/16/32, output_stride); 32 gives the raw branches",
            "norm_momentum": "BatchNorm running-average weight (Paddle convention, = 1 - torch momentum)",
            "norm_eps": "BatchNorm epsilon",
            "frozen_stages": "-1 none; 0 the stem; k = 1..4 the stem and stages 1..k (weights fixed, BN in eval)",
            "freeze_bn_stats": "keep every BatchNorm in eval mode (running statistics fixed) during training",
        },
        description="HRNetV2 (Wang et al. 2020): the four parallel branches of the last stage, strides 4-32",
        convert_weights=convert_hrnet,
    )
