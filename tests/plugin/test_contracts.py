"""Contract tests over the whole registry, and DeepLabv3's structure against the paper/torchvision."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from semsegpaddle.core.model.interfaces import FeatureInfo, FeatureLevel
from semsegpaddle.core.plugin.manager import new_state
from semsegpaddle.plugins.decoders.deeplab import DeepLabV3, paper_rates

from tests.helpers.parity import paddle_param_count

REGISTRIES = new_state().registries
#: the cheapest variant of each family, so every registered backbone is exercised quickly
SMALL = {"resnet": {"depth": 18}, "resnext": {}, "hrnet": {"width": "18_small"}, "efficientnet": {"variant": "b0"}}


@pytest.mark.parametrize("name", REGISTRIES["backbone"].names())
@pytest.mark.parametrize("output_stride", [8, 32])
def test_every_backbone_returns_what_it_declares(name, output_stride):
    backbone = REGISTRIES["backbone"].get(name).factory(output_stride=output_stride, **SMALL.get(name, {}))
    backbone.eval()
    info = backbone.feature_info
    assert isinstance(info, FeatureInfo) and len(info) == 4
    assert max(info.strides) == output_stride
    features = backbone(paddle.rand([1, 3, 64, 64]))
    assert [f.shape[1] for f in features] == info.channels
    assert [64 // f.shape[2] for f in features] == info.strides


@pytest.mark.parametrize("name", REGISTRIES["backbone"].names())
def test_every_backbone_declares_described_typed_options(name):
    component = REGISTRIES["backbone"].get(name)
    names = {o.name for o in component.options}
    assert {"output_stride", "norm_momentum", "norm_eps", "frozen_stages", "freeze_bn_stats"} <= names
    assert all(o.description and o.type_name != "any" for o in component.options)
    assert callable(component.extras.get("convert_weights"))


@pytest.mark.parametrize("name", REGISTRIES["dataset"].names())
def test_every_dataset_honours_the_sample_contract(name):
    component = REGISTRIES["dataset"].get(name)
    if any(option.required for option in component.options):
        pytest.skip(f"dataset '{name}' reads files (required options); its own tests build a fixture tree")
    dataset = component.factory("train")
    image, label = dataset[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert label.shape == image.shape[:2]
    assert len(dataset.class_names) == dataset.num_classes == len(dataset.palette)
    values = set(np.unique(label).tolist())
    assert values <= set(range(dataset.num_classes)) | {dataset.ignore_index}


def test_aspp_rates_follow_the_paper():
    assert paper_rates(16) == [6, 12, 18]
    assert paper_rates(8) == [12, 24, 36]


def test_deeplabv3_structure_matches_torchvision_aspp():
    """Same branches and projection as torchvision's ASPP (which follows the paper), plus the classifier."""
    pytest.importorskip("torchvision")
    from torchvision.models.segmentation.deeplabv3 import ASPP as TorchASPP

    info = FeatureInfo([FeatureLevel(64, 4, "a"), FeatureLevel(512, 8, "b")])
    ours = DeepLabV3(info, num_classes=19, channels=256)
    reference = TorchASPP(512, [12, 24, 36], 256)
    reference_params = sum(p.numel() for p in reference.parameters()) + 256 * 19 + 19
    assert paddle_param_count(ours) == reference_params
    assert ours.rates == [12, 24, 36]
    ours.eval()
    out = ours([paddle.rand([2, 64, 16, 16]), paddle.rand([2, 512, 9, 7])])
    assert out.shape == [2, 19, 9, 7]


def test_deeplabv3_rejects_bad_options():
    info = FeatureInfo([FeatureLevel(32, 8, "a")])
    with pytest.raises(ValueError, match="in_level"):
        DeepLabV3(info, 3, in_level=3)
    with pytest.raises(ValueError, match="atrous_rates"):
        DeepLabV3(info, 3, atrous_rates=[0, 2])


@pytest.mark.parametrize("name", REGISTRIES["backbone"].names())
def test_every_backbone_exports_with_a_dynamic_input(name, tmp_path):
    from semsegpaddle.core.inference.export import export_model
    from semsegpaddle.core.model.assembly import SegmentationModel

    backbone = REGISTRIES["backbone"].get(name).factory(output_stride=8, **SMALL.get(name, {}))
    decoder = DeepLabV3(backbone.feature_info, 4, channels=16)
    model = SegmentationModel(backbone, decoder, 4, [0.0] * 3, [1.0] * 3, aux_level=2)
    report = export_model(model, tmp_path / name, ["a", "b", "c", "d"], np.zeros((4, 3), np.uint8))
    assert set(report.max_abs_error) == {"64x64", "48x80"}
    # float32 rounding relative to the logits' size (random weights and 0-255 inputs: logits ~1e3)
    assert max(report.max_abs_error.values()) <= 1e-5 * max(1.0, report.max_abs_logit)


_BACKBONES: dict[tuple[str, int], object] = {}


def _backbone(name: str, output_stride: int):
    """One backbone per (family, output stride), shared by the decoder contract tests."""
    key = (name, output_stride)
    if key not in _BACKBONES:
        _BACKBONES[key] = REGISTRIES["backbone"].get(name).factory(output_stride=output_stride, **SMALL.get(name, {}))
    return _BACKBONES[key]


@pytest.mark.parametrize("decoder", REGISTRIES["decoder"].names())
@pytest.mark.parametrize("backbone", ["resnet", "resnext", "hrnet", "efficientnet"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_every_decoder_builds_on_every_backbone_family(decoder, backbone, output_stride):
    """Default options, real backbone features: logits at the input size in eval, every output in training."""
    from semsegpaddle.core.model.assembly import SegmentationModel
    from semsegpaddle.core.config.schema import IMAGENET_MEAN, IMAGENET_STD

    features_from = _backbone(backbone, output_stride)
    head = REGISTRIES["decoder"].get(decoder).factory(features_from.feature_info, 5)
    model = SegmentationModel(features_from, head, 5, IMAGENET_MEAN, IMAGENET_STD, aux_level=2)
    images = paddle.rand([2, 3, 48, 64]) * 255
    model.eval()
    with paddle.no_grad():
        assert model(images).shape == [2, 5, 48, 64]
    model.train()
    outputs = model(images)
    assert len(outputs) == len(model.loss_weights) == len(model.output_losses)
    for output, named_loss in zip(outputs, model.output_losses):
        assert output.shape == ([2, 5, 48, 64] if named_loss is None else [2, 5])
