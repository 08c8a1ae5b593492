"""PSPNet head: PaddleSeg's parameter count, shapes, gradients, learning, listing, a CLI run."""
from __future__ import annotations

import json
import math

import pytest

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.common.errors import ConfigError

from tests.helpers.cli import invoke
from tests.helpers.decoder_checks import (
    RESNET50_OS8, assert_every_parameter_learns, assert_exports, build, count_parameters, entry_point_module,
    import_without_paddle, overfit, resnet18_features, small_info, train_through_cli,
)

#: PaddleSeg 2.8 PSPNet (pp_out_channels 1024, bin_sizes 1/2/3/6): its pyramid module's 3×3
#: conv-BN-ReLU is our bottleneck, with 1024 channels; every conv before a BatchNorm has a bias.
PADDLESEG_PSPNET = {"bins": [1, 2, 3, 6], "channels": 1024, "conv_bias": True}
#: measured with PaddleSeg 2.8, ResNet50_vd OS8, 19 classes, aux head excluded (BN statistics included)
PADDLESEG_PSPNET_HEAD_PARAMETERS = 41_977_875


def test_parameter_count_matches_paddleseg():
    head = build("pspnet", RESNET50_OS8, 19, **PADDLESEG_PSPNET)
    assert count_parameters(head) == PADDLESEG_PSPNET_HEAD_PARAMETERS


def test_conv_bias_adds_one_bias_per_conv_before_batchnorm():
    with_bias = count_parameters(build("pspnet", RESNET50_OS8, 19, **PADDLESEG_PSPNET))
    without = count_parameters(build("pspnet", RESNET50_OS8, 19, **{**PADDLESEG_PSPNET, "conv_bias": False}))
    assert with_bias - without == 4 * 512 + 1024  # four 1×1 branch convs and the bottleneck


def test_defaults_follow_the_paper():
    """Four bins, each branch reduced to 1/4 of the input channels, a 512-channel 3×3 bottleneck."""
    head = build("pspnet", RESNET50_OS8, 19)
    assert head.bins == [1, 2, 3, 6] and head.in_level == 3
    assert head.pyramid.out_channels == 2048 + 4 * 512
    bottleneck_conv = head.bottleneck[0]
    assert list(bottleneck_conv.weight.shape) == [512, 4096, 3, 3] and bottleneck_conv.bias is None
    assert [list(b[1][0].weight.shape) for b in head.pyramid.branches] == [[512, 2048, 1, 1]] * 4


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_at_the_stride_of_its_level(output_stride):
    info, features = resnet18_features(output_stride, 64, 48)
    head = build("pspnet", info, 5, channels=32)
    head.eval()
    # at stride 16 the map is 4×3: the 6×6 bin pools finer than the map and still works
    assert head(features).shape == [2, 5, 64 // output_stride, 48 // output_stride]
    shallow = build("pspnet", info, 5, channels=32, in_level=1, branch_channels=8)
    shallow.eval()
    assert shallow(features).shape == [2, 5, 8, 6]


def test_every_parameter_gets_a_gradient():
    info = small_info(strides=(4, 8, 8, 8))
    assert_every_parameter_learns(build("pspnet", info, 4, channels=16), info, 4)


def test_overfits_one_batch():
    first, last = overfit(lambda info, n: build("pspnet", info, n, channels=32, in_level=1), steps=100)
    assert last <= 0.1 * first, (first, last)


@pytest.mark.parametrize("options, message", [
    ({"bins": []}, "bins=[]"),
    ({"bins": [1, 0]}, "bins=[1, 0]"),
    ({"in_level": 4}, "in_level=4 is out of range"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"channels": 0}, "channels=0"),
    ({"branch_channels": 0}, "branch_channels=0"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError) as info:
        build("pspnet", RESNET50_OS8, 19, **options)
    assert message in str(info.value)


def test_bad_option_in_a_config_names_the_key(tmp_path):
    from semsegpaddle.api import create_model

    config = config_from_dict({"model": {"backbone": {"name": "resnet", "depth": 18},
                                         "decoder": {"name": "pspnet", "bins": [1, -2]}},
                               "runtime": {"output_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"model\.decoder\.bins \(decoder 'pspnet'\): bins=\[1, -2\]"):
        create_model(config)


def test_listed_with_its_options():
    result = invoke("list", "decoder", "--json")
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["name"] == "pspnet")
    options = {o["name"]: o for o in row["options"]}
    assert set(options) == {"bins", "channels", "branch_channels", "dropout", "in_level", "conv_bias", "pool_order",
                            "pooling", "align_corners"}
    assert options["bins"]["default"] == [1, 2, 3, 6] and options["conv_bias"]["default"] is False
    assert all(o["description"] for o in options.values())
    text = invoke("list", "decoder").output
    assert "  pspnet  [plugin pspnet, semsegpaddle" in text and "bins: list[int] = (1, 2, 3, 6)" in text


def test_entry_point_module_imports_without_paddle():
    module = entry_point_module("pspnet")
    assert module == "semsegpaddle.plugins.decoders.pspnet"
    done = import_without_paddle(module)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pspnet"
    # the check itself bites: the model module needs paddle
    assert import_without_paddle("semsegpaddle.plugins.decoders.pspnet_impl").returncode != 0


def test_exports_with_a_dynamic_input_size(tmp_path):
    assert_exports(tmp_path, "pspnet", channels=16)


def test_trains_through_the_cli(tmp_path):
    metrics = train_through_cli(tmp_path, {"name": "pspnet", "channels": 32})
    assert math.isfinite(metrics["mIoU"])
