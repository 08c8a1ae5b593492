"""Importing timm/torchvision weights: convert-weights, reports, and `model.backbone.pretrained`."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from semsegpaddle.api import create_backbone, create_model
from semsegpaddle.core.config.loader import load_config
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.weights import read_checkpoint, torch_to_paddle_names

from tests.helpers.parity import compare_features, torch_state_numpy
from tests.helpers.cli import invoke

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")




def test_convert_weights_cli_reports_and_output_matches_reference(timm_resnet18, tmp_path):
    reference, source = timm_resnet18
    target = tmp_path / "r18.safetensors"
    result = invoke("convert-weights", "resnet", str(source), str(target), "-o", "depth=18")
    assert result.exit_code == 0, result.output
    ours = create_backbone("resnet", depth=18)
    assert f"loaded {len(ours.state_dict())} tensors" in result.output and "missing" not in result.output
    from semsegpaddle.core.model.weights import load_into

    load_into(ours, load_file(str(target)), strict=True)
    ours.eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = reference.forward_intermediates(torch.from_numpy(x), indices=[1, 2, 3, 4],
                                                   intermediates_only=True)
    compare_features(ours(paddle.to_tensor(x)), expected)


def test_convert_to_the_wrong_architecture_names_missing_keys(timm_resnet18, tmp_path):
    _, source = timm_resnet18
    target = tmp_path / "r34.safetensors"
    result = invoke("convert-weights", "resnet", str(source), str(target), "-o", "depth=34")
    assert result.exit_code == 1
    assert "cannot convert to backbone 'resnet'" in result.output and "missing (" in result.output
    assert not target.exists()  # nothing half-written


def test_pth_checkpoints_are_read_with_torch(timm_resnet18, tmp_path):
    reference, _ = timm_resnet18
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    state = read_checkpoint(path)
    assert np.array_equal(state["conv1.weight"], reference.conv1.weight.detach().numpy())


def test_unknown_weights_format_is_a_clear_error(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"nope")
    with pytest.raises(SemsegError, match="unknown weights format '.npz'"):
        read_checkpoint(bad)
    garbage = tmp_path / "weights.safetensors"
    garbage.write_bytes(b"nope")
    with pytest.raises(SemsegError, match="not a readable safetensors file"):
        read_checkpoint(garbage)


def _config(tmp_path, pretrained):
    return load_config("synthetic_deeplabv3", [
        "model.backbone.name=resnet", "model.backbone.depth=18", f"model.backbone.pretrained={pretrained}", "train.iters=2", "train.batch_size=2",
        "train.crop_size=[48,48]", "dataset.image_size=48", "dataset.num_train=4", "dataset.num_val=2",
        "runtime.progress=false", "runtime.threads=2", f"runtime.output_dir={tmp_path / 'run'}",
    ])


@pytest.mark.parametrize("converted", [True, False], ids=["converted", "raw-timm"])
def test_pretrained_key_loads_the_backbone(timm_resnet18, tmp_path, converted):
    reference, source = timm_resnet18
    path = source
    if converted:
        path = tmp_path / "r18.safetensors"
        assert invoke("convert-weights", "resnet", str(source), str(path), "-o", "depth=18").exit_code == 0
    model = create_model(_config(tmp_path, path))
    expected = torch_to_paddle_names(torch_state_numpy(reference))
    for key in ("conv1.weight", "layer4.1.bn2._variance", "layer2.0.downsample.0.weight"):
        assert np.array_equal(model.backbone.state_dict()[key].numpy(), expected[key]), key


def test_converted_checkpoint_trains_through_the_cli(timm_resnet18, tmp_path):
    _, source = timm_resnet18
    path = tmp_path / "r18.safetensors"
    invoke("convert-weights", "resnet", str(source), str(path), "-o", "depth=18")
    args = ["model.backbone.name=resnet", "model.backbone.depth=18", f"model.backbone.pretrained={path}", "train.iters=2", "train.batch_size=2", "train.crop_size=[48,48]",
            "dataset.image_size=48", "dataset.num_train=4", "dataset.num_val=2", "runtime.progress=false",
            "runtime.threads=2", f"runtime.output_dir={tmp_path / 'run'}"]
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["pixels"] > 0


def test_pretrained_for_another_architecture_is_a_clear_error(timm_resnet18, tmp_path):
    _, source = timm_resnet18
    config = _config(tmp_path, source)
    config["model"]["backbone"]["depth"] = 50
    with pytest.raises(SemsegError, match="do not fit backbone 'resnet'"):
        create_model(config)
