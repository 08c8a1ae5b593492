"""ResNet options that reproduce other codebases' ResNets, and their checkpoints' names.

- PaddleSeg 2.8 ``ResNet50_vd``/``ResNet101_vd`` at output stride 8, with and without
  ``multi_grid`` (1, 2, 4): ``stem: deep_avgdown, dilation_style: paddleseg``, loaded through the
  ``paddleseg`` weight source; every feature level compared.
- torchvision's ``deeplabv3_resnet50/101`` backbones (``replace_stride_with_dilation=[False, True,
  True]``): the default options (timm's dilation rule), loaded through the ``torchvision`` source.
- The SemSegPaddle seed: structure of its options (absolute multi-grid 2/4/8, a 64-64-128 deep
  stem) and the names of its static-graph parameters (no runnable reference: fluid is gone).
"""
from __future__ import annotations

import functools

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.plugin.manager import new_state
from semsegpaddle.plugins.backbones import resnet as resnet_plugin
from semsegpaddle.plugins.backbones.resnet import (
    build_resnet, build_resnext, paddleseg_names, seed_names, torchvision_names,
)

from tests.helpers.parity import compare_features, load_converted, paddle_param_count, torch_param_count

SIZES = [(64, 64), (48, 80)]
INPUTS = {size: np.random.RandomState(1).randn(1, 3, *size).astype("float32") for size in SIZES}
#: our options for PaddleSeg's ResNet_vd at output stride 8 (multi_grid added per case)
PADDLESEG_VD = {"stem": "deep_avgdown", "output_stride": 8, "dilation_style": "paddleseg"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomize_paddle_batchnorm(layer: paddle.nn.Layer, seed: int) -> None:
    """Random affine parameters AND running statistics in every BatchNorm of a Paddle reference."""
    rng = np.random.RandomState(seed)
    for bn in layer.sublayers():
        if isinstance(bn, paddle.nn.BatchNorm2D):
            n = bn.weight.shape[0]
            bn.weight.set_value((rng.rand(n) + 0.5).astype("float32"))
            bn.bias.set_value((rng.rand(n) * 0.4 - 0.2).astype("float32"))
            bn._mean.set_value((rng.rand(n) * 0.4 - 0.2).astype("float32"))
            bn._variance.set_value((rng.rand(n) + 0.5).astype("float32"))


def randomize_torch_batchnorm(module, seed: int) -> None:
    """The same for a torch reference."""
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


def load_through(names_fn, state: dict[str, np.ndarray], ours: paddle.nn.Layer, options: dict) -> dict[str, str]:
    """Name map from ``names_fn``, checked to take existing tensors and fill every one of ours; loaded strictly."""
    names = names_fn(list(state), options)
    assert set(names.values()) <= set(state)
    assert len(set(names.values())) == len(names)  # no source tensor used twice
    assert set(names) == set(ours.state_dict())
    load_converted(ours, {local: state[source] for local, source in names.items()})
    return names


def dilations(stage) -> list[int]:
    """Dilation of each block's first 3×3 conv (a bottleneck's conv2, a basic block's conv1)."""
    return [(block.conv2 if hasattr(block, "conv3") else block.conv1)._dilation[0] for block in stage]


# -------------------------------------------------------------------------------------------------
# PaddleSeg ResNet_vd
# -------------------------------------------------------------------------------------------------

PADDLESEG_CASES = [(50, None), (50, [1, 2, 4]), (101, None), (101, [1, 2, 4])]
PADDLESEG_IDS = [f"r{depth}-mg{'124' if grid else 'none'}" for depth, grid in PADDLESEG_CASES]


@functools.lru_cache(maxsize=None)
def paddleseg_reference(depth: int, multi_grid: tuple[int, ...] | None):
    """PaddleSeg's ResNet_vd at output stride 8 with random BN, in eval mode, and its state as a zoo
    model's checkpoint names it (``backbone.`` prefix, plus a head tensor); built once per module."""
    from paddleseg.models.backbones import resnet_vd

    paddle.seed(depth)
    extra = {} if multi_grid is None else {"multi_grid": multi_grid}
    reference = resnet_vd.ResNet_vd(layers=depth, output_stride=8, **extra)
    randomize_paddle_batchnorm(reference, seed=depth)
    reference.eval()
    state = {f"backbone.{k}": v.numpy() for k, v in reference.state_dict().items()}
    state["head.cls.weight"] = np.zeros((19, 2048, 1, 1), "float32")
    return reference, state


@pytest.fixture(scope="module", params=PADDLESEG_CASES, ids=PADDLESEG_IDS)
def paddleseg_pair(request):
    """(reference ResNet_vd, ours loaded through ``paddleseg_names``, our options), built once per case."""
    depth, multi_grid = request.param
    reference, state = paddleseg_reference(depth, None if multi_grid is None else tuple(multi_grid))
    options = {"depth": depth, **PADDLESEG_VD, "multi_grid": multi_grid}
    ours = build_resnet(**options)
    load_through(paddleseg_names, state, ours, options)
    ours.eval()
    return reference, ours, options


@pytest.mark.parametrize("size", SIZES, ids=["64x64", "48x80"])
def test_matches_paddleseg_resnet_vd(paddleseg_pair, size):
    reference, ours, _ = paddleseg_pair
    x = INPUTS[size]
    with paddle.no_grad():
        expected = [f.numpy() for f in reference(paddle.to_tensor(x))]
        features = ours(paddle.to_tensor(x))
    errors = compare_features(features, expected, tol=1e-4)
    assert [f.shape[1] for f in features] == [256, 512, 1024, 2048]
    assert [size[0] // f.shape[2] for f in features] == ours.feature_info.strides == [4, 8, 8, 8]
    print(f"paddleseg {ours.feature_info.strides} {size}: relative errors {errors}")


def test_parameter_count_matches_paddleseg(paddleseg_pair):
    reference, ours, options = paddleseg_pair
    assert paddle_param_count(ours) == paddle_param_count(reference)
    # measured with PaddleSeg 2.8: learnable parameters, BN statistics excluded
    expected = {50: 23_527_264, 101: 42_519_392}[options["depth"]]
    assert paddle_param_count(ours) == expected


def test_paddleseg_dilation_rule_structure():
    """First block of a dilated stage at the stage's dilation; no pool on a dilated avg-down shortcut."""
    plain = build_resnet(depth=18, **PADDLESEG_VD)
    assert dilations(plain.layer3) == [2, 2] and dilations(plain.layer4) == [4, 4]
    assert isinstance(plain.layer3[0].downsample[0], paddle.nn.Identity)
    assert isinstance(plain.layer4[0].downsample[0], paddle.nn.Identity)
    assert isinstance(plain.layer2[0].downsample[0], paddle.nn.AvgPool2D)
    grid = build_resnet(depth=18, **PADDLESEG_VD, multi_grid=[1, 2])
    assert dilations(grid.layer4) == [4, 8]
    timm = build_resnet(depth=18, stem="deep_avgdown", output_stride=8)
    assert dilations(timm.layer3) == [1, 2] and dilations(timm.layer4) == [2, 4]
    assert not isinstance(timm.layer3[0].downsample[0], paddle.nn.Identity)


def test_paddleseg_rule_changes_the_output():
    """Loaded with the same PaddleSeg-named weights, the timm rule computes something else."""
    reference, state = paddleseg_reference(50, None)
    options = {"stem": "deep_avgdown", "output_stride": 8}
    with pytest.raises(SemsegError, match="dilation_style: paddleseg"):
        paddleseg_names(list(state), options)
    names = paddleseg_names(list(state), {**options, "dilation_style": "paddleseg"})
    timm_rule = build_resnet(**options)
    load_converted(timm_rule, {local: state[source] for local, source in names.items()})
    x = paddle.to_tensor(INPUTS[(64, 64)])
    with paddle.no_grad():
        expected = reference(x)[2].numpy()
        got = timm_rule.eval()(x)[2].numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() > 1e-2


# -------------------------------------------------------------------------------------------------
# torchvision segmentation backbones
# -------------------------------------------------------------------------------------------------


def normalised_torch_state(module) -> dict[str, np.ndarray]:
    """A torch state dict as the core hands it to weight sources: BN buffers renamed, counters dropped."""
    from semsegpaddle.core.model.weights import torch_to_paddle_names

    return torch_to_paddle_names({k: v.detach().numpy() for k, v in module.state_dict().items()})


@pytest.fixture(scope="module", params=[50, 101], ids=["r50", "r101"])
def torchvision_pair(request):
    """(torchvision DeepLabv3 backbone, ours loaded through ``torchvision_names``), once per depth."""
    pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")

    depth = request.param
    factory = {50: segmentation.deeplabv3_resnet50, 101: segmentation.deeplabv3_resnet101}[depth]
    model = factory(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    randomize_torch_batchnorm(model, seed=depth)
    ours = build_resnet(depth=depth, output_stride=8)
    names = load_through(torchvision_names, normalised_torch_state(model), ours, {"depth": depth, "output_stride": 8})
    assert all(source.startswith("backbone.") for source in names.values())
    return model.backbone, ours.eval()


@pytest.mark.parametrize("size", SIZES, ids=["64x64", "48x80"])
def test_matches_torchvision_deeplabv3_backbone(torchvision_pair, size):
    import torch

    reference, ours = torchvision_pair
    x = INPUTS[size]
    with torch.no_grad():
        out = reference(torch.from_numpy(x))
    features = ours(paddle.to_tensor(x))
    errors = compare_features(features[2:], [out["aux"], out["out"]], tol=1e-4)
    print(f"torchvision {size}: layer3/layer4 relative errors {errors}")


def test_parameter_count_matches_torchvision(torchvision_pair):
    reference, ours = torchvision_pair
    assert paddle_param_count(ours) == torch_param_count(reference)


def torch_keys(factory, **kwargs) -> list[str]:
    """Normalised state-dict names of a torchvision model, built on the meta device (no weights)."""
    import torch

    from semsegpaddle.core.model.weights import torch_to_paddle_names

    with torch.device("meta"):
        model = factory(weights=None, **kwargs)
    return list(torch_to_paddle_names(dict.fromkeys(model.state_dict())))


def test_torchvision_names_cover_fcn_and_classification_checkpoints():
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    models = pytest.importorskip("torchvision.models")

    fcn = torch_keys(segmentation.fcn_resnet101, weights_backbone=None, aux_loss=True)
    deeplab = torch_keys(segmentation.deeplabv3_resnet101, weights_backbone=None, aux_loss=True)
    names = torchvision_names(fcn, {"depth": 101, "output_stride": 8})
    assert names == torchvision_names(deeplab, {"depth": 101, "output_stride": 8})  # one backbone
    assert len(names) == len([k for k in fcn if k.startswith("backbone.")])
    classifier = torch_keys(models.resnet18)
    names = torchvision_names(classifier, {"depth": 18})
    assert set(names) == set(build_resnet(depth=18).state_dict())
    assert not any(source.startswith("fc.") for source in names.values())
    resnext = torch_keys(models.resnext50_32x4d)
    assert set(torchvision_names(resnext, {})) == set(build_resnext().state_dict())


# -------------------------------------------------------------------------------------------------
# the SemSegPaddle seed
# -------------------------------------------------------------------------------------------------

#: the seed's dygraph ResNet-101 (PSPNet/GloRe): 7×7 stem, torchvision's rule, layer4 dilations 2/4/8
SEED_DYGRAPH = {"depth": 101, "output_stride": 8, "multi_grid": [2, 4, 8], "multi_grid_mode": "absolute"}
#: the seed's static-graph ResNet-101: deep stem 64-64-128, strided 1×1 shortcuts, the stage's
#: dilation from each stage's first block, multi-grid 1/2/4 times layer4's dilation
SEED_STATIC = {"depth": 101, "stem": "deep", "stem_channels": 128, "output_stride": 8,
               "dilation_style": "paddleseg", "multi_grid": [1, 2, 4]}


def test_seed_dygraph_structure():
    model = build_resnet(**{**SEED_DYGRAPH, "depth": 50})  # the same stages as 101, fewer layer3 blocks
    assert dilations(model.layer3) == [1] + [2] * 5
    assert dilations(model.layer4) == [2, 4, 8]
    assert [block.conv2._stride[0] for block in model.layer4] == [1, 1, 1]
    assert list(model.conv1.weight.shape) == [64, 3, 7, 7]


def test_seed_static_structure_and_names():
    model = build_resnet(**SEED_STATIC)
    assert [list(model.conv1[i].weight.shape) for i in (0, 3, 6)] == [[64, 3, 3, 3], [64, 64, 3, 3], [128, 64, 3, 3]]
    assert list(model.layer1[0].downsample[0].weight.shape) == [256, 128, 1, 1]
    assert dilations(model.layer3) == [2] * 23 and dilations(model.layer4) == [4, 8, 16]
    assert model.layer2[0].downsample[0]._stride == [2, 2]

    # the seed's parameter names, as its static ResNet names them: conv "<name>_weights", BatchNorm
    # "bn" + name[3:] + "_{scale,offset,mean,variance}" (so the stem's are "bnv1_1_scale", ...)
    blocks = ([f"res2{c}" for c in "abc"] + [f"res3{c}" for c in "abcd"]
              + ["res4a"] + [f"res4b{i}" for i in range(1, 23)] + [f"res5{c}" for c in "abc"])
    convs = ["conv1_1", "conv1_2", "conv1_3"]
    for block in blocks:
        convs += [f"{block}_branch2a", f"{block}_branch2b", f"{block}_branch2c"]
        if block.endswith("a"):
            convs.append(f"{block}_branch1")
    keys = [f"{c}_weights" for c in convs]
    keys += [f"bn{c[3:]}_{leaf}" for c in convs for leaf in ("scale", "offset", "mean", "variance")]
    keys += ["fc_0.w_0", "fc_0.b_0"]
    names = seed_names(keys, SEED_STATIC)
    assert set(names) == set(model.state_dict()) and len(set(names.values())) == len(names)
    assert set(keys) - set(names.values()) == {"fc_0.w_0", "fc_0.b_0"}
    assert names["layer3.22.conv2.weight"] == "res4b22_branch2b_weights"
    assert names["layer3.22.bn2.weight"] == "bn4b22_branch2b_scale"
    assert names["layer4.0.downsample.1._variance"] == "bn5a_branch1_variance"
    assert names["conv1.0.weight"] == "conv1_1_weights" and names["bn1.bias"] == "bnv1_3_offset"
    assert names["conv1.4._mean"] == "bnv1_2_mean"


# -------------------------------------------------------------------------------------------------
# bad values, registration
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, options, message", [
    (build_resnet, {"dilation_style": "mmseg"},
     r"dilation_style='mmseg' is invalid: expected one of timm, paddleseg"),
    (build_resnext, {"dilation_style": None}, r"dilation_style=None"),
    (build_resnet, {"multi_grid_mode": "times"}, r"multi_grid_mode='times' is invalid: expected one of relative"),
    (build_resnet, {"stem_channels": 0}, r"stem_channels=0 is invalid: expected a positive integer"),
    (build_resnet, {"stem": "deep", "stem_channels": 63}, r"stem_channels=63 is invalid: expected a positive even"),
    (build_resnet, {"stem_channels": "64"}, r"stem_channels='64'"),
    (build_resnet, {"stem_channels": True}, r"stem_channels=True"),
])
def test_bad_option_is_one_line_error(factory, options, message):
    with pytest.raises(ValueError, match=message) as info:
        factory(**options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("names_fn, keys, options, message", [
    (paddleseg_names, ["backbone.conv1_1._conv.weight"], {}, "need backbone options stem: deep_avgdown"),
    (paddleseg_names, ["backbone.conv1_1._conv.weight"], {"depth": 18, "stem": "deep_avgdown"},
     "depth 50, 101 or 152"),
    (paddleseg_names, ["backbone.conv1_1._conv.weight", "backbone.bb_2_0.conv0._conv.weight"],
     {"depth": 101, "stem": "deep_avgdown"}, "1 blocks in its third stage, depth 101 has 23"),
    (paddleseg_names, ["backbone.conv1.weight"], {"stem": "deep_avgdown"}, "not PaddleSeg ResNet_vd weights"),
    (torchvision_names, ["backbone.conv1_1._conv.weight"], {}, "not torchvision ResNet weights"),
    (torchvision_names, ["backbone.layer1.0.conv1.weight"], {"output_stride": 8, "dilation_style": "paddleseg"},
     "dilation_style: timm"),
    (seed_names, ["conv1_1_weights"], {"depth": 50, "stem": "deep", "stem_channels": 128}, "depth: 101"),
    (seed_names, ["conv1.weight"], {"depth": 101, "stem": "deep", "stem_channels": 128},
     "no tensor 'conv1_1_weights'"),
])
def test_names_refuse_other_checkpoints_in_one_line(names_fn, keys, options, message):
    with pytest.raises(SemsegError, match=message) as info:
        names_fn(keys, options)
    assert "\n" not in str(info.value)


def test_registration_offers_the_options_and_weight_sources():
    state = new_state(plugins=[(resnet_plugin, "resnet-test")], entry_points=False)
    registry = state.registries["backbone"]
    for name in ("resnet", "resnext"):
        component = registry.get(name)
        defaults = component.defaults()
        assert (defaults["stem_channels"], defaults["dilation_style"], defaults["multi_grid_mode"]) == (
            64, "timm", "relative")
        assert all(component.option(o).description for o in ("stem_channels", "dilation_style", "multi_grid_mode"))
    assert registry.get("resnet").extras["weight_sources"] == {
        "paddleseg": paddleseg_names, "torchvision": torchvision_names, "seed": seed_names}
    assert registry.get("resnext").extras["weight_sources"] == {"torchvision": torchvision_names}
