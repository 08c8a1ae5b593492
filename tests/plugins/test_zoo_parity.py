"""Trained models of PaddleSeg's model zoo and torchvision, run here through the packaged configs.

Each reference model is built as its zoo config builds it, given random weights and random
BatchNorm statistics, saved as the zoo ships it (``paddle.save`` / ``torch.save`` of the state
dict) and loaded with ``--weights`` semantics through our packaged config: the eval-mode logits
must agree to 1e-4 (relative) at two input sizes, one of them not square.
"""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from semsegpaddle import api
from semsegpaddle.core.engine.restore import load_weights_into
from semsegpaddle.core.model.assembly import build_model
from tests.helpers.parity import relative_error

paddleseg = pytest.importorskip("paddleseg")

SIZES = [(64, 64), (48, 80)]
TOLERANCE = 1e-4

#: (our packaged config, PaddleSeg model class, its constructor arguments as the zoo config sets them)
PADDLESEG_CASES = {
    "pspnet-50": ("paddleseg_pspnet_resnet50_os8_cityscapes_1024x512_80k", "PSPNet", 50, {}),
    "pspnet-101": ("paddleseg_pspnet_resnet101_os8_cityscapes_1024x512_80k", "PSPNet", 101, {}),
    "deeplabv3-50": ("paddleseg_deeplabv3_resnet50_os8_cityscapes_1024x512_80k", "DeepLabV3", 50,
                     {"aspp_ratios": (1, 12, 24, 36)}),
    "deeplabv3-101": ("paddleseg_deeplabv3_resnet101_os8_voc12aug_512x512_40k", "DeepLabV3", 101,
                      {"aspp_ratios": (1, 12, 24, 36)}),
    "deeplabv3p-50": ("paddleseg_deeplabv3p_resnet50_os8_voc12aug_512x512_40k", "DeepLabV3P", 50,
                      {"aspp_ratios": (1, 12, 24, 36)}),
    "deeplabv3p-101-769": ("paddleseg_deeplabv3p_resnet101_os8_cityscapes_769x769_80k", "DeepLabV3P", 101,
                           {"aspp_ratios": (1, 12, 24, 36), "align_corners": True}),
    "glore-50": ("paddleseg_glore_resnet50_os8_cityscapes_1024x512_80k", "GloRe", 50, {}),
    # the zoo has no GloRe on ResNet101_vd: the same head on the deeper backbone, by override
    "glore-101": ("paddleseg_glore_resnet50_os8_voc12aug_512x512_40k", "GloRe", 101, {}),
    "ginet-50": ("paddleseg_ginet_resnet50_os8_voc12aug_512x512_40k", "GINet", 50, {}),
    "ginet-101": ("paddleseg_ginet_resnet101_os8_ade20k_520x520_150k", "GINet", 101, {}),
}
#: the backbone options each PaddleSeg model family sets on ResNet_vd
MULTI_GRID = {"DeepLabV3": (1, 2, 4), "DeepLabV3P": (1, 2, 4)}


def randomise_paddle(layer: paddle.nn.Layer, seed: int) -> None:
    """Random weights scaled by fan-in (so deep stacks stay finite) and random BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, tensor in layer.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith(("_variance", "running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("_mean", "running_mean")) or (name.endswith("bias") and len(shape) == 1):
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) >= 2:
            value = rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[1:]) if len(shape) == 4 else shape[0])
        else:
            value = rng.uniform(0.5, 1.5, shape)
        state[name] = value.astype(str(tensor.dtype).replace("paddle.", ""))
    layer.set_state_dict(state)


def paddleseg_model(kind: str, depth: int, num_classes: int, extra: dict):
    from paddleseg.models import backbones, DeepLabV3, DeepLabV3P, GINet, GloRe, PSPNet

    classes = {"PSPNet": PSPNet, "DeepLabV3": DeepLabV3, "DeepLabV3P": DeepLabV3P, "GloRe": GloRe, "GINet": GINet}
    backbone_cls = backbones.ResNet50_vd if depth == 50 else backbones.ResNet101_vd
    backbone = backbone_cls(output_stride=8, multi_grid=MULTI_GRID.get(kind, (1, 1, 1)))
    model = classes[kind](num_classes=num_classes, backbone=backbone, **extra)
    randomise_paddle(model, seed=depth)
    model.eval()
    return model


def _inputs(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * width).uniform(0, 255, (1, 3, height, width)).astype(np.float32)


def _ours(model, pixels: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(pixels)).numpy()


@pytest.mark.parametrize("case", list(PADDLESEG_CASES))
def test_paddleseg_zoo_model_gives_the_same_logits_through_our_config(case, tmp_path):
    config_name, kind, depth, extra = PADDLESEG_CASES[case]
    config = api.load_config(config_name, [f"model.backbone.depth={depth}"])
    num_classes = len(_declared(config))
    reference = paddleseg_model(kind, depth, num_classes, extra)
    weights = tmp_path / "model.pdparams"
    paddle.save(reference.state_dict(), str(weights))
    ours = api.load_model(config, weights)
    for height, width in SIZES:
        pixels = _inputs(height, width)
        with paddle.no_grad():
            expected = reference(paddle.to_tensor((pixels - 127.5) / 127.5))[0].numpy()
        got = _ours(ours, pixels)
        assert got.shape == expected.shape == (1, num_classes, height, width)
        assert relative_error(got, expected) <= TOLERANCE, (case, height, width, relative_error(got, expected))


def _declared(config) -> list[str]:
    from semsegpaddle.core.engine.restore import declared_labels

    return declared_labels(config)["class_names"]


TORCHVISION = ["deeplabv3_resnet50", "deeplabv3_resnet101", "fcn_resnet50", "fcn_resnet101"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model_gives_the_same_logits_through_our_config(name, tmp_path):
    torch = pytest.importorskip("torch")
    from torchvision.models import segmentation

    torch.manual_seed(0)
    reference = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    with torch.no_grad():
        for key, tensor in reference.state_dict().items():
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    reference.eval()
    weights = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), weights)
    ours = api.load_model(api.load_config(f"torchvision_{name}"), weights)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1) * 255
    for height, width in SIZES:
        pixels = _inputs(height, width)
        with torch.no_grad():
            expected = reference(torch.from_numpy((pixels - mean) / std))["out"].numpy()
        got = _ours(ours, pixels)
        assert got.shape == expected.shape == (1, 21, height, width)
        assert relative_error(got, expected) <= TOLERANCE, (name, height, width, relative_error(got, expected))


def test_a_zoo_model_fine_tunes_on_another_class_count(tmp_path, capfd):
    """PaddleSeg's Cityscapes PSPNet (19 classes) as the start of a 5-class model: everything but the
    two classifiers is loaded, and they are named as re-initialised."""
    reference = paddleseg_model("PSPNet", 50, 19, {})
    weights = tmp_path / "model.pdparams"
    paddle.save(reference.state_dict(), str(weights))
    config = api.load_config("paddleseg_pspnet_resnet50_os8_cityscapes_1024x512_80k")
    model = build_model(config, 5, pretrained=False)
    report = load_weights_into(model, config, weights, allow_class_change=True)
    assert sorted(report.reinitialised) == ["aux_head.classifier.bias", "aux_head.classifier.weight",
                                            "decoder.classifier.bias", "decoder.classifier.weight"]
    assert report.unused == []
    own = model.state_dict()
    for name in ("backbone.layer4.2.conv3.weight", "decoder.bottleneck.0.weight"):
        assert name in report.loaded
    np.testing.assert_array_equal(own["backbone.conv1.0.weight"].numpy(),
                                  reference.state_dict()["backbone.conv1_1._conv.weight"].numpy())
    assert "re-initialised 4 of another class count" in capfd.readouterr().err


def test_every_zoo_config_names_its_weights_and_published_miou():
    names = [entry["name"] for entry in api.packaged_configs() if entry["name"].startswith(("paddleseg_", "torchvision_"))
             and not entry["name"].endswith("_base")]
    assert len(names) == 26
    for name in names:
        zoo = api.load_config(name)["zoo"]
        assert zoo["weights_url"].startswith("https://") and zoo["weights_url"].endswith((".pdparams", ".pth")), name
        assert zoo["published_miou"]["ss"] > 40, name
