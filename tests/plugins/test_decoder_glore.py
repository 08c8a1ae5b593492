"""GloRe head: PaddleSeg's parameter count, the reasoning unit's arithmetic, shapes, gradients,
learning, options, export, a CLI run."""
from __future__ import annotations

import math

import numpy as np
import paddle
import pytest

from semsegpaddle.core.model.interfaces import FeatureInfo, FeatureLevel
from semsegpaddle.core.model.assembly import FCNAuxHead, SegmentationModel

from tests.helpers.tiny import TinyBackbone
from tests.helpers.decoder_checks import (
    RESNET50_OS8, assert_every_parameter_learns, build, count_parameters, entry_point_module,
    import_without_paddle, overfit, resnet18_features, small_info, train_through_cli,
)

#: measured with PaddleSeg 2.8: GloRe on ResNet50_vd OS8, 19 classes, gru_channels 512, num_state 128,
#: num_node 64, with its auxiliary head on level 2 (AuxLayer 1024 → 256); BN statistics included
PADDLESEG_GLORE_WITH_AUX = 3_612_454


def test_parameter_count_matches_paddleseg():
    """Head + the core's auxiliary head on level 2 (what model.aux.level=2 builds) = PaddleSeg's GloRe.

    The one structural difference: PaddleSeg's AuxLayer keeps a bias on its 3×3 conv (before BN),
    the core's FCNAuxHead does not — 256 parameters, added here explicitly.
    """
    head = build("glore", RESNET50_OS8, 19)  # PaddleSeg's defaults are ours
    aux = FCNAuxHead(RESNET50_OS8[2].channels, 256, 19)
    aux_conv = aux.conv[0]
    missing_aux_bias = 0 if aux_conv.bias is not None else aux_conv.weight.shape[0]
    assert missing_aux_bias in (0, 256)
    assert count_parameters(head) + count_parameters(aux) + missing_aux_bias == PADDLESEG_GLORE_WITH_AUX


def test_conv_bias_adds_one_bias_per_conv_before_batchnorm():
    without = count_parameters(build("glore", RESNET50_OS8, 19))
    with_bias = count_parameters(build("glore", RESNET50_OS8, 19, conv_bias=True))
    assert with_bias - without == 512 + 512  # the 1×1 conv-BN-ReLU and the unit's extend conv


def test_reasoning_unit_has_the_papers_layers():
    unit = build("glore", RESNET50_OS8, 19).reasoning
    assert list(unit.reduce.weight.shape) == [128, 512, 1, 1]  # to num_state
    assert list(unit.project.weight.shape) == [64, 512, 1, 1]  # to num_node
    assert list(unit.gcn.node_conv.weight.shape) == [64, 64, 1]  # across nodes
    assert list(unit.gcn.state_conv.weight.shape) == [128, 128, 1] and unit.gcn.state_conv.bias is None
    assert list(unit.extend.weight.shape) == [512, 128, 1, 1] and unit.extend.bias is None


def _randomise(layer: paddle.nn.Layer, seed: int) -> None:
    """Random weights everywhere (BatchNorm statistics too, which Paddle lists as parameters)."""
    rng = np.random.default_rng(seed)
    for name, p in layer.named_parameters():
        low_high = (0.5, 2.0) if name.endswith("_variance") else (-1.0, 1.0)
        p.set_value(rng.uniform(*low_high, p.shape).astype("float32"))


def _conv1x1(w, b, x):
    """numpy 1×1 convolution of N×C×L by an out×C(×1×1) weight."""
    y = np.einsum("oc,ncl->nol", w.reshape(w.shape[0], -1), x)
    return y if b is None else y + b[None, :, None]


def _batchnorm_eval(bn, x):
    g, b = bn.weight.numpy(), bn.bias.numpy()
    mean, var = bn._mean.numpy(), bn._variance.numpy()
    return (x - mean[None, :, None]) / np.sqrt(var[None, :, None] + bn._epsilon) * g[None, :, None] + b[None, :, None]


def _np(p):
    return None if p is None else p.numpy().astype(np.float64)


@pytest.mark.parametrize("normalize", [False, True])
def test_reasoning_unit_computes_the_papers_formula(normalize):
    """Against numpy: V = (W_r X) Bᵀ, Z = relu(W_s((I + A)V)) with A acting across nodes, Y = Z B,
    out = X + BN(W_e Y), where B = W_p X are the per-pixel node weights."""
    from semsegpaddle.plugins.decoders.glore_impl import GlobalReasoningUnit

    unit = GlobalReasoningUnit(6, num_state=4, num_node=3, normalize=normalize)
    _randomise(unit, seed=1)
    unit.eval()
    x = np.random.default_rng(2).normal(size=(2, 6, 3, 5))
    got = unit(paddle.to_tensor(x.astype("float32"))).numpy()

    flat = x.reshape(2, 6, 15)
    states = _conv1x1(_np(unit.reduce.weight), _np(unit.reduce.bias), flat)  # N×S×L
    weights = _conv1x1(_np(unit.project.weight), _np(unit.project.bias), flat)  # N×K×L
    v = states @ weights.transpose(0, 2, 1)  # N×S×K
    if normalize:
        v = v / 15
    across_nodes = _conv1x1(_np(unit.gcn.node_conv.weight), _np(unit.gcn.node_conv.bias), v.transpose(0, 2, 1))
    z = np.maximum(_conv1x1(_np(unit.gcn.state_conv.weight), None, across_nodes.transpose(0, 2, 1) + v), 0)
    y = _conv1x1(_np(unit.extend.weight), None, z @ weights)
    expected = (flat + _batchnorm_eval(unit.norm, y)).reshape(x.shape)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_at_the_stride_of_its_level(output_stride):
    info, features = resnet18_features(output_stride, 64, 48)
    head = build("glore", info, 5, channels=32, num_state=16, num_node=8)
    head.eval()
    assert head(features).shape == [2, 5, 64 // output_stride, 48 // output_stride]
    shallow = build("glore", info, 5, channels=32, num_state=16, num_node=8, in_level=1)
    shallow.eval()
    assert shallow(features).shape == [2, 5, 8, 6]


def test_every_parameter_gets_a_gradient():
    info = small_info(strides=(4, 8, 8, 8))
    head = build("glore", info, 4, channels=16, num_state=8, num_node=4, conv_bias=True)
    assert_every_parameter_learns(head, info, 4)


def test_overfits_one_batch():
    first, last = overfit(lambda info, n: build("glore", info, n, channels=32, num_state=16, num_node=8,
                                                in_level=1, normalize=True), steps=100)
    assert last <= 0.1 * first, (first, last)


@pytest.mark.parametrize("options, message", [
    ({"in_level": 4}, "in_level=4 is out of range"),
    ({"channels": 0}, "channels=0"),
    ({"num_state": 0}, "num_state=0"),
    ({"num_node": -1}, "num_node=-1"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError) as info:
        build("glore", RESNET50_OS8, 19, **options)
    assert message in str(info.value)


def test_exports_with_a_dynamic_input(tmp_path):
    """The reshapes back to H×W work when H and W are only known at run time."""
    from semsegpaddle.core.inference.export import export_model

    paddle.seed(0)
    backbone = TinyBackbone(width=8)
    decoder = build("glore", backbone.feature_info, 3, channels=16, num_state=8, num_node=4, in_level=1,
                    normalize=True)
    model = SegmentationModel(backbone, decoder, 3, [128.0] * 3, [64.0] * 3, aux_level=2)
    report = export_model(model, tmp_path / "glore", ["a", "b", "c"], np.zeros((3, 3), np.uint8))
    assert set(report.max_abs_error) == {"64x64", "48x80"}
    assert max(report.max_abs_error.values()) <= 1e-4


def test_entry_point_module_imports_without_paddle():
    module = entry_point_module("glore")
    assert module == "semsegpaddle.plugins.decoders.glore"
    done = import_without_paddle(module)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "glore"
    assert import_without_paddle("semsegpaddle.plugins.decoders.glore_impl").returncode != 0


def test_trains_through_the_cli(tmp_path):
    metrics = train_through_cli(tmp_path, {"name": "glore", "channels": 32, "num_state": 16, "num_node": 8})
    assert math.isfinite(metrics["mIoU"])


def test_a_small_feature_info_is_enough():
    """Built from a declaration alone: one level, no backbone."""
    head = build("glore", FeatureInfo([FeatureLevel(12, 16, "only")]), 2, channels=8, num_state=4, num_node=2)
    head.eval()
    assert head([paddle.rand([1, 12, 3, 4])]).shape == [1, 2, 3, 4]
