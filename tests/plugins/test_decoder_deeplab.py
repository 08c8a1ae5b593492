"""DeepLabv3 and DeepLabv3+ heads: PaddleSeg's parameter counts, shapes, gradients, learning,
listing, lazy registration, a CLI run each."""
from __future__ import annotations

import json

import pytest

from semsegpaddle.core.model.interfaces import FeatureInfo, FeatureLevel

from tests.helpers.cli import invoke
from tests.helpers.decoder_checks import (
    RESNET50_OS8, assert_every_parameter_learns, assert_exports, build, count_parameters, entry_point_module,
    import_without_paddle, overfit, resnet18_features, small_info, train_through_cli,
)

#: PaddleSeg 2.8 DeepLabV3 (aspp_out_channels 256, aspp_ratios 1/6/12/18: its rate 1 is our 1×1
#: branch); its convs before BatchNorm have a bias except the image-pooling one.
PADDLESEG_DEEPLABV3 = {"channels": 256, "atrous_rates": [6, 12, 18], "conv_bias": True}
#: PaddleSeg 2.8 DeepLabV3P (backbone_indices 0/3, same ASPP but separable): 48-channel low-level
#: projection, two separable 3×3 convs of 256 (each depthwise conv with a bias too).
PADDLESEG_DEEPLABV3P = {**PADDLESEG_DEEPLABV3, "low_level": 0, "low_level_channels": 48,
                        "decoder_channels": 256, "separable": True}
#: measured with PaddleSeg 2.8, ResNet50_vd OS8, 19 classes (BN statistics included)
PADDLESEG_HEAD_PARAMETERS = {"deeplabv3": 15_544_339, "deeplabv3p": 3_213_731}
PADDLESEG_CONFIGS = {"deeplabv3": PADDLESEG_DEEPLABV3, "deeplabv3p": PADDLESEG_DEEPLABV3P}


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3p"])
def test_parameter_count_matches_paddleseg(name):
    head = build(name, RESNET50_OS8, 19, **PADDLESEG_CONFIGS[name])
    assert count_parameters(head) == PADDLESEG_HEAD_PARAMETERS[name]


def test_conv_bias_spares_the_image_pooling_conv():
    """Five of ASPP's six convs before BatchNorm get a bias: 1×1, three atrous, the projection."""
    with_bias = count_parameters(build("deeplabv3", RESNET50_OS8, 19, **PADDLESEG_DEEPLABV3))
    without = count_parameters(build("deeplabv3", RESNET50_OS8, 19, **{**PADDLESEG_DEEPLABV3, "conv_bias": False}))
    assert with_bias - without == 5 * 256


def test_separable_convs_are_depthwise_then_pointwise():
    head = build("deeplabv3p", RESNET50_OS8, 19)
    depthwise, pointwise = head.aspp.branches[1]
    assert list(depthwise[0].weight.shape) == [2048, 1, 3, 3] and depthwise[0]._dilation == [12, 12]
    assert list(pointwise[0].weight.shape) == [256, 2048, 1, 1]
    assert list(head.fuse[0][0][0].weight.shape) == [304, 1, 3, 3]
    dense = build("deeplabv3p", RESNET50_OS8, 19, separable=False)
    assert list(dense.aspp.branches[1][0].weight.shape) == [256, 2048, 3, 3]
    assert list(dense.fuse[0][0].weight.shape) == [256, 304, 3, 3]


def test_deeplabv3p_takes_the_stride_4_level_by_default():
    assert build("deeplabv3p", RESNET50_OS8, 19).low_level == 0
    info = FeatureInfo([FeatureLevel(8, 2, "a"), FeatureLevel(16, 4, "b"), FeatureLevel(32, 8, "c")])
    assert build("deeplabv3p", info, 3).low_level == 1
    info = FeatureInfo([FeatureLevel(16, 8, "a"), FeatureLevel(32, 16, "b")])
    assert build("deeplabv3p", info, 3).low_level == 0
    assert build("deeplabv3p", RESNET50_OS8, 19, low_level=1).low_level == 1


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_shapes(output_stride):
    info, features = resnet18_features(output_stride, 64, 48)
    v3 = build("deeplabv3", info, 5, channels=32)
    v3p = build("deeplabv3p", info, 5, channels=32, decoder_channels=32)
    v3.eval(), v3p.eval()
    assert v3(features).shape == [2, 5, 64 // output_stride, 48 // output_stride]
    assert v3p(features).shape == [2, 5, 16, 12]  # at the stride-4 level's resolution
    assert v3.rates == ([12, 24, 36] if output_stride == 8 else [6, 12, 18])


@pytest.mark.parametrize("name, options", [
    ("deeplabv3", {"conv_bias": True}),
    ("deeplabv3p", {"conv_bias": True}),
    ("deeplabv3p", {"separable": False}),
])
def test_every_parameter_gets_a_gradient(name, options):
    info = small_info(strides=(4, 8, 16, 16))
    head = build(name, info, 4, channels=16, **({"decoder_channels": 16} if name == "deeplabv3p" else {}), **options)
    assert_every_parameter_learns(head, info, 4)


@pytest.mark.parametrize("name, options", [
    ("deeplabv3", {"channels": 32, "in_level": 1}),
    ("deeplabv3p", {"channels": 32, "decoder_channels": 32, "low_level_channels": 16}),
])
def test_overfits_one_batch(name, options):
    first, last = overfit(lambda info, n: build(name, info, n, **options), steps=100)
    assert last <= 0.1 * first, (first, last)


@pytest.mark.parametrize("name, options, message", [
    ("deeplabv3", {"in_level": -5}, "in_level=-5 is out of range"),
    ("deeplabv3", {"atrous_rates": []}, "atrous_rates=[]"),
    ("deeplabv3", {"dropout": -0.1}, "dropout=-0.1"),
    ("deeplabv3p", {"low_level": 4}, "low_level=4 is out of range"),
    ("deeplabv3p", {"low_level_channels": 0}, "low_level_channels=0"),
    ("deeplabv3p", {"decoder_channels": 0}, "decoder_channels=0"),
    ("deeplabv3p", {"atrous_rates": [6, 0]}, "atrous_rates=[6, 0]"),
])
def test_bad_options_name_the_option(name, options, message):
    with pytest.raises(ValueError) as info:
        build(name, RESNET50_OS8, 19, **options)
    assert message in str(info.value)


def test_listed_with_their_options():
    result = invoke("list", "decoder", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: {o["name"]: o for o in r["options"]} for r in json.loads(result.output)}
    aspp = {"channels", "atrous_rates", "dropout", "in_level", "conv_bias"}
    assert set(rows["deeplabv3"]) == aspp | {"refine_conv"}
    assert set(rows["deeplabv3p"]) == aspp | {"low_level", "low_level_channels", "decoder_channels", "separable",
                                              "depthwise_relu", "align_corners"}
    assert rows["deeplabv3p"]["separable"]["default"] is True
    assert rows["deeplabv3p"]["low_level_channels"]["default"] == 48
    text = invoke("list", "decoder").output
    for name in ("deeplabv3", "deeplabv3p"):
        assert f"  {name}  [plugin {name}, semsegpaddle" in text
    assert "separable: bool = True" in text


@pytest.mark.parametrize("name, module", [
    ("deeplabv3", "semsegpaddle.plugins.decoders.deeplab"),
    ("deeplabv3p", "semsegpaddle.plugins.decoders.deeplabv3p"),
])
def test_entry_point_module_imports_without_paddle(name, module):
    assert entry_point_module(name) == module
    done = import_without_paddle(module)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == name


def test_model_classes_are_still_importable_from_the_registration_module():
    from semsegpaddle.plugins.decoders import deeplab, deeplab_impl

    assert deeplab.DeepLabV3 is deeplab_impl.DeepLabV3 and deeplab.paper_rates(8) == [12, 24, 36]
    with pytest.raises(AttributeError, match="no attribute 'DeepLabV4'"):
        deeplab.DeepLabV4  # noqa: B018


def test_deeplabv3p_exports_with_a_dynamic_input_size(tmp_path):
    assert_exports(tmp_path, "deeplabv3p", channels=16, decoder_channels=16)


@pytest.mark.parametrize("decoder", [
    {"name": "deeplabv3", "channels": 32},
    {"name": "deeplabv3p", "channels": 32, "decoder_channels": 32, "separable": True},
])
def test_trains_through_the_cli(tmp_path, decoder):
    train_through_cli(tmp_path, decoder)
