"""EfficientNet B0–B7 backbone (Tan & Le, 2019, https://arxiv.org/abs/1905.11946): registration.

timm ``efficientnet_b*`` / ``tf_efficientnet_b*`` weights import after dropping the
classification head (``conv_head``, top-level ``bn2``, ``classifier``).

Imports no paddle: the model lives in ``efficientnet_impl`` and is imported when a backbone is
built, so ``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

from typing import Annotated, Any

from semsegpaddle import hookimpl
from semsegpaddle.core.common.lazy import lazy_attributes
from semsegpaddle.core.common.typecheck import OneOf

_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
#: names defined in efficientnet_impl, served lazily by ``__getattr__``
_MODEL_NAMES = ("VARIANTS", "make_divisible", "scaled_channels", "scaled_repeats", "Conv2DSame", "drop_path",
                "SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "EfficientNet")


def build_efficientnet(variant: Annotated[str, OneOf("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")] = "b0",
                       drop_connect_rate: float = 0.2, output_stride: Annotated[int, OneOf(8, 16, 32)] = 32,
                       norm_momentum: float = 0.9, norm_eps: float = 1e-5, frozen_stages: int = -1,
                       freeze_bn_stats: bool = False,
                       padding: Annotated[str, OneOf("symmetric", "same")] = "symmetric", in_channels: int = 3):
    """Build an EfficientNet B0–B7 backbone (see ``efficientnet_impl.EfficientNet``)."""
    from semsegpaddle.plugins.backbones.efficientnet_impl import EfficientNet

    return EfficientNet(variant=variant, drop_connect_rate=drop_connect_rate,
                        output_stride=output_stride, norm_momentum=norm_momentum, norm_eps=norm_eps,
                        frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats, padding=padding,
                        in_channels=in_channels)


def convert_efficientnet(state: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Map a timm ``efficientnet_b*`` / ``tf_efficientnet_b*`` state dict to this backbone's names.

    The names already match; only the head (``conv_head``, top-level ``bn2``, ``classifier``) is
    dropped and BatchNorm buffers are renamed.
    """
    from semsegpaddle.core.model.weights import drop_prefixes, torch_to_paddle_names

    return torch_to_paddle_names(drop_prefixes(state, _HEAD_PREFIXES))


__getattr__ = lazy_attributes("semsegpaddle.plugins.backbones.efficientnet_impl", _MODEL_NAMES)


OPTIONS = {
    "variant": "b0..b7: compound scaling of width and depth (the paper's Table 2)",
    "drop_connect_rate": "stochastic depth: block i of n is dropped with rate·i/n; training only",
    "output_stride": "8, 16 or 32; the later stride-2 stages use dilation instead",
    "norm_momentum": "BatchNorm running-average weight (Paddle convention, = 1 - torch momentum)",
    "norm_eps": "BatchNorm epsilon; 1e-5 as timm efficientnet_b* (use 1e-3 with TF-ported weights)",
    "frozen_stages": "-1 none; 0 the stem; k the stem and the blocks of levels 1..k (0-4)",
    "freeze_bn_stats": "keep every BatchNorm in eval mode during training",
    "padding": "symmetric (PyTorch/timm efficientnet_b*) or same (TF / timm tf_efficientnet_b*)",
}


@hookimpl
def semseg_register_backbones(register: Any) -> None:
    """Register the ``efficientnet`` backbone."""
    register(
        "efficientnet",
        build_efficientnet,
        options=OPTIONS,
        description="EfficientNet B0-B7 (MBConv + SE, SiLU); BN eps defaults to 1e-5 as timm "
                    "efficientnet_b* weights were trained with it (paper/TF uses 1e-3)",
        convert_weights=convert_efficientnet,
    )
