"""PSPNet (with its auxiliary layer), DeepLabV3 and DeepLabV3P heads against PaddleSeg 2.8's, each
built as its Cityscapes ResNet-50 OS8 zoo config builds it and loaded through our decoders'
``paddleseg`` weight names; the options those names require; and the SemSegPaddle seed's
fixed-kernel pyramid pooling (``pooling: fixed_kernel``)."""
from __future__ import annotations

import functools

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.assembly import FCNAuxHead
from semsegpaddle.plugins.decoders import deeplab, deeplabv3p, pspnet
from semsegpaddle.plugins.decoders.pspnet_impl import FixedKernelAvgPool

from tests.helpers.decoder_checks import RESNET50_OS8, assert_exports, build, count_parameters
from tests.helpers.parity import load_converted, relative_error

#: input sizes the random features stand for (ResNet-50 OS8: strides 4, 8, 8, 8), one non-square
INPUT_SIZES = [(64, 64), (48, 80)]
NUM_CLASSES = 19

#: configs/pspnet/pspnet_resnet50_os8_cityscapes_1024x512_80k.yml: PSPNet defaults (backbone_indices
#: (2, 3), pp_out_channels 1024, bin_sizes (1, 2, 3, 6)), enable_auxiliary_loss, align_corners False
PADDLESEG_PSPNET = {"bins": [1, 2, 3, 6], "channels": 1024, "conv_bias": True, "pool_order": "reversed"}
#: its AuxLayer on level 2, 1024 → 1024 // 4 channels, a bias on the 3×3 conv (model.aux.*)
PADDLESEG_PSPNET_AUX = {"level": 2, "channels": 256, "conv_bias": True}
#: configs/deeplabv3/deeplabv3_resnet50_os8_cityscapes_1024x512_80k.yml: backbone_indices [3],
#: aspp_ratios [1, 12, 24, 36] (the 1 is our 1×1 branch), aspp_out_channels 256, align_corners False
PADDLESEG_DEEPLABV3 = {"atrous_rates": [12, 24, 36], "channels": 256, "conv_bias": True}
#: configs/deeplabv3p/deeplabv3p_resnet50_os8_cityscapes_1024x512_80k.yml: backbone_indices [0, 3],
#: the same ASPP made separable, a 48-channel low-level projection, two separable 3×3 convs of 256
PADDLESEG_DEEPLABV3P = {**PADDLESEG_DEEPLABV3, "low_level": 0, "low_level_channels": 48, "decoder_channels": 256,
                        "separable": True, "depthwise_relu": False}
#: FACTS.md, measured with PaddleSeg 2.8 on ResNet50_vd OS8, 19 classes (BatchNorm statistics included)
PADDLESEG_HEAD_PARAMETERS = {"pspnet": 44_343_334, "deeplabv3": 15_544_339, "deeplabv3p": 3_213_731}


class StandInBackbone(paddle.nn.Layer):
    """What PaddleSeg's models read from a backbone at construction: the channels of each level."""

    feat_channels = RESNET50_OS8.channels


def paddleseg_head(name: str, align_corners: bool = False) -> paddle.nn.Layer:
    """PaddleSeg's model built as the zoo config builds it, on the stand-in backbone."""
    models = pytest.importorskip("paddleseg.models")
    backbone = StandInBackbone()
    if name == "pspnet":
        return models.PSPNet(NUM_CLASSES, backbone, enable_auxiliary_loss=True, align_corners=align_corners)
    model = models.DeepLabV3 if name == "deeplabv3" else models.DeepLabV3P
    indices = (3,) if name == "deeplabv3" else (0, 3)
    return model(NUM_CLASSES, backbone, backbone_indices=indices, aspp_ratios=(1, 12, 24, 36),
                 aspp_out_channels=256, align_corners=align_corners)


def randomise(layer: paddle.nn.Layer, seed: int) -> None:
    """Random weights (conv weights scaled by their fan-in) and random BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    for name, param in layer.named_parameters():
        shape = param.shape
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("_mean"):
            value = rng.normal(0.0, 0.5, shape)
        elif len(shape) == 4:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), shape)
        else:
            value = rng.uniform(-0.5, 0.5, shape) + (1.0 if name.endswith("_batch_norm.weight") else 0.0)
        param.set_value(value.astype("float32"))


def random_features(height: int, width: int, seed: int) -> list[paddle.Tensor]:
    """One N×C×h×w map per ResNet-50 OS8 level for a height × width input."""
    rng = np.random.default_rng(seed)
    return [paddle.to_tensor(rng.normal(0, 1, (2, level.channels, -(-height // level.stride),
                                               -(-width // level.stride))).astype("float32"))
            for level in RESNET50_OS8]


def converted(reference: paddle.nn.Layer, names_of, options: dict) -> tuple[dict, dict, dict]:
    """(head state, aux head state, the reference state) through the decoder's paddleseg names."""
    state = {key: value.numpy() for key, value in reference.state_dict().items()}
    names = names_of(list(state), options)
    assert set(names.values()) == set(state), "every PaddleSeg head tensor is taken, once"
    assert len(set(names.values())) == len(names)
    head = {ours: state[key] for ours, key in names.items() if not ours.startswith("aux_head.")}
    aux = {ours[len("aux_head."):]: state[key] for ours, key in names.items() if ours.startswith("aux_head.")}
    return head, aux, state


def run_pair(name: str, options: dict, align_corners: bool = False) -> tuple[list[float], int, int]:
    """Relative errors of our head (and aux head) vs PaddleSeg's per input size, and both parameter counts."""
    reference = paddleseg_head(name, align_corners)
    randomise(reference, seed=1)
    ours = build(name, RESNET50_OS8, NUM_CLASSES, **options)
    names_of = {"pspnet": pspnet, "deeplabv3": deeplab, "deeplabv3p": deeplabv3p}[name].paddleseg_names
    head_state, aux_state, _ = converted(reference, names_of, options)
    load_converted(ours, head_state)
    aux = None
    if aux_state:
        aux = FCNAuxHead(RESNET50_OS8[PADDLESEG_PSPNET_AUX["level"]].channels, PADDLESEG_PSPNET_AUX["channels"],
                         NUM_CLASSES, conv_bias=PADDLESEG_PSPNET_AUX["conv_bias"])
        load_converted(aux, aux_state)
        aux.eval()
    reference.eval(), ours.eval()
    errors = []
    with paddle.no_grad():
        for seed, (height, width) in enumerate(INPUT_SIZES):
            features = random_features(height, width, seed)
            expected = reference.head(features)
            got = [ours(features)] + ([aux(features[PADDLESEG_PSPNET_AUX["level"]])] if aux is not None else [])
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                assert a.shape == b.shape
                errors.append(relative_error(a.numpy(), b.numpy()))
    our_count = count_parameters(ours) + (count_parameters(aux) if aux is not None else 0)
    return errors, our_count, count_parameters(reference.head)


@pytest.mark.parametrize("name, options", [
    ("pspnet", PADDLESEG_PSPNET), ("deeplabv3", PADDLESEG_DEEPLABV3), ("deeplabv3p", PADDLESEG_DEEPLABV3P),
])
def test_head_matches_paddleseg(name, options):
    errors, ours, theirs = run_pair(name, options)
    assert len(errors) == (4 if name == "pspnet" else 2)  # main (and aux) logits at two input sizes
    assert max(errors) <= 1e-4, errors
    assert ours == theirs == PADDLESEG_HEAD_PARAMETERS[name]


@pytest.mark.parametrize("name, options", [("pspnet", PADDLESEG_PSPNET), ("deeplabv3p", PADDLESEG_DEEPLABV3P)])
def test_align_corners_follows_paddlesegs(name, options):
    """PaddleSeg's 769×769 configs set align_corners: true; its head then upsamples that way inside too."""
    errors, _, _ = run_pair(name, {**options, "align_corners": True}, align_corners=True)
    assert max(errors) <= 1e-4, errors


@pytest.mark.parametrize("name, options, wrong", [
    ("pspnet", PADDLESEG_PSPNET, {"pool_order": "bins"}),
    ("deeplabv3p", PADDLESEG_DEEPLABV3P, {"depthwise_relu": True}),
    ("deeplabv3p", PADDLESEG_DEEPLABV3P, {"align_corners": True}),
])
def test_the_required_options_change_the_output(name, options, wrong):
    """Loaded by hand into a head with another value of the option, the same weights compute
    something else — which is why the names functions refuse such configs (align_corners, which
    PaddleSeg takes from its model, is left to the config)."""
    reference = paddleseg_head(name)
    randomise(reference, seed=2)
    head_state, _, _ = converted(reference, {"pspnet": pspnet, "deeplabv3p": deeplabv3p}[name].paddleseg_names,
                                 options)
    ours = build(name, RESNET50_OS8, NUM_CLASSES, **{**options, **wrong})
    load_converted(ours, head_state)
    reference.eval(), ours.eval()
    features = random_features(*INPUT_SIZES[1], seed=3)
    with paddle.no_grad():
        error = relative_error(ours(features).numpy(), reference.head(features)[0].numpy())
    assert error > 1e-2, error


@pytest.mark.parametrize("module, options, message", [
    (pspnet, {}, "PaddleSeg PSPNet weights need decoder options pool_order: reversed, conv_bias: true "
                 "(the config gives pool_order: bins, conv_bias: false)"),
    (pspnet, {**PADDLESEG_PSPNET, "pooling": "fixed_kernel"}, "pooling: adaptive"),
    (deeplab, {}, "PaddleSeg DeepLabV3 weights need decoder options conv_bias: true"),
    (deeplab, {"conv_bias": True, "refine_conv": True}, "refine_conv: false"),
    (deeplabv3p, {"conv_bias": True}, "depthwise_relu: false"),
])
def test_names_refuse_options_that_would_load_but_compute_otherwise(module, options, message):
    keys = paddleseg_head_keys(module)
    with pytest.raises(SemsegError) as info:
        module.paddleseg_names(keys, options)
    assert message in str(info.value) and "\n" not in str(info.value)


def paddleseg_head_keys(module) -> list[str]:
    """The tensor names of the PaddleSeg zoo model the module's names function reads."""
    return list(_paddleseg_keys({pspnet: "pspnet", deeplab: "deeplabv3", deeplabv3p: "deeplabv3p"}[module]))


@functools.cache
def _paddleseg_keys(name: str) -> tuple[str, ...]:
    return tuple(paddleseg_head(name).state_dict())


def test_names_refuse_another_models_weights():
    psp_keys = paddleseg_head_keys(pspnet)
    with pytest.raises(SemsegError, match="not PaddleSeg PSPNet weights for this decoder: no tensor 'head.conv.weight'"):
        pspnet.paddleseg_names([key for key in psp_keys if key != "head.conv.weight"], PADDLESEG_PSPNET)
    deeplab_keys = paddleseg_head_keys(deeplab)
    with pytest.raises(SemsegError, match="the PaddleSeg PSPNet weights have 0 pooling branches, the config's bins "
                                          r"\[1, 2, 3, 6\] give 4"):
        pspnet.paddleseg_names(deeplab_keys, PADDLESEG_PSPNET)
    with pytest.raises(SemsegError, match="not PaddleSeg DeepLabV3P weights for this decoder: no tensor "
                                          r"'head.aspp.aspp_blocks.1.depthwise_conv._conv.weight' and \d+ more"):
        deeplabv3p.paddleseg_names(deeplab_keys, PADDLESEG_DEEPLABV3P)


def test_names_check_the_number_of_aspp_branches():
    keys = paddleseg_head_keys(deeplab)
    with pytest.raises(SemsegError, match="ASPP has 3 atrous branches, the config's atrous_rates give 2"):
        deeplab.paddleseg_names(keys, {**PADDLESEG_DEEPLABV3, "atrous_rates": [12, 24]})


def test_names_leave_out_the_aux_head_when_the_checkpoint_has_none():
    keys = [key for key in paddleseg_head_keys(pspnet) if not key.startswith("head.auxlayer.")]
    names = pspnet.paddleseg_names(keys, PADDLESEG_PSPNET)
    assert not [ours for ours in names if ours.startswith("aux_head.")]
    assert set(names.values()) == set(keys)


# -------------------------------------------------------------------------------------------------
# options: defaults unchanged, bad values named
# -------------------------------------------------------------------------------------------------


def test_defaults_are_unchanged():
    psp = build("pspnet", RESNET50_OS8, NUM_CLASSES)
    assert not psp.pyramid.reversed and not psp.pyramid.align_corners
    assert all(isinstance(branch[0], paddle.nn.AdaptiveAvgPool2D) for branch in psp.pyramid.branches)
    v3p = build("deeplabv3p", RESNET50_OS8, NUM_CLASSES)
    assert isinstance(v3p.fuse[0][0][2], paddle.nn.ReLU) and isinstance(v3p.aspp.branches[1][0][2], paddle.nn.ReLU)
    assert not v3p.align_corners
    without_relu = build("deeplabv3p", RESNET50_OS8, NUM_CLASSES, depthwise_relu=False)
    assert len(without_relu.fuse[0][0]) == 2 and len(without_relu.aspp.branches[1][0]) == 2
    assert sorted(without_relu.state_dict()) == sorted(v3p.state_dict())  # same tensors, one ReLU fewer


@pytest.mark.parametrize("name, options, message", [
    ("pspnet", {"pool_order": "up"}, "pool_order='up' must be one of 'bins', 'reversed'"),
    ("pspnet", {"pooling": "max"}, "pooling='max' must be one of 'adaptive', 'fixed_kernel'"),
    ("pspnet", {"align_corners": "yes"}, "align_corners='yes' must be true or false"),
    ("deeplabv3p", {"depthwise_relu": 1}, "depthwise_relu=1 must be true or false"),
    ("deeplabv3p", {"align_corners": None}, "align_corners=None must be true or false"),
])
def test_bad_options_name_the_option(name, options, message):
    with pytest.raises(ValueError) as info:
        build(name, RESNET50_OS8, NUM_CLASSES, **options)
    assert str(info.value) == message


# -------------------------------------------------------------------------------------------------
# the SemSegPaddle (dygraph) seed's pyramid pooling
# -------------------------------------------------------------------------------------------------


def seed_pool(x: paddle.Tensor, bins: int) -> paddle.Tensor:
    """The seed's pooling: an average pool of kernel = stride = size // bins + 1 and padding
    kernel × bins − size on each side, padding excluded from the mean (Pool2D's default)."""
    height, width = x.shape[-2:]
    kernel = [height // bins + 1, width // bins + 1]
    padding = [kernel[0] * bins - height, kernel[1] * bins - width]
    return paddle.nn.AvgPool2D(kernel, kernel, padding, exclusive=True)(x)


@pytest.mark.parametrize("size, bins", [((33, 40), b) for b in (1, 2, 3, 6)] + [((31, 97), 6), ((64, 48), 3),
                                                                                  ((97, 7), 2), ((97, 7), 3)])
def test_fixed_kernel_pool_is_the_seeds(size, bins):
    x = paddle.randn([2, 3, *size])
    expected = seed_pool(x, bins)
    got = FixedKernelAvgPool(bins)(x)
    assert got.shape == expected.shape == [2, 3, bins, bins]
    assert relative_error(got.numpy(), expected.numpy()) <= 1e-6
    if bins > 1:  # and it is not adaptive pooling
        assert relative_error(got.numpy(), paddle.nn.AdaptiveAvgPool2D(bins)(x).numpy()) > 1e-3


def test_fixed_kernel_pool_refuses_maps_it_would_pad_a_whole_window_of():
    """The seed's pool on a 12-wide map for 6 bins returns 8 cells, some averaging only padding (NaN)."""
    x = paddle.randn([1, 3, 12, 40])
    assert seed_pool(x, 6).shape[-2] == 8 and bool(paddle.isnan(seed_pool(x, 6)).any())
    with pytest.raises(ValueError, match=r"pooling='fixed_kernel' cannot pool a feature map 12 wide \(height\) "
                                         r"into 6 bins"):
        FixedKernelAvgPool(6)(x)


def test_fixed_kernel_head_is_the_seed_head():
    """Default options (bins order, no bias, 512 channels) + pooling: fixed_kernel compute the seed's
    PSPHead: concat([x, branches in bin order]) → 3×3 conv-BN-ReLU → 1×1 classifier."""
    paddle.seed(0)
    info = RESNET50_OS8.__class__([level.__class__(16, level.stride, level.name) for level in RESNET50_OS8])
    head = build("pspnet", info, 5, pooling="fixed_kernel", channels=8)
    randomise(head, seed=4)
    head.eval()
    features = [paddle.randn([2, 16, 36, 44]) for _ in info]
    x = features[-1]
    pooled = []
    for bins, branch in zip(head.bins, head.pyramid.branches):
        y = branch[1](seed_pool(x, bins))
        pooled.append(paddle.nn.functional.interpolate(y, size=[36, 44], mode="bilinear", align_corners=False))
    expected = head.classifier(head.bottleneck(paddle.concat([x] + pooled, axis=1)))
    with paddle.no_grad():
        assert relative_error(head(features).numpy(), expected.numpy()) <= 1e-5


def test_fixed_kernel_head_exports_with_a_dynamic_input_size(tmp_path):
    assert_exports(tmp_path, "pspnet", channels=16, bins=[1, 2], pooling="fixed_kernel")
