"""DeepLabv3 (``refine_conv``) and the new FCN head against torchvision's ``DeepLabHead`` and ``FCNHead``,
and the core's FCN auxiliary head against torchvision's ``aux_classifier``: whole torchvision
models' checkpoints (random weights, random BatchNorm statistics), renamed by our decoders'
``torchvision`` weight names; plus the FCN head's own checks (options, registration, training)."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.assembly import FCNAuxHead
from semsegpaddle.core.model.weights import torch_to_paddle_names
from semsegpaddle.plugins.decoders import deeplab, fcn

from tests.helpers.decoder_checks import (
    RESNET50_OS8, assert_every_parameter_learns, assert_exports, build, entry_point_module, import_without_paddle,
    overfit, small_info,
)
from tests.helpers.parity import load_converted, paddle_param_count, relative_error, torch_param_count
from tests.helpers.cli import invoke

#: input sizes the random features stand for (ResNet-50 with torchvision's dilation: strides 4, 8, 8, 8)
INPUT_SIZES = [(64, 64), (48, 80)]
NUM_CLASSES = 19
#: torchvision's DeepLabHead(2048): ASPP with rates (12, 24, 36), 3×3 conv-BN-ReLU, classifier;
#: no conv biases; dropout 0.5 after the ASPP projection
TORCHVISION_DEEPLABV3 = {"atrous_rates": [12, 24, 36], "channels": 256, "refine_conv": True, "dropout": 0.5}
#: torchvision's FCNHead(2048): 3×3 conv to 2048 // 4 (no bias), BN, ReLU, dropout 0.1, classifier
TORCHVISION_FCN = {"channels": None, "dropout": 0.1}
#: its aux_classifier, an FCNHead(1024) on layer3: model.aux.level 2, model.aux.channels 256
AUX_LEVEL, AUX_CHANNELS = 2, 256
#: torchvision's head parameters for 19 classes (BatchNorm statistics excluded): DeepLabHead(2048),
#: FCNHead(2048), FCNHead(1024)
TORCHVISION_PARAMETERS = {"deeplabv3": 16_130_323, "fcn": 9_447_955, "aux": 2_364_691}


def torchvision_model(name: str):
    """torchvision's ResNet-50 segmentation model with its auxiliary classifier, random weights and
    random BatchNorm statistics, in eval mode."""
    torch = pytest.importorskip("torch")
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    torch.manual_seed(0)
    builder = segmentation.deeplabv3_resnet50 if name == "deeplabv3" else segmentation.fcn_resnet50
    model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True)
    with torch.no_grad():
        for head in (model.classifier, model.aux_classifier):
            for module in head.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
                    module.running_mean.normal_(0.0, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
                elif isinstance(module, torch.nn.Conv2d):
                    fan_in = module.weight[0].numel()
                    module.weight.normal_(0.0, 1.0 / fan_in ** 0.5)
                    if module.bias is not None:
                        module.bias.uniform_(-0.5, 0.5)
    return model.eval()


def checkpoint(model) -> dict[str, np.ndarray]:
    """The model's state as the core hands it to a names function: numpy, torch BN names normalised."""
    return torch_to_paddle_names({k: v.detach().numpy() for k, v in model.state_dict().items()})


def random_features(height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (2, level.channels, -(-height // level.stride), -(-width // level.stride)))
            .astype("float32") for level in RESNET50_OS8]


def run_pair(name: str, options: dict) -> dict:
    """Ours (head + core aux head) vs torchvision's classifier + aux_classifier on the same features."""
    import torch

    reference = torchvision_model(name)
    state = checkpoint(reference)
    names = {"deeplabv3": deeplab, "fcn": fcn}[name].torchvision_names(list(state), options)
    head_keys = {key for key in state if key.startswith(("classifier.", "aux_classifier."))}
    assert set(names.values()) == head_keys, "every head tensor taken, nothing of the backbone"
    head = build(name, RESNET50_OS8, NUM_CLASSES, **options)
    aux = FCNAuxHead(RESNET50_OS8[AUX_LEVEL].channels, AUX_CHANNELS, NUM_CLASSES)
    load_converted(head, {ours: state[key] for ours, key in names.items() if not ours.startswith("aux_head.")})
    load_converted(aux, {ours[len("aux_head."):]: state[key] for ours, key in names.items()
                         if ours.startswith("aux_head.")})
    head.eval(), aux.eval()
    errors = {"head": [], "aux": []}
    with paddle.no_grad(), torch.no_grad():
        for seed, size in enumerate(INPUT_SIZES):
            features = random_features(*size, seed)
            ours = [head([paddle.to_tensor(f) for f in features]), aux(paddle.to_tensor(features[AUX_LEVEL]))]
            theirs = [reference.classifier(torch.from_numpy(features[-1])),
                      reference.aux_classifier(torch.from_numpy(features[AUX_LEVEL]))]
            for part, a, b in zip(("head", "aux"), ours, theirs):
                assert list(a.shape) == list(b.shape)
                errors[part].append(relative_error(a.numpy(), b.numpy()))
    return {"errors": errors,
            "parameters": (paddle_param_count(head), torch_param_count(reference.classifier)),
            "aux_parameters": (paddle_param_count(aux), torch_param_count(reference.aux_classifier))}


@pytest.mark.parametrize("name, options", [("deeplabv3", TORCHVISION_DEEPLABV3), ("fcn", TORCHVISION_FCN)])
def test_head_and_aux_head_match_torchvision(name, options):
    result = run_pair(name, options)
    for part, errors in result["errors"].items():
        assert len(errors) == 2 and max(errors) <= 1e-4, (part, errors)
    ours, theirs = result["parameters"]
    assert ours == theirs == TORCHVISION_PARAMETERS[name]
    assert result["aux_parameters"][0] == result["aux_parameters"][1] == TORCHVISION_PARAMETERS["aux"]


def test_refine_conv_is_torchvisions_deeplabhead_conv():
    """Off by default (today's head, torchvision's bare ASPP + classifier); on, one 3×3 conv-BN-ReLU more."""
    plain = build("deeplabv3", RESNET50_OS8, NUM_CLASSES)
    refined = build("deeplabv3", RESNET50_OS8, NUM_CLASSES, refine_conv=True)
    assert plain.refine is None and "refine.0.weight" not in plain.state_dict()
    assert list(refined.refine[0].weight.shape) == [256, 256, 3, 3] and refined.refine[0].bias is None
    assert paddle_param_count(refined) - paddle_param_count(plain) == 256 * 256 * 9 + 2 * 256


@pytest.mark.parametrize("module, options, message", [
    (deeplab, {}, "torchvision DeepLabV3 weights need decoder options refine_conv: true "
                  "(the config gives refine_conv: false)"),
    (deeplab, {"refine_conv": True, "conv_bias": True}, "conv_bias: false"),
    (fcn, {"conv_bias": True}, "torchvision FCN weights need decoder options conv_bias: false"),
])
def test_names_refuse_options_that_do_not_fit(module, options, message):
    keys = list(checkpoint(torchvision_model("deeplabv3" if module is deeplab else "fcn")))
    with pytest.raises(SemsegError) as info:
        module.torchvision_names(keys, options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_names_refuse_the_other_models_weights():
    deeplab_keys = list(checkpoint(torchvision_model("deeplabv3")))
    fcn_keys = list(checkpoint(torchvision_model("fcn")))
    with pytest.raises(SemsegError, match="not torchvision FCN weights for this decoder: no tensor 'classifier.0.weight'"):
        fcn.torchvision_names(deeplab_keys, {})
    with pytest.raises(SemsegError, match="torchvision DeepLabV3 ASPP has 0 atrous branches, the config's "
                                          "atrous_rates give 3"):
        deeplab.torchvision_names(fcn_keys, {"refine_conv": True})
    with pytest.raises(SemsegError, match="ASPP has 3 atrous branches, the config's atrous_rates give 4"):
        deeplab.torchvision_names(deeplab_keys, {"refine_conv": True, "atrous_rates": [6, 12, 18, 24]})


def test_names_without_an_aux_classifier_fill_no_aux_head():
    keys = [key for key in checkpoint(torchvision_model("fcn")) if not key.startswith("aux_classifier.")]
    names = fcn.torchvision_names(keys, {})
    assert sorted(names) == ["classifier.bias", "classifier.weight", "conv.0.weight", "conv.1._mean",
                             "conv.1._variance", "conv.1.bias", "conv.1.weight"]


# -------------------------------------------------------------------------------------------------
# the FCN head's own checks
# -------------------------------------------------------------------------------------------------


def test_fcn_defaults_reduce_to_a_quarter_of_the_deepest_level():
    head = build("fcn", RESNET50_OS8, NUM_CLASSES)
    assert head.in_level == 3 and list(head.conv[0].weight.shape) == [512, 2048, 3, 3] and head.conv[0].bias is None
    head.eval()
    features = [paddle.randn([1, level.channels, 6, 10]) for level in RESNET50_OS8]
    assert head(features).shape == [1, NUM_CLASSES, 6, 10]
    shallow = build("fcn", RESNET50_OS8, 3, in_level=1, channels=32, conv_bias=True)
    assert list(shallow.conv[0].weight.shape) == [32, 512, 3, 3] and shallow.conv[0].bias is not None


@pytest.mark.parametrize("options, message", [
    ({"channels": 0}, "channels=0 must be a positive integer"),
    ({"dropout": 1.5}, "dropout=1.5 must lie in [0, 1)"),
    ({"in_level": 7}, "in_level=7 is out of range"),
    ({"conv_bias": "no"}, "conv_bias='no' must be true or false"),
])
def test_fcn_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError) as info:
        build("fcn", RESNET50_OS8, NUM_CLASSES, **options)
    assert message in str(info.value)


def test_deeplabv3_bad_refine_conv_names_the_option():
    with pytest.raises(ValueError, match=r"^refine_conv='yes' must be true or false$"):
        build("deeplabv3", RESNET50_OS8, NUM_CLASSES, refine_conv="yes")


def test_fcn_every_parameter_gets_a_gradient_and_it_learns():
    info = small_info(strides=(4, 8, 8, 8))
    assert_every_parameter_learns(build("fcn", info, 4), info, 4)
    first, last = overfit(lambda info, n: build("fcn", info, n, channels=32, in_level=1), steps=100)
    assert last <= 0.1 * first, (first, last)


def test_fcn_is_listed_and_registers_without_paddle():
    result = invoke("list", "decoder", "--json")
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["name"] == "fcn")
    options = {o["name"]: o for o in row["options"]}
    assert set(options) == {"channels", "dropout", "in_level", "conv_bias"}
    assert options["channels"]["default"] is None and all(o["description"] for o in options.values())
    assert entry_point_module("fcn") == "semsegpaddle.plugins.decoders.fcn"
    done = import_without_paddle("semsegpaddle.plugins.decoders.fcn")
    assert done.returncode == 0 and done.stdout.strip() == "fcn", done.stderr


def test_fcn_exports_with_a_dynamic_input_size(tmp_path):
    assert_exports(tmp_path, "fcn", channels=16)
