"""The packaged configs reproducing the seed: they resolve, validate, name their target, and build."""
from __future__ import annotations

import re

import pytest

from semsegpaddle.core.config.loader import load_config, packaged_configs, resolve_config_path
from tests.helpers.cli import invoke

SEED = [f"{decoder}_r101_{dataset}" for decoder in ("pspnet", "glore", "ginet", "deeplabv3")
        for dataset in ("cityscapes", "pascal_context")]


def test_every_seed_config_is_packaged():
    assert set(SEED) <= set(packaged_configs())


@pytest.mark.parametrize("name", packaged_configs())
def test_every_packaged_config_validates_through_the_cli(name):
    result = invoke("config", name)
    assert result.exit_code == 0, result.output
    assert "backbone:" in result.output and "loss:" in result.output


@pytest.mark.parametrize("name", SEED)
def test_seed_configs_follow_the_seed_recipe(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(name)
    decoder, dataset = name.split("_r101_")
    backbone = config["model"]["backbone"]
    assert (backbone["name"], backbone["depth"], backbone["stem"], backbone["output_stride"]) == \
        ("resnet", 101, "deep_avgdown", 8)
    assert config["model"]["decoder"]["name"] == decoder
    assert (config["model"]["aux"]["level"], config["model"]["aux"]["weight"]) == (2, 0.4)
    assert config["dataset"]["name"] == dataset
    assert config["dataset"]["root"] == str(tmp_path / "data" / dataset)  # a template for the working folder
    crop = {"cityscapes": [769, 769], "pascal_context": [520, 520]}[dataset]
    assert config["train"]["crop_size"] == crop
    text = resolve_config_path(name).read_text()
    assert re.search(r"Target val\s*(#\s*)?mIoU", text), "each seed config names its target"
    assert f"train {name}" in text, "each seed config shows the command that trains it"


@pytest.mark.parametrize("name", SEED)
def test_seed_models_build_and_run(name):
    """The same heads on a ResNet-18 (the full ResNet-101 is for GPUs): built, a forward at 64×64."""
    import paddle

    from semsegpaddle.core.model.assembly import build_model

    config = load_config(name, ["model.backbone.depth=18"])
    classes = 19 if "cityscapes" in name else 59
    model = build_model(config, classes)
    model.eval()
    with paddle.no_grad():
        assert model(paddle.rand([1, 3, 64, 64]) * 255).shape == [1, classes, 64, 64]


SEED_OWN = [f"seed_{decoder}_r101_{dataset}" for decoder in ("pspnet", "glore") for dataset in ("cityscapes", "pascal_context")]


@pytest.mark.parametrize("name", SEED_OWN)
def test_seed_own_backbone_configs_build_the_seeds_resnet(name):
    """The seed's dygraph backbone: a plain ResNet (7×7 stem, no avg-pool shortcuts), layer4 dilated
    2/4/8; its PSPNet pools with a fixed kernel. Built on ResNet-50 (the same layer4) for speed."""
    import paddle

    from semsegpaddle.core.model.assembly import build_model

    config = load_config(name, ["model.backbone.depth=50"])
    assert config["model"]["backbone"]["stem"] == "standard"
    model = build_model(config, 19)
    dilations = [block.conv2._dilation for block in model.backbone.layer4]
    assert [d[0] if isinstance(d, (list, tuple)) else d for d in dilations] == [2, 4, 8]
    assert all(not isinstance(layer, paddle.nn.AvgPool2D) for layer in model.backbone.sublayers())
    if "pspnet" in name:
        assert config["model"]["decoder"]["pooling"] == "fixed_kernel"
    side = 256 if "pspnet" in name else 64  # the fixed-kernel pool needs maps wider than 30 cells for 6 bins
    model.eval()
    with paddle.no_grad():
        assert model(paddle.rand([1, 3, side, side]) * 255).shape == [1, 19, side, side]
