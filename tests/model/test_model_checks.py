"""A backbone's declaration is checked against one forward pass when the model is built."""
from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest
from paddle import nn

from semsegpaddle import hookimpl
from semsegpaddle.core.plugin import manager as plugin_module
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.interfaces import Backbone, Decoder, FeatureInfo, FeatureLevel
from semsegpaddle.core.model.assembly import SegmentationModel, build_model, check_backbone, create_backbone
from semsegpaddle.core.plugin.manager import new_state

from tests.helpers.tiny import TINY_CONFIG, TinyBackbone, TinyPlugin

BUILTIN = new_state().registries["backbone"]
#: the cheapest variant of each built-in family
SMALL = {"resnet": {"depth": 18}, "hrnet": {"width": "18_small"}, "efficientnet": {"variant": "b0"}}


class Liar(Backbone):
    """Declares strides 4..32 and 8/16/24/32 channels; ``lie`` picks what it really returns."""

    def __init__(self, lie: str = "none") -> None:
        super().__init__()
        self.lie = lie
        self.conv = nn.Conv2D(3, 8, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2D(8)
        self.feature_info = FeatureInfo([FeatureLevel(c, s, f"l{i}")
                                         for i, (c, s) in enumerate(zip([8, 16, 24, 32], [4, 8, 16, 32]))])

    def forward(self, x):
        if self.lie == "raises":
            raise RuntimeError("weights not loaded\nsecond line")
        base = self.bn(self.conv(x))
        out = []
        for level in self.feature_info:
            pooled = nn.functional.avg_pool2d(base, level.stride // 4) if level.stride > 4 else base
            out.append(paddle.tile(pooled, [1, level.channels // 8, 1, 1]))
        if self.lie == "channels":
            out[2] = out[2][:, :16]
        elif self.lie == "levels":
            out = out[:3]
        elif self.lie == "stride":
            out[3] = nn.functional.avg_pool2d(out[3], 2)
        elif self.lie == "tensor":
            out = out[0]
        return out


class NoInfo(nn.Layer):
    """Forgets to declare a FeatureInfo."""

    feature_info = [(8, 4)]

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x):
        return [x]


def _liar_factory(lie: str):
    def build() -> Liar:
        """A backbone that lies about its outputs."""
        return Liar(lie)

    return build


class LiarPlugin:
    """In-memory plugin registering one backbone per kind of lie."""

    @hookimpl
    def semseg_register_backbones(self, register):
        for lie in ("none", "channels", "levels", "stride", "tensor", "raises"):
            register(f"liar-{lie}", _liar_factory(lie), options={})
        register("noinfo", NoInfo, options={})


@pytest.fixture
def liars():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test"), (LiarPlugin(), "lying-plugin")])
    plugin_module.reset_plugins(state)
    try:
        yield state
    finally:
        plugin_module.reset_plugins(None)


@pytest.mark.parametrize("lie, message", [
    ("channels", "backbone 'liar-channels' (plugin 'lying-plugin'): level 2 ('l2') declares 24 channels, returns 16"),
    ("levels", "backbone 'liar-levels' (plugin 'lying-plugin'): declares 4 feature levels, returns 3"),
    ("stride", "backbone 'liar-stride' (plugin 'lying-plugin'): level 3 ('l3') declares stride 32 (2×2 from a "
               "64×64 input), returns 1×1 (stride 64)"),
    ("tensor", "backbone 'liar-tensor' (plugin 'lying-plugin'): forward must return a list of 4 feature maps, "
               "returned Tensor"),
    ("raises", "backbone 'liar-raises' (plugin 'lying-plugin'): forward on a 1×3×64×64 input failed: "
               "RuntimeError: weights not loaded"),
])
def test_a_lying_backbone_is_named_with_its_plugin(liars, lie, message):
    with pytest.raises(SemsegError) as caught:
        create_backbone(f"liar-{lie}")
    assert str(caught.value) == message
    config = {**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "backbone": {"name": f"liar-{lie}"}}}
    from semsegpaddle.api import config_from_dict

    with pytest.raises(SemsegError, match=f"backbone 'liar-{lie}' \\(plugin 'lying-plugin'\\)"):
        build_model(config_from_dict(config), num_classes=3)


def test_a_backbone_without_feature_info_is_named(liars):
    with pytest.raises(SemsegError, match="backbone 'noinfo' \\(plugin 'lying-plugin'\\): feature_info must be a "
                                          "FeatureInfo declared in __init__, got list"):
        create_backbone("noinfo")


def test_an_honest_backbone_builds_and_keeps_its_modes_and_statistics(liars):
    backbone = create_backbone("liar-none")
    assert backbone.training and backbone.bn.training
    honest = Liar()
    honest.bn.eval()  # a mixed state must come back exactly as it was
    before = [layer.training for layer in honest.sublayers(include_self=True)]
    check_backbone(honest, "liar-none", "lying-plugin")
    assert [layer.training for layer in honest.sublayers(include_self=True)] == before == [True, True, False]
    # the pass ran in eval mode: BatchNorm running statistics were not updated
    np.testing.assert_array_equal(backbone.bn._mean.numpy(), np.zeros(8, np.float32))


def test_the_check_input_fits_every_declared_stride(liars):
    class Coarse(TinyBackbone):
        """Strides 8..64: the default 64×64 input gives a 1×1 deepest map (still exact)."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2D(3, 8, 3, stride=8, padding=1)
            self.feature_info = FeatureInfo([FeatureLevel(c, 8 * 2**i, f"s{i}") for i, c in enumerate([8, 16, 24, 32])])

    class VeryCoarse(Coarse):
        """Strides 16..128: the check input must grow to 128×128."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2D(3, 8, 3, stride=16, padding=1)
            self.feature_info = FeatureInfo([FeatureLevel(c, 16 * 2**i, f"s{i}") for i, c in enumerate([8, 16, 24, 32])])

    check_backbone(Coarse(), "coarse")
    check_backbone(VeryCoarse(), "very-coarse")
    lying = VeryCoarse()
    lying.feature_info = FeatureInfo([FeatureLevel(c, 8 * 2**i, f"s{i}") for i, c in enumerate([8, 16, 24, 32])])
    with pytest.raises(SemsegError, match="level 0 \\('s0'\\) declares stride 8 \\(8×8 from a 64×64 input\\), "
                                          "returns 4×4 \\(stride 16\\)"):
        check_backbone(lying, "very-coarse", "x")


@pytest.mark.parametrize("name", BUILTIN.names())
@pytest.mark.parametrize("output_stride", [8, 32])
def test_every_builtin_backbone_passes_its_own_check(name, output_stride):
    backbone = create_backbone(name, output_stride=output_stride, **SMALL.get(name, {}))
    assert backbone.training
    assert max(backbone.feature_info.strides) == output_stride


def test_create_model_builds_and_trains_after_the_check(tiny_plugins):
    from semsegpaddle.api import config_from_dict

    model = build_model(config_from_dict(TINY_CONFIG), num_classes=3)
    assert model.training and model.backbone.training
    outputs = model(paddle.rand([2, 3, 32, 32]) * 255)
    assert [list(o.shape) for o in outputs] == [[2, 3, 32, 32]]


class ContextDecoder(Decoder):
    """Logits plus an auxiliary per-image class-presence vector scored by a named loss."""

    aux_weights = (0.2, 0.4)
    aux_losses = ("presence", None)

    def __init__(self, feature_info, num_classes):
        super().__init__()
        self.head = nn.Conv2D(feature_info[-1].channels, num_classes, 1)

    def forward(self, features):
        logits = self.head(features[-1])
        if not self.training:
            return logits
        return [logits, logits.mean(axis=[2, 3]), logits]


def test_outputs_scored_by_a_named_loss_are_not_resized():
    backbone = TinyBackbone()
    model = SegmentationModel(backbone, ContextDecoder(backbone.feature_info, 3), 3, [0.0] * 3, [1.0] * 3,
                              aux_level=1)
    shapes = [list(o.shape) for o in model(paddle.rand([2, 3, 64, 64]))]
    assert shapes == [[2, 3, 64, 64], [2, 3], [2, 3, 64, 64], [2, 3, 64, 64]]
    assert model.loss_weights == (1.0, 0.2, 0.4, 0.4)
