"""``model.in_channels``: backbones built for N input bands, RGB weights adapted, config errors."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from semsegpaddle.api import config_from_dict, create_backbone
from semsegpaddle.core.common.errors import ConfigError, SemsegError
from semsegpaddle.core.model.assembly import build_model
from semsegpaddle.core.engine.checkpoint import save_weights
from semsegpaddle.core.engine.restore import load_weights_into
from semsegpaddle.core.model.weights import adapt_input_conv
from tests.helpers.parity import compare_features, paddle_param_count, torch_param_count
from tests.helpers.tiny import TINY_CONFIG

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
from timm.models._manipulate import adapt_input_conv as timm_adapt_input_conv  # noqa: E402

#: the cheapest variant of each built-in family, and the name of its first conv's kernel
FAMILIES = {
    "resnet": ({"depth": 18}, "conv1.weight"),
    "resnext": ({}, "conv1.weight"),
    "hrnet": ({"width": "18_small"}, "conv1.weight"),
    "efficientnet": ({"variant": "b0"}, "conv_stem.weight"),
}


@pytest.mark.parametrize("bands", [1, 4])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_backbone_family_builds_and_runs_for_n_bands(family, bands):
    options, first_conv = FAMILIES[family]
    backbone = create_backbone(family, in_channels=bands, **options)  # checked against its declaration
    assert backbone.state_dict()[first_conv].shape[1] == bands
    backbone.eval()
    features = backbone(paddle.rand([1, bands, 48, 80]))
    assert [list(f.shape[1:]) for f in features] == [
        [level.channels, -(-48 // level.stride), -(-80 // level.stride)] for level in backbone.feature_info]


def test_deep_stem_takes_n_bands_too():
    backbone = create_backbone("resnet", in_channels=4, depth=18, stem="deep_avgdown")
    assert backbone.state_dict()["conv1.0.weight"].shape[1] == 4


@pytest.mark.parametrize("bands", [1, 2, 3, 4, 7])
def test_adapted_kernel_equals_timm(bands):
    weight = np.random.default_rng(bands).standard_normal((8, 3, 7, 7)).astype(np.float32)
    expected = timm_adapt_input_conv(bands, torch.from_numpy(weight.copy())).numpy()
    ours = adapt_input_conv(weight, bands)
    assert ours.shape == expected.shape == (8, bands, 7, 7)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)




def _config(bands: int, **model):
    return config_from_dict({"model": {
        "backbone": {"name": "resnet", "depth": 18}, "decoder": {"name": "fcn", "channels": 16},
        "in_channels": bands, "mean": [100.0 + i for i in range(bands)], "std": [50.0 + i for i in range(bands)],
        **model}})


def test_rgb_weights_load_into_a_four_band_resnet_with_the_first_conv_adapted(timm_resnet18):
    reference_rgb, path = timm_resnet18
    config = _config(4)
    config["model"]["backbone"]["pretrained"] = str(path)
    model = build_model(config, num_classes=3)
    rgb_kernel = reference_rgb.conv1.weight.detach()
    expected_kernel = timm_adapt_input_conv(4, rgb_kernel.clone()).numpy()
    np.testing.assert_allclose(model.backbone.conv1.weight.numpy(), expected_kernel, rtol=1e-6, atol=1e-7)
    # the whole backbone then computes what timm's 4-band resnet18 with that kernel computes
    reference = timm.create_model("resnet18", pretrained=False, in_chans=4).eval()
    state = reference_rgb.state_dict()
    state["conv1.weight"] = torch.from_numpy(expected_kernel)
    reference.load_state_dict(state)
    assert paddle_param_count(model.backbone) == torch_param_count(reference, exclude_prefixes=("fc.",))
    model.backbone.eval()
    for size in ((64, 64), (48, 80)):
        x = np.random.default_rng(1).standard_normal((1, 4, *size)).astype(np.float32)
        with torch.no_grad():
            expected = reference.forward_intermediates(torch.from_numpy(x), indices=[1, 2, 3, 4],
                                                       intermediates_only=True)
        compare_features(model.backbone(paddle.to_tensor(x)), expected)


@pytest.mark.parametrize("ours", [False, True], ids=["foreign-file", "our-checkpoint"])
def test_a_whole_rgb_model_fine_tunes_into_four_bands_with_its_input_conv_adapted(tmp_path, ours, capsys):
    rgb_config = config_from_dict({"model": {"backbone": {"name": "resnet", "depth": 18},
                                             "decoder": {"name": "fcn", "channels": 16}}})
    rgb = build_model(rgb_config, num_classes=5)
    if ours:
        path = tmp_path / "rgb.safetensors"
        save_weights(rgb, path, rgb_config)
    else:
        path = tmp_path / "rgb.pdparams"
        paddle.save(rgb.state_dict(), str(path))
    model = build_model(_config(4), num_classes=3)
    report = load_weights_into(model, _config(4), path, allow_class_change=True)
    source = {k: v.numpy() for k, v in rgb.state_dict().items()}
    mine = {k: v.numpy() for k, v in model.state_dict().items()}
    assert report.adapted == ["backbone.conv1.weight"]
    np.testing.assert_array_equal(mine["backbone.conv1.weight"], adapt_input_conv(source["backbone.conv1.weight"], 4))
    assert mine["backbone.conv1.weight"].shape == (64, 4, 7, 7)
    unchanged = [k for k in source if k.startswith("backbone.") and k != "backbone.conv1.weight"]
    assert len(unchanged) > 50 and all(np.array_equal(mine[k], source[k]) for k in unchanged)
    assert sorted(report.reinitialised) == ["decoder.classifier.bias", "decoder.classifier.weight"]
    np.testing.assert_allclose(mine["mean"].ravel(), [100, 101, 102, 103])  # normalisation from the config
    assert "adapted the RGB input conv to 4 bands (backbone.conv1.weight)" in capsys.readouterr().err


def test_our_checkpoint_still_loads_strictly_outside_fine_tuning(tmp_path):
    rgb_config = config_from_dict({"model": {"backbone": {"name": "resnet", "depth": 18},
                                             "decoder": {"name": "fcn", "channels": 16}}})
    path = tmp_path / "rgb.safetensors"
    save_weights(build_model(rgb_config, num_classes=3), path, rgb_config)
    with pytest.raises(SemsegError, match="shape"):
        load_weights_into(build_model(_config(4), num_classes=3), _config(4), path)


def test_the_model_normalises_each_band_and_runs(tmp_path):
    model = build_model(_config(4), num_classes=3)
    assert model.mean.shape == [1, 4, 1, 1] and model.std.shape == [1, 4, 1, 1]
    np.testing.assert_allclose(model.mean.numpy().ravel(), [100, 101, 102, 103])
    model.eval()
    assert model(paddle.rand([2, 4, 48, 80]) * 255).shape == [2, 3, 48, 80]


@pytest.mark.parametrize("model, message", [
    ({"in_channels": 4}, "'model.mean' has 3 entries (the default, ImageNet RGB), model.in_channels is 4: "
                         "give one mean per input band"),
    ({"in_channels": 4, "mean": [1.0, 2.0, 3.0, 4.0]},
     "'model.std' has 3 entries (the default, ImageNet RGB), model.in_channels is 4: give one std per input band"),
    ({"in_channels": 1, "mean": [1.0], "std": [1.0, 2.0]},
     "'model.std' has 2 entries, model.in_channels is 1: give one std per input band"),
    ({"mean": [1.0, 2.0]}, "'model.mean' has 2 entries, model.in_channels is 3: give one mean per input band"),
    ({"in_channels": 0}, "'model.in_channels' expects a number > 0, got 0"),
])
def test_band_statistics_of_the_wrong_length_are_one_line_errors(model, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"model": model}, source="run.yaml")
    assert str(caught.value).endswith(message) and "\n" not in str(caught.value)


def test_in_channels_is_a_model_key_not_a_backbone_option():
    with pytest.raises(ConfigError, match="unknown key 'model.backbone.in_channels'"):
        config_from_dict({"model": {"backbone": {"name": "resnet", "in_channels": 4}}})




def test_a_backbone_without_in_channels_is_refused_for_other_band_counts(tiny_plugins):
    config = config_from_dict({**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "in_channels": 4,
                                                        "mean": [0.0] * 4, "std": [1.0] * 4}})
    with pytest.raises(SemsegError) as caught:
        build_model(config, num_classes=3)
    assert str(caught.value) == ("model.in_channels: backbone 'tiny' (plugin 'tiny-test') takes 3-band input only "
                                 "(its factory has no in_channels argument), the config gives 4")
    assert build_model(config_from_dict(TINY_CONFIG), num_classes=3).mean.shape == [1, 3, 1, 1]
