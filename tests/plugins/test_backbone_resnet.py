"""ResNet / ResNeXt backbone plugin: timm and torchvision parity, dilation, freezing, options."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from semsegpaddle.core.model.interfaces import Backbone
from semsegpaddle.core.plugin.manager import new_state
from semsegpaddle.plugins.backbones import resnet as resnet_plugin
from semsegpaddle.plugins.backbones.resnet import build_resnet, build_resnext, convert_resnet

INPUT = np.random.RandomState(0).randn(1, 3, 64, 64).astype("float32")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def param_count(layer: paddle.nn.Layer) -> int:
    """Learnable parameters: Paddle lists BatchNorm running statistics as parameters, skip them."""
    return int(sum(np.prod(p.shape) for n, p in layer.named_parameters()
                   if not n.endswith(("._mean", "._variance"))))


def randomize_batchnorm(module, seed: int = 0) -> None:
    """Random BN affine parameters and statistics: timm zero-inits each block's last BN weight,
    which would make the residual branches vanish and the parity check blind to them."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            n = bn.num_features
            with torch.no_grad():
                bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                bn.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                bn.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def check_declared_levels(model: Backbone, features: list) -> None:
    """feature_info channels and strides agree with the real output shapes."""
    assert len(features) == len(model.feature_info) == 4
    for level, feature in zip(model.feature_info, features):
        n, c, h, w = feature.shape
        assert c == level.channels, (level, feature.shape)
        assert (h, w) == (-(-64 // level.stride), -(-64 // level.stride)), (level, feature.shape)


def check_parity(ours: Backbone, reference, reference_features) -> None:
    """Same parameter count; converted weights load strictly; features match at every level."""
    from tests.helpers.parity import compare_features, load_converted, torch_param_count, torch_state_numpy

    assert param_count(ours) == torch_param_count(reference, exclude_prefixes=("fc.",))
    load_converted(ours, convert_resnet(torch_state_numpy(reference), {}))
    ours.eval()
    features = ours(paddle.to_tensor(INPUT))
    check_declared_levels(ours, features)
    compare_features(features, reference_features, tol=1e-4)


# (timm model, our factory, our options, output stride)
TIMM_CASES = [
    ("resnet18", build_resnet, {"depth": 18}, 32),
    ("resnet34", build_resnet, {"depth": 34}, 32),
    ("resnet50", build_resnet, {"depth": 50}, 32),
    ("resnet101", build_resnet, {"depth": 101}, 32),
    ("resnet152", build_resnet, {"depth": 152}, 32),
    ("resnet50c", build_resnet, {"depth": 50, "stem": "deep"}, 32),
    ("resnet50d", build_resnet, {"depth": 50, "stem": "deep_avgdown"}, 32),
    ("resnet18d", build_resnet, {"depth": 18, "stem": "deep_avgdown"}, 32),
    ("resnext50_32x4d", build_resnext, {"variant": "50_32x4d"}, 32),
    ("resnext101_32x8d", build_resnext, {"variant": "101_32x8d"}, 32),
    ("resnext101_64x4d", build_resnext, {"variant": "101_64x4d"}, 32),
    ("resnext50d_32x4d", build_resnext, {"variant": "50_32x4d", "stem": "deep_avgdown"}, 32),
    # dilated: plain shortcut (resnet50), avg-down shortcut over a dilated stage, basic blocks
    ("resnet50", build_resnet, {"depth": 50}, 16),
    ("resnet50", build_resnet, {"depth": 50}, 8),
    ("resnet50d", build_resnet, {"depth": 50, "stem": "deep_avgdown"}, 8),
    ("resnet18d", build_resnet, {"depth": 18, "stem": "deep_avgdown"}, 16),
]


@pytest.mark.parametrize(
    "timm_name, factory, options, output_stride", TIMM_CASES,
    ids=[f"{c[0]}-os{c[3]}" for c in TIMM_CASES],
)
def test_matches_timm(timm_name, factory, options, output_stride):
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    reference = timm.create_model(timm_name, pretrained=False, output_stride=output_stride).eval()
    randomize_batchnorm(reference)
    with torch.no_grad():
        expected = reference.forward_intermediates(
            torch.from_numpy(INPUT), indices=[1, 2, 3, 4], intermediates_only=True)
    ours = factory(output_stride=output_stride, **options)
    expected_strides = {32: [4, 8, 16, 32], 16: [4, 8, 16, 16], 8: [4, 8, 8, 8]}[output_stride]
    assert ours.feature_info.strides == expected_strides
    check_parity(ours, reference, expected)


def test_converts_torchvision_resnet50():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet50(weights=None).eval()
    randomize_batchnorm(reference, seed=1)
    expected = []
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(torch.from_numpy(INPUT)))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(reference, name)(x)
            expected.append(x)
    check_parity(build_resnet(depth=50), reference, expected)


@pytest.mark.parametrize("factory, options, output_stride", [
    *[(build_resnet, {"depth": 18}, os) for os in (8, 16, 32)],
    *[(build_resnet, {"depth": 18, "stem": "deep_avgdown"}, os) for os in (8, 16, 32)],
    (build_resnext, {"variant": "50_32x4d", "stem": "deep"}, 8),
])
def test_declared_levels_match_outputs(factory, options, output_stride):
    model = factory(output_stride=output_stride, **options).eval()
    check_declared_levels(model, model(paddle.to_tensor(INPUT)))
    assert model.feature_info.strides[-1] == output_stride


def dilations(stage) -> list[list[int]]:
    """Dilation of each block's 3×3 convs (conv1+conv2 of a basic block, conv2 of a bottleneck)."""
    result = []
    for block in stage:
        convs = [block.conv2] if hasattr(block, "conv3") else [block.conv1, block.conv2]
        for conv in convs:
            assert conv._padding == conv._dilation[0]  # a 3×3 conv keeps the size
        result.append([conv._dilation[0] for conv in convs])
    return result


def test_dilation_follows_timm_first_block_rule():
    model = build_resnet(depth=50, output_stride=8)
    assert dilations(model.layer3) == [[1]] + [[2]] * 5
    assert dilations(model.layer4) == [[2], [4], [4]]


@pytest.mark.parametrize("output_stride, layer3, layer4", [
    (32, [[1]] * 6, [[1], [2], [4]]),
    (16, [[1]] * 6, [[2], [4], [8]]),
    (8, [[1]] + [[2]] * 5, [[4], [8], [16]]),
])
def test_multi_grid_sets_layer4_dilations(output_stride, layer3, layer4):
    model = build_resnet(depth=50, output_stride=output_stride, multi_grid=[1, 2, 4]).eval()
    assert dilations(model.layer4) == layer4
    assert dilations(model.layer3) == layer3  # multi_grid leaves layer3 alone
    check_declared_levels(model, model(paddle.to_tensor(INPUT)))


def test_multi_grid_basic_blocks_and_resnext():
    assert dilations(build_resnet(depth=18, output_stride=16, multi_grid=[1, 3]).layer4) == [[2, 2], [6, 6]]
    assert dilations(build_resnext(output_stride=16, multi_grid=[1, 2, 4]).layer4) == [[2], [4], [8]]


def batchnorms(layer) -> list:
    return [s for s in layer.sublayers(include_self=True) if isinstance(s, paddle.nn.BatchNorm2D)]


class Parent(paddle.nn.Layer):
    """A segmentation model stand-in: Paddle's train() on it never calls the backbone's train()."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


@pytest.mark.parametrize("stem", ["standard", "deep"])
def test_frozen_stages(stem):
    model = build_resnet(depth=18, stem=stem, frozen_stages=2)
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    trainable = [model.layer3, model.layer4]
    assert all(p.stop_gradient for part in frozen for p in part.parameters())
    assert not any(p.stop_gradient for part in trainable for n, p in part.named_parameters()
                   if not n.endswith(("_mean", "_variance")))
    model.train()
    assert not any(bn.training for part in frozen for bn in batchnorms(part))
    assert all(bn.training for part in trainable for bn in batchnorms(part))

    parent = Parent(model)
    parent.eval()
    parent.train()
    before = {id(bn): bn._mean.numpy().copy() for bn in batchnorms(model)}
    out = parent(paddle.to_tensor(INPUT))
    sum(o.mean() for o in out).backward()
    for part in frozen:
        for bn in batchnorms(part):
            np.testing.assert_array_equal(bn._mean.numpy(), before[id(bn)])
        assert all(p.grad is None for p in part.parameters())
    for bn in batchnorms(model.layer3):
        assert not np.array_equal(bn._mean.numpy(), before[id(bn)])
    assert model.layer3[0].conv1.weight.grad is not None


def test_frozen_stem_only():
    model = build_resnet(depth=18, stem="deep", frozen_stages=0).train()
    assert all(p.stop_gradient for p in model.conv1.parameters())
    assert not any(bn.training for bn in batchnorms(model.conv1) + [model.bn1])
    assert not model.layer1[0].conv1.weight.stop_gradient
    assert all(bn.training for bn in batchnorms(model.layer1))


def test_freeze_bn_stats():
    model = build_resnet(depth=18, freeze_bn_stats=True)
    parent = Parent(model)
    parent.train()
    before = [bn._mean.numpy().copy() for bn in batchnorms(model)]
    parent(paddle.to_tensor(INPUT))
    assert not any(bn.training for bn in batchnorms(model))
    for bn, mean in zip(batchnorms(model), before):
        np.testing.assert_array_equal(bn._mean.numpy(), mean)
    assert not model.bn1.weight.stop_gradient and not model.conv1.weight.stop_gradient


def test_training_mode_updates_statistics_by_default():
    model = build_resnet(depth=18).train()
    before = model.bn1._mean.numpy().copy()
    model(paddle.to_tensor(INPUT))
    assert not np.array_equal(model.bn1._mean.numpy(), before)


def test_norm_options_reach_batchnorm():
    model = build_resnext(stem="deep", norm_momentum=0.99, norm_eps=1e-3)
    assert {(bn._momentum, bn._epsilon) for bn in batchnorms(model)} == {(0.99, 1e-3)}


@pytest.mark.parametrize("factory, options, message", [
    (build_resnet, {"depth": 20}, "depth=20"),
    (build_resnext, {"variant": "50_32x8d"}, "variant='50_32x8d'"),
    (build_resnet, {"stem": "v1d"}, "stem='v1d'"),
    (build_resnet, {"output_stride": 4}, "output_stride=4"),
    (build_resnext, {"output_stride": "16"}, "output_stride='16'"),
    (build_resnet, {"multi_grid": [1, 2]}, r"multi_grid=\[1, 2\].*3 entries"),
    (build_resnet, {"depth": 18, "multi_grid": [1, 2, 4]}, r"multi_grid=\[1, 2, 4\].*2 entries"),
    (build_resnet, {"multi_grid": [1, 0, 2]}, "positive integers"),
    (build_resnet, {"frozen_stages": 5}, "frozen_stages=5"),
    (build_resnet, {"norm_momentum": 1.5}, "norm_momentum=1.5"),
    (build_resnet, {"norm_eps": 0}, "norm_eps=0"),
    (build_resnet, {"freeze_bn_stats": "yes"}, "freeze_bn_stats='yes'"),
])
def test_bad_options(factory, options, message):
    with pytest.raises(ValueError, match=message):
        factory(**options)


def test_converter_drops_classifier_and_renames_batchnorm_buffers():
    state = {
        "conv1.weight": np.zeros((64, 3, 7, 7), "float32"),
        "bn1.running_mean": np.zeros(64, "float32"),
        "bn1.running_var": np.ones(64, "float32"),
        "bn1.num_batches_tracked": np.zeros((), "int64"),
        "fc.weight": np.zeros((1000, 2048), "float32"),
        "fc.bias": np.zeros(1000, "float32"),
    }
    assert sorted(convert_resnet(state, {})) == ["bn1._mean", "bn1._variance", "conv1.weight"]


def test_hook_registers_both_backbones():
    state = new_state(plugins=[(resnet_plugin, "resnet-test")], entry_points=False)
    registry = state.registries["backbone"]
    assert {"resnet", "resnext"} <= set(registry.names())
    common = {"stem", "output_stride", "multi_grid", "norm_momentum", "norm_eps", "frozen_stages",
              "freeze_bn_stats", "stem_channels", "dilation_style", "multi_grid_mode"}
    resnet, resnext = registry.get("resnet"), registry.get("resnext")
    assert {o.name for o in resnet.options} == common | {"depth"}
    assert {o.name for o in resnext.options} == common | {"variant"}
    assert resnet.defaults()["depth"] == 50 and resnext.defaults()["variant"] == "50_32x4d"
    assert resnet.option("multi_grid").type_name in ("list[int] | None", "typing.Optional[list[int]]")
    assert resnet.extras["convert_weights"] is convert_resnet
    assert isinstance(resnet.factory(depth=18), Backbone)
    assert resnet.plugin == "resnet-test" and not state.failures
