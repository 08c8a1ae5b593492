"""Assemble a segmentation model from config: backbone → decoder (+ FCN auxiliary head)."""
from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import paddle
from paddle import nn

from semsegpaddle.core.plugin.build import build_component, component_options
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.interfaces import Backbone, Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU, resize_to, spatial_size
from semsegpaddle.core.plugin.manager import get_registry
from semsegpaddle.core.config.schema import SCHEMA
from semsegpaddle.core.common.mkl_path import choose_mkl_code_path


class FCNAuxHead(nn.Layer):
    """The auxiliary head of PSPNet/DeepLab training: 3×3 conv-BN-ReLU, dropout, 1×1 classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, conv_bias: bool = False) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 3, bias=conv_bias)
        self.dropout = nn.Dropout2D(0.1)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class SegmentationModel(nn.Layer):
    """Normalise an N-band batch (0–255 for RGB), extract features, decode, upsample logits to the
    input size; N is the length of ``mean`` and ``std``.

    In eval mode ``forward`` returns N×num_classes×H×W logits. In training it returns a list:
    the main logits, then the decoder's auxiliary logits, then the FCN auxiliary head's — their
    loss weights are ``self.loss_weights``.
    """

    def __init__(self, backbone: Backbone, decoder: Decoder, num_classes: int,
                 mean: list[float], std: list[float], aux_level: int | None = None,
                 aux_weight: float = 0.4, aux_channels: int = 256, aux_conv_bias: bool = False,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.num_classes = num_classes
        self.align_corners = align_corners
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} entries, std {len(std)}: give one per input band")
        self.in_channels = len(mean)
        self.register_buffer("mean", paddle.to_tensor(mean, dtype="float32").reshape([1, len(mean), 1, 1]))
        self.register_buffer("std", paddle.to_tensor(std, dtype="float32").reshape([1, len(std), 1, 1]))
        info: FeatureInfo = backbone.feature_info
        self.aux_level = aux_level
        self.aux_head = None
        if aux_level is not None:
            if not -len(info) <= aux_level < len(info):
                raise ValueError(f"model.aux.level {aux_level} is out of range: the backbone has {len(info)} levels")
            self.aux_head = FCNAuxHead(info[aux_level].channels, aux_channels, num_classes, aux_conv_bias)
        self.loss_weights = (1.0, *decoder.aux_weights, *((aux_weight,) if self.aux_head is not None else ()))
        #: per training output, the registered loss that alone scores it (None: the configured pixel losses)
        self.output_losses = (None, *_padded(tuple(decoder.aux_losses), len(decoder.aux_weights)),
                              *((None,) if self.aux_head is not None else ()))

    def forward(self, images: paddle.Tensor) -> paddle.Tensor | list[paddle.Tensor]:
        size = spatial_size(images)
        features = self.backbone((images - self.mean) / self.std)
        outputs = self.decoder(features)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if not self.training:
            return resize_to(outputs[0], size, self.align_corners)
        # an auxiliary output scored by a named loss need not be a pixel map: leave it as it is
        pixel_maps = [True, *(loss is None for loss in _padded(self.decoder.aux_losses, len(outputs) - 1))]
        if self.aux_head is not None:
            outputs.append(self.aux_head(features[self.aux_level]))
            pixel_maps.append(True)
        return [resize_to(o, size, self.align_corners) if pixel else o for o, pixel in zip(outputs, pixel_maps)]


def _padded(values: tuple[Any, ...], length: int) -> list[Any]:
    return list(values[:length]) + [None] * (length - len(values))


#: side of the square dummy input the declaration check runs on (raised to fit the largest stride)
CHECK_SIDE = 64


def check_backbone(backbone: Any, name: str, plugin: str = "?", in_channels: int = 3) -> Backbone:
    """Verify what ``backbone`` declares against one forward pass; return it unchanged.

    The pass runs in eval mode without gradients on a 1×``in_channels``×S×S input, S a multiple
    of every declared stride (64 for strides up to 64); every layer's train/eval flag is restored
    after.
    The output must be a list with one N×C×H×W tensor per declared level, C the declared channels
    and H = W = ceil(S / stride). Any difference, or a forward that fails, raises a one-line
    :class:`SemsegError` naming the backbone and the plugin that registered it.
    """
    where = f"backbone '{name}' (plugin '{plugin}')"
    info = getattr(backbone, "feature_info", None)
    if not isinstance(info, FeatureInfo):
        raise SemsegError(f"{where}: feature_info must be a FeatureInfo declared in __init__, "
                          f"got {type(info).__name__}")
    side = _check_side(info.strides)
    modes = [(layer, layer.training) for layer in backbone.sublayers(include_self=True)]
    for layer, _ in modes:
        layer.training = False  # the flag only: Layer.eval() would also switch Paddle's global tracer
    try:
        x = np.random.default_rng(0).uniform(-1, 1, (1, in_channels, side, side)).astype(np.float32)
        x = paddle.to_tensor(x)
        with paddle.no_grad():
            features = backbone(x)
    except Exception as exc:
        raise SemsegError(f"{where}: forward on a 1×{in_channels}×{side}×{side} input failed: "
                          f"{_first_line(exc)}") from exc
    finally:
        for layer, training in modes:
            layer.training = training
    _compare(features, info, side, where)
    return backbone


def _check_side(strides: list[int]) -> int:
    """CHECK_SIDE, or the smallest multiple of the strides' least common multiple above it."""
    common = math.lcm(*strides)
    if common > 4 * CHECK_SIDE:  # unusual strides (e.g. 6 and 20): a multiple of the largest suffices
        common = max(strides)
    return common * max(1, math.ceil(CHECK_SIDE / common))


def _compare(features: Any, info: FeatureInfo, side: int, where: str) -> None:
    if not isinstance(features, (list, tuple)):
        raise SemsegError(f"{where}: forward must return a list of {len(info)} feature maps, "
                          f"returned {type(features).__name__}")
    if len(features) != len(info):
        raise SemsegError(f"{where}: declares {len(info)} feature levels, returns {len(features)}")
    for index, (feature, level) in enumerate(zip(features, info)):
        label = f"level {index} ('{level.name}')"
        shape = list(getattr(feature, "shape", []) or [])
        if not isinstance(feature, paddle.Tensor) or len(shape) != 4:
            raise SemsegError(f"{where}: {label} must be an N×C×H×W tensor, returns "
                              f"{type(feature).__name__} of shape {shape}")
        if shape[1] != level.channels:
            raise SemsegError(f"{where}: {label} declares {level.channels} channels, returns {shape[1]}")
        expected = math.ceil(side / level.stride)
        if shape[2:] != [expected, expected]:
            got = f"stride {side / shape[2]:g}" if shape[2] == shape[3] and shape[2] > 0 else "a non-square map"
            raise SemsegError(f"{where}: {label} declares stride {level.stride} ({expected}×{expected} from a "
                              f"{side}×{side} input), returns {shape[2]}×{shape[3]} ({got})")


def _first_line(exc: BaseException) -> str:
    """A short account of ``exc``: Paddle's messages carry C++ stacks; keep the line that matters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("---", "C++ Traceback", "Error Message Summary"))]
    summary = next((line for line in lines if line.startswith("(")), lines[0] if lines else "")
    text = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def input_band_options(component: Any, in_channels: int) -> dict[str, int]:
    """The keyword telling a backbone factory its input bands: ``{"in_channels": N}`` when the
    factory accepts ``in_channels``; nothing for 3 bands when it does not; for other counts a
    one-line SemsegError naming the backbone."""
    if "in_channels" in inspect.signature(component.factory).parameters:
        return {"in_channels": in_channels}
    if in_channels == 3:
        return {}
    raise SemsegError(f"model.in_channels: backbone '{component.name}' (plugin '{component.plugin}') takes "
                      f"3-band input only (its factory has no in_channels argument), the config gives {in_channels}")


def create_backbone(name: str, in_channels: int = 3, **options: Any) -> Backbone:
    """Build a registered backbone by name for ``in_channels`` input bands (options left out take
    their defaults), checked once against its declaration by :func:`check_backbone`."""
    component = get_registry("backbone").get(name)
    backbone = component.factory(**options, **input_band_options(component, in_channels))
    return check_backbone(backbone, name, component.plugin, in_channels)


def build_model(config: dict[str, Any], num_classes: int, pretrained: bool = True) -> SegmentationModel:
    """Build the model described by a validated config's ``model`` section.

    The backbone is checked against its declaration (:func:`check_backbone`). With ``pretrained``
    False, ``model.backbone.pretrained`` is not loaded (the caller loads a full checkpoint next).
    """
    # a script building models without the engine's set-up still gets MKL's fast path, if nothing
    # in the process has called MKL yet
    choose_mkl_code_path(config.get("runtime", {}).get("mkl_code_path", "auto"))
    model_cfg = config["model"]
    backbone_cfg = model_cfg["backbone"]
    backbone_extra = SCHEMA["model"]["backbone"].extra
    component = get_registry("backbone").get(backbone_cfg["name"])
    in_channels = model_cfg.get("in_channels", 3)
    backbone = check_backbone(build_component(config, "model.backbone", "backbone", extra=backbone_extra,
                                              overrides=input_band_options(component, in_channels)),
                              backbone_cfg["name"], component.plugin, in_channels)
    if pretrained and backbone_cfg.get("pretrained"):
        from semsegpaddle.core.model.weights import load_backbone_pretrained

        load_backbone_pretrained(backbone, backbone_cfg["name"], backbone_cfg["pretrained"],
                                 component_options(backbone_cfg, backbone_extra))
    decoder = build_component(config, "model.decoder", "decoder", backbone.feature_info, num_classes)
    aux = model_cfg["aux"]
    return SegmentationModel(backbone, decoder, num_classes, model_cfg["mean"], model_cfg["std"],
                             aux_level=aux["level"], aux_weight=aux["weight"], aux_channels=aux["channels"],
                             aux_conv_bias=aux["conv_bias"], align_corners=model_cfg["align_corners"])
