"""The contracts between the core and its plugins: backbones, decoders and datasets.

A backbone declares, before any forward pass, what each returned level holds (channels, stride);
a decoder is built from that declaration alone; a dataset yields (image, label) pairs and declares
its classes. Plugins subclass these; the core relies on nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import paddle
from paddle import nn



@dataclass(frozen=True)
class FeatureLevel:
    """One feature map a backbone returns: its channels, its stride w.r.t. the input, a name."""

    channels: int
    stride: int
    name: str


class FeatureInfo(tuple):
    """The levels a backbone returns, shallow to deep; strides never decrease."""

    def __new__(cls, levels: Sequence[FeatureLevel]) -> "FeatureInfo":
        levels = tuple(levels)
        if not levels:
            raise ValueError("a backbone must declare at least one feature level")
        for level in levels:
            if level.channels <= 0 or level.stride <= 0:
                raise ValueError(f"feature level {level} must have positive channels and stride")
        strides = [level.stride for level in levels]
        if strides != sorted(strides):
            raise ValueError(f"feature strides must not decrease, got {strides}")
        return super().__new__(cls, levels)

    @property
    def channels(self) -> list[int]:
        """Channels of every level."""
        return [level.channels for level in self]

    @property
    def strides(self) -> list[int]:
        """Stride of every level."""
        return [level.stride for level in self]


class Backbone(nn.Layer):
    """A feature extractor. Subclasses set ``self.feature_info`` in ``__init__``.

    ``forward(x)`` takes a float N×3×H×W batch (normalised) and returns one tensor per declared
    level, N×channels×ceil(H/stride)×ceil(W/stride). By convention the four levels have nominal
    strides 4, 8, 16, 32 (smaller where the output stride is reduced by dilation), so configs that
    pick a level by index (e.g. an auxiliary head on level 2) work with every backbone.
    """

    feature_info: FeatureInfo
    _frozen: tuple[str, ...] = ()
    _hold_all_norms: bool = False

    def freeze(self, frozen: Sequence[str], bn_stats: bool = False) -> None:
        """Freeze the sublayers named in ``frozen`` (dotted paths, e.g. ``"layer1"``).

        Their parameters get ``stop_gradient`` and their BatchNorms stay in eval mode (running
        statistics fixed) even in training; with ``bn_stats`` every BatchNorm of the backbone does.
        Sublayers are looked up by name at every use, so BatchNorms the engine swaps for
        SyncBatchNorm stay covered.
        """
        self._frozen = tuple(frozen)
        self._hold_all_norms = bn_stats
        for layer in self._frozen_layers():
            for param in layer.parameters():
                param.stop_gradient = True
        if not getattr(self, "_hold_hook", None):
            # A parent's train() sets `training` on every sublayer directly, never calling ours:
            # re-apply before each training forward.
            self._hold_hook = self.register_forward_pre_hook(lambda layer, inputs: layer._hold_norms())
        self._hold_norms()

    def _frozen_layers(self) -> list[nn.Layer]:
        layers = []
        for path in self._frozen:
            layer: nn.Layer = self
            for part in path.split("."):
                layer = getattr(layer, part)
            layers.append(layer)
        return layers

    def _hold_norms(self) -> None:
        if not self.training:
            return
        for root in [self] if self._hold_all_norms else self._frozen_layers():
            for layer in root.sublayers(include_self=True):
                if isinstance(layer, nn.layer.norm._BatchNormBase):
                    # the flag only: Layer.eval() would also switch Paddle's global tracer to eval
                    layer.training = False

    def train(self, mode: bool = True) -> "Backbone":
        """Training mode, except the BatchNorms held in eval by :meth:`freeze`."""
        super().train(mode)
        self._hold_norms()
        return self

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(nn.Layer):
    """A segmentation head built from a :class:`FeatureInfo` and ``num_classes``.

    ``forward(features)`` takes the backbone's list of levels and returns logits
    (N×num_classes×h×w at the decoder's own stride; the model upsamples them to the input size).
    In training it may return a list ``[logits, aux_1, ...]`` of auxiliary logits, each weighted
    by ``aux_weights`` in the loss.
    """

    #: loss weight of each auxiliary output, in order
    aux_weights: tuple[float, ...] = ()
    #: per auxiliary output, the name of the registered loss that scores it, or None for the pixel
    #: losses of the main output; an output with a named loss need not be a pixel map (not resized)
    aux_losses: tuple[str | None, ...] = ()

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor | list[paddle.Tensor]:  # pragma: no cover
        raise NotImplementedError
