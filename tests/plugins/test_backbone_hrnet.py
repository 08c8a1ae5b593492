"""HRNetV2 backbone: timm parity, published parameter counts, output strides, options, freezing."""
from __future__ import annotations

import functools
import math

import numpy as np
import paddle
import pytest

from semsegpaddle.core.plugin.manager import get_registry
from semsegpaddle.plugins.backbones.hrnet import build_hrnet, convert_hrnet
from semsegpaddle.plugins.backbones.hrnet_impl import HRNet
from tests.helpers.parity import compare_features, load_converted, torch_param_count, torch_state_numpy

WIDTHS = ["18_small", "18_small_v2", "18", "32", "48"]
TIMM_NAMES = {w: f"hrnet_w{w}" for w in WIDTHS}
NOMINAL = [4, 8, 16, 32]

# #Params of the full Cityscapes model (backbone + HRNetV2 head, 19 classes) in the
# HRNet-Semantic-Segmentation README (pytorch-v1.1 branch): "Big models" and "Small models" tables.
PUBLISHED_CITYSCAPES_MPARAMS = {"18_small": 1.5, "18_small_v2": 3.9, "48": 65.8}


def _model(width: str, output_stride: int = 32) -> HRNet:
    """Build each (width, output_stride) once per session; hrnet_w48 takes seconds."""
    return _build(width, output_stride)


@functools.lru_cache(maxsize=None)
def _build(width: str, output_stride: int) -> HRNet:
    return build_hrnet(width=width, output_stride=output_stride).eval()


def _param_count(layer: paddle.nn.Layer) -> int:
    # Paddle stores BatchNorm running statistics as parameters (_mean/_variance); leave them out
    return int(sum(np.prod(p.shape) for n, p in layer.named_parameters()
                   if not n.endswith(("._mean", "._variance"))))


def _input(height: int = 64, width: int = 64, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(batch, 3, height, width).astype("float32")


def _check_declared(model: HRNet, x: np.ndarray) -> list[paddle.Tensor]:
    with paddle.no_grad():
        features = model(paddle.to_tensor(x))
    assert len(features) == len(model.feature_info)
    for feature, level in zip(features, model.feature_info):
        n, c, h, w = feature.shape
        assert (n, c) == (x.shape[0], level.channels), (level, feature.shape)
        expected = (math.ceil(x.shape[2] / level.stride), math.ceil(x.shape[3] / level.stride))
        assert (h, w) == expected, (level, feature.shape)
    return features


# ------------------------------------------------------------------------------------------------
# reference parity
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_matches_timm(width):
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # feature_location='' gives the raw branch outputs; the default would be the classification
    # "incre" features. Its levels are the stem (stride 2) then the four branches.
    reference = timm.create_model(TIMM_NAMES[width], pretrained=False, features_only=True, feature_location="").eval()
    assert reference.feature_info.reduction() == [2] + NOMINAL
    with torch.no_grad():  # non-trivial BatchNorm statistics, so their conversion is exercised
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)

    ours = _model(width)
    assert _param_count(ours) == torch_param_count(reference)
    assert ours.feature_info.channels == reference.feature_info.channels()[1:]
    assert ours.feature_info.strides == NOMINAL

    load_converted(ours, convert_hrnet(torch_state_numpy(reference), {}))
    x = _input()
    features = _check_declared(ours, x)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))[1:]
    compare_features(features, expected, tol=1e-4)


def test_converter_drops_classification_head():
    timm = pytest.importorskip("timm")
    pytest.importorskip("torch")
    full = timm.create_model("hrnet_w18_small", pretrained=False)  # with incre/downsamp/final/classifier
    state = torch_state_numpy(full)
    assert any(k.startswith("incre_modules.") for k in state) and "classifier.weight" in state
    converted = convert_hrnet(state, {"output_stride": 8})
    head = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
    assert not any(k.startswith(head) for k in converted)
    load_converted(build_hrnet("18_small", output_stride=8), converted)


@pytest.mark.parametrize("width", sorted(PUBLISHED_CITYSCAPES_MPARAMS))
def test_param_count_matches_published_figure(width):
    # The published figure counts the HRNetV2 Cityscapes model: backbone + head (1×1 conv with bias
    # over the concatenated branches, BN, 1×1 classifier with bias to 19 classes).
    c = sum(_model(width).feature_info.channels)
    head = (c * c + c) + 2 * c + (c * 19 + 19)
    total = (_param_count(_model(width)) + head) / 1e6
    assert abs(total - PUBLISHED_CITYSCAPES_MPARAMS[width]) < 0.1, total


# ------------------------------------------------------------------------------------------------
# output stride
# ------------------------------------------------------------------------------------------------


# hrnet_w48 is built once, at output stride 32: the resampling for 16 and 8 does not depend on the width
@pytest.mark.parametrize("width, output_stride", [
    (w, s) for s in (32, 16, 8) for w in WIDTHS if s == 32 or w != "48"
])
def test_declared_levels_match_outputs(width, output_stride):
    model = _model(width, output_stride)
    assert model.feature_info.strides == [min(s, output_stride) for s in NOMINAL]
    assert model.feature_info.channels == _model(width).feature_info.channels
    _check_declared(model, _input())


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_sizes_not_divisible_by_32(output_stride):
    model = _model("18_small", output_stride)
    _check_declared(model, _input(65, 47, batch=2))


@pytest.mark.parametrize("output_stride", [16, 8])
def test_reduced_stride_upsamples_the_raw_branches(output_stride):
    torch = pytest.importorskip("torch")
    raw_model, model = _model("18_small_v2"), _model("18_small_v2", output_stride)
    model.set_state_dict(raw_model.state_dict())
    x = paddle.to_tensor(_input(seed=1))
    with paddle.no_grad():
        raw, resampled = raw_model(x), model(x)
    last = {16: 2, 8: 1}[output_stride]
    for i, (r, y) in enumerate(zip(raw, resampled)):
        if i <= last:
            np.testing.assert_array_equal(y.numpy(), r.numpy())
        else:
            expected = torch.nn.functional.interpolate(
                torch.from_numpy(r.numpy()), size=tuple(raw[last].shape[-2:]), mode="bilinear", align_corners=False)
            np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"width": "64"}, "width='64'"),
    ({"width": 17}, "width='17'"),
    ({"width": True}, "width=True"),
    ({"output_stride": 4}, "output_stride=4"),
    ({"output_stride": 64}, "output_stride=64"),
    ({"norm_momentum": 1.5}, "norm_momentum=1.5"),
    ({"norm_eps": 0.0}, "norm_eps=0.0"),
    ({"frozen_stages": 5}, "frozen_stages=5"),
    ({"frozen_stages": -2}, "frozen_stages=-2"),
    ({"freeze_bn_stats": "yes"}, "freeze_bn_stats='yes'"),
])
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")) as info:
        build_hrnet(**options)
    assert "\n" not in str(info.value)


def test_integer_width_from_yaml_is_accepted():
    """`width: 18` in YAML arrives as an int; it means the same as "18"."""
    assert build_hrnet(width=18).feature_info.channels == build_hrnet(width="18").feature_info.channels


def test_registered_with_options_and_converter():
    component = get_registry("backbone").get("hrnet")
    assert component.extras["convert_weights"] is convert_hrnet
    assert component.defaults() == {"width": "18", "output_stride": 32, "norm_momentum": 0.9, "norm_eps": 1e-5,
                                     "frozen_stages": -1, "freeze_bn_stats": False}
    model = component.factory(width="18_small", output_stride=16)
    assert isinstance(model, HRNet) and model.feature_info.strides == [4, 8, 16, 16]


def test_conv_init_is_kaiming_fan_out():
    conv = _model("18_small").stage4[0].branches[3][0].conv1  # 128 -> 128, 3×3
    assert abs(float(conv.weight.numpy().std()) - math.sqrt(2 / (128 * 9))) < 0.1 * math.sqrt(2 / (128 * 9))


def test_norm_options_reach_batchnorm():
    model = build_hrnet("18_small", norm_momentum=0.99, norm_eps=1e-3)
    norms = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert norms and all(m._momentum == 0.99 and m._epsilon == 1e-3 for m in norms)


# ------------------------------------------------------------------------------------------------
# freezing
# ------------------------------------------------------------------------------------------------


def _stats(layer: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in layer.state_dict().items() if k.endswith(("._mean", "._variance"))}


def _train_step(layer: paddle.nn.Layer, backbone: HRNet) -> None:
    layer.train()
    features = backbone(paddle.to_tensor(_input(batch=2, seed=3)))
    sum(f.mean() for f in features).backward()


FROZEN_AT_2 = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.", "stage2.")


@pytest.mark.parametrize("wrapped", [False, True])
def test_frozen_stages(wrapped):
    model = build_hrnet("18_small", frozen_stages=2)
    # a parent's train() does not call the backbone's train() in Paddle; freezing must still hold
    outer = paddle.nn.Sequential(model) if wrapped else model
    before = _stats(model)
    _train_step(outer, model)
    after = _stats(model)
    for name, param in model.named_parameters():
        if name.endswith(("._mean", "._variance")):
            continue
        frozen = name.startswith(FROZEN_AT_2)
        assert param.stop_gradient == frozen, name
        assert (param.grad is None) == frozen, name
    for name in before:
        unchanged = np.array_equal(before[name], after[name])
        assert unchanged == name.startswith(FROZEN_AT_2), name
    assert not model.bn1.training and not model.stage2[0].branches[0][0].bn1.training
    assert model.stage3[0].branches[0][0].bn1.training


def test_frozen_stem_only():
    model = build_hrnet("18_small", frozen_stages=0)
    assert model.conv1.weight.stop_gradient and model.bn2.weight.stop_gradient
    assert not model.layer1[0].conv1.weight.stop_gradient


def test_freeze_bn_stats():
    model = build_hrnet("18_small", freeze_bn_stats=True)
    outer = paddle.nn.Sequential(model)
    before = _stats(model)
    _train_step(outer, model)
    after = _stats(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(not p.stop_gradient and p.grad is not None
               for n, p in model.named_parameters() if not n.endswith(("._mean", "._variance")))
    model.train()
    assert model.training and not any(m.training for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D))


def test_unfrozen_batchnorm_updates_statistics():
    model = build_hrnet("18_small")
    before = _stats(model)
    _train_step(model, model)
    after = _stats(model)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
