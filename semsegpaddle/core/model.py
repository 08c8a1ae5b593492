"""Assemble a segmentation model from config: backbone → decoder (+ FCN auxiliary head)."""
from __future__ import annotations

from typing import Any

import paddle
from paddle import nn

from semsegpaddle.core.config import build_component, component_options
from semsegpaddle.core.interfaces import Backbone, Decoder, FeatureInfo
from semsegpaddle.core.layers import ConvBNReLU, resize_to, spatial_size
from semsegpaddle.core.plugins import get_registry
from semsegpaddle.core.schema import SCHEMA


class FCNAuxHead(nn.Layer):
    """The auxiliary head of PSPNet/DeepLab training: 3×3 conv-BN-ReLU, dropout, 1×1 classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 3)
        self.dropout = nn.Dropout2D(0.1)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class SegmentationModel(nn.Layer):
    """Normalise a 0–255 RGB batch, extract features, decode, upsample logits to the input size.

    In eval mode ``forward`` returns N×num_classes×H×W logits. In training it returns a list:
    the main logits, then the decoder's auxiliary logits, then the FCN auxiliary head's — their
    loss weights are ``self.loss_weights``.
    """

    def __init__(self, backbone: Backbone, decoder: Decoder, num_classes: int,
                 mean: list[float], std: list[float], aux_level: int | None = None,
                 aux_weight: float = 0.4, aux_channels: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.num_classes = num_classes
        self.register_buffer("mean", paddle.to_tensor(mean, dtype="float32").reshape([1, 3, 1, 1]))
        self.register_buffer("std", paddle.to_tensor(std, dtype="float32").reshape([1, 3, 1, 1]))
        info: FeatureInfo = backbone.feature_info
        self.aux_level = aux_level
        self.aux_head = None
        if aux_level is not None:
            if not -len(info) <= aux_level < len(info):
                raise ValueError(f"model.aux.level {aux_level} is out of range: the backbone has {len(info)} levels")
            self.aux_head = FCNAuxHead(info[aux_level].channels, aux_channels, num_classes)
        self.loss_weights = (1.0, *decoder.aux_weights, *((aux_weight,) if self.aux_head is not None else ()))

    def forward(self, images: paddle.Tensor) -> paddle.Tensor | list[paddle.Tensor]:
        size = spatial_size(images)
        features = self.backbone((images - self.mean) / self.std)
        outputs = self.decoder(features)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if not self.training:
            return resize_to(outputs[0], size)
        if self.aux_head is not None:
            outputs.append(self.aux_head(features[self.aux_level]))
        return [resize_to(o, size) for o in outputs]


def _checked_backbone(backbone: Any, name: str) -> Backbone:
    if not isinstance(getattr(backbone, "feature_info", None), FeatureInfo):
        raise TypeError(f"backbone '{name}' did not declare a FeatureInfo")
    return backbone


def create_backbone(name: str, **options: Any) -> Backbone:
    """Build a registered backbone by name; options left out take their defaults."""
    return _checked_backbone(get_registry("backbone").get(name).factory(**options), name)


def create_model(config: dict[str, Any], num_classes: int) -> SegmentationModel:
    """Build the model described by a validated config's ``model`` section."""
    model_cfg = config["model"]
    backbone_cfg = model_cfg["backbone"]
    backbone_extra = SCHEMA["model"]["backbone"].extra
    backbone = _checked_backbone(build_component(config, "model.backbone", "backbone", extra=backbone_extra),
                                 backbone_cfg["name"])
    if backbone_cfg.get("pretrained"):
        from semsegpaddle.core.weights import load_backbone_pretrained

        load_backbone_pretrained(backbone, backbone_cfg["name"], backbone_cfg["pretrained"],
                                 component_options(backbone_cfg, backbone_extra))
    decoder = build_component(config, "model.decoder", "decoder", backbone.feature_info, num_classes)
    aux = model_cfg["aux"]
    return SegmentationModel(backbone, decoder, num_classes, model_cfg["mean"], model_cfg["std"],
                             aux_level=aux["level"], aux_weight=aux["weight"], aux_channels=aux["channels"])
