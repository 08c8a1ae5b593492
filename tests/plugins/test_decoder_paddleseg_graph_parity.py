"""GloRe and GINet against PaddleSeg 2.8's models, built as its zoo configs build them (configs/glore/
glore_resnet50_os8_cityscapes_1024x512_80k.yml, configs/ginet/ginet_resnet50_os8_cityscapes_1024x512_80k.yml):
random weights and BatchNorm statistics loaded through the decoders' ``paddleseg`` weight-source names, the
same ResNet-50 OS8-shaped features into both, eval-mode logits compared (head, aux head, upsampled output)."""
from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.assembly import SegmentationModel
from semsegpaddle.core.model.interfaces import Backbone

from tests.helpers.decoder_checks import DECODERS, RESNET50_OS8, build, count_parameters
from tests.helpers.parity import load_converted, relative_error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    paddleseg_models = pytest.importorskip("paddleseg.models")
from paddleseg.models import layers as paddleseg_layers  # noqa: E402

#: PaddleSeg's figures for 19 classes, heads and aux heads with BN statistics (FACTS.md)
PADDLESEG_GLORE_WITH_AUX = 3_612_454
PADDLESEG_GINET_WITH_AUX = 32_291_589
#: input sizes (one non-square); the stand-in backbone's levels have strides 4, 8, 8, 8 of them
SIZES = [(64, 64), (48, 80)]
NUM_CLASSES = 19

#: what each zoo config means for us: decoder options, then model-level settings
ZOO = {
    "glore": ({}, {"aux_level": 2, "aux_conv_bias": True, "align_corners": False}),
    "ginet": ({"jpu_deepest_first": True, "jpu_align_corners": True, "context_weight": 0,
               "embedding_init": "zeros", "train_embeddings": False},
              {"aux_level": 2, "aux_conv_bias": False, "align_corners": True}),
}


class FixedFeatures(Backbone):
    """Stands in for ResNet50_vd OS8 in both frameworks: declares its levels (ours: ``feature_info``,
    PaddleSeg: ``feat_channels``) and returns whatever features were set, ignoring the image."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_info = RESNET50_OS8
        self.feat_channels = RESNET50_OS8.channels
        self.features: list[paddle.Tensor] = []

    def forward(self, x):
        return self.features


def paddleseg_model(name: str) -> paddle.nn.Layer:
    """PaddleSeg's model with the arguments its ResNet-50 OS8 Cityscapes zoo config gives."""
    if name == "glore":
        return paddleseg_models.GloRe(NUM_CLASSES, FixedFeatures(), enable_auxiliary_loss=True, align_corners=False)
    return paddleseg_models.GINet(NUM_CLASSES, FixedFeatures(), backbone_indices=[0, 1, 2, 3],
                                  enable_auxiliary_loss=True, jpu=True, align_corners=True)


def randomise(layer: paddle.nn.Layer, seed: int) -> None:
    """Random values for every tensor of the state dict: weights scaled by 1/√fan-in (so activations stay
    O(1) through the deep head), biases, graph scales, class embeddings, BatchNorm affine and statistics."""
    rng = np.random.default_rng(seed)
    state = layer.state_dict()
    norms = {key.rpartition(".")[0] for key in state if key.endswith("._mean")}
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        shape = tensor.shape
        if owner in norms:
            low, high = {"weight": (0.5, 1.5), "_variance": (0.5, 2.0)}.get(leaf, (-0.5, 0.5))
            value = rng.uniform(low, high, shape)
        elif key.endswith(".inp") or len(shape) < 2:
            value = rng.uniform(-1.0, 1.0, shape) if len(shape) < 2 else rng.normal(size=shape)
        else:  # conv weights are out×in×k…; Linear weights (Paddle) in×out
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            value = rng.normal(size=shape) / np.sqrt(fan_in)
        tensor.set_value(value.astype("float32"))


def features_for(height: int, width: int, seed: int) -> list[paddle.Tensor]:
    rng = np.random.default_rng(seed)
    return [paddle.to_tensor(rng.normal(size=(2, level.channels, height // level.stride, width // level.stride))
                             .astype("float32")) for level in RESNET50_OS8]


def _names(name: str, keys, options):
    """The decoder's registered ``paddleseg`` weight-source names."""
    return DECODERS.get(name).extras["weight_sources"]["paddleseg"](keys, options)


def ours_loaded(name: str, reference: paddle.nn.Layer) -> SegmentationModel:
    """Our model (stand-in backbone, decoder, the core's FCN aux head) filled through the names function."""
    decoder_options, model_options = ZOO[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = build(name, RESNET50_OS8, NUM_CLASSES, **decoder_options)
    model = SegmentationModel(FixedFeatures(), decoder, NUM_CLASSES, [0.0] * 3, [1.0] * 3, **model_options)
    state = {key: value.numpy() for key, value in reference.state_dict().items()}
    names = _names(name, list(state), decoder_options)
    assert set(names.values()) == set(state)  # every PaddleSeg tensor used (the stand-in backbone has none)
    converted = {(local if local.startswith("aux_head.") else f"decoder.{local}"): state[source]
                 for local, source in names.items()}
    converted.update({key: model.state_dict()[key].numpy() for key in ("mean", "std")})
    load_converted(model, converted)
    return model


@pytest.fixture(scope="module", params=["glore", "ginet"])
def pair(request):
    """(name, PaddleSeg's model, ours) with the same random weights, both in eval mode."""
    reference = paddleseg_model(request.param)
    randomise(reference, seed=len(request.param))
    ours = ours_loaded(request.param, reference)
    reference.eval()
    ours.eval()
    return request.param, reference, ours


@pytest.mark.parametrize("height, width", SIZES)
def test_logits_match_paddleseg(pair, height, width):
    """Head logits, aux head logits, and the upsampled output (model.align_corners) within 1e-4."""
    name, reference, ours = pair
    features = features_for(height, width, seed=height + width)
    reference.backbone.features = ours.backbone.features = features
    images = paddle.zeros([2, 3, height, width])
    with paddle.no_grad():
        if name == "glore":
            head, aux = reference.head(features)
        else:
            _, _, level2, fused = reference.base_forward(images)
            head, aux = reference.head(fused)[0], reference.auxlayer(level2)
        upsampled = reference(images)[0]
        errors = {
            "head": relative_error(ours.decoder(features).numpy(), head.numpy()),
            "aux": relative_error(ours.aux_head(features[2]).numpy(), aux.numpy()),
            "upsampled": relative_error(ours(images).numpy(), upsampled.numpy()),
        }
    assert list(ours(images).shape) == [2, NUM_CLASSES, height, width]
    assert max(errors.values()) <= 1e-4, errors


def test_parameter_counts_match_paddleseg(pair):
    name, reference, ours = pair
    expected = {"glore": PADDLESEG_GLORE_WITH_AUX, "ginet": PADDLESEG_GINET_WITH_AUX}[name]
    assert count_parameters(reference) == expected
    assert count_parameters(ours.decoder) + count_parameters(ours.aux_head) == expected


def test_jpu_matches_paddleseg_at_three_strides():
    """Levels at strides 8, 16, 32 (where the upsampling and its corner alignment count): PaddleSeg's JPU
    equals ours only with its level order and aligned corners."""
    from semsegpaddle.plugins.decoders.jpu import JPU

    channels, width = [6, 10, 12], 8
    reference = paddleseg_layers.JPU(channels, width=width)
    randomise(reference, seed=5)
    state = {f"jpu.{key}": value.numpy() for key, value in reference.state_dict().items()}
    ginet_keys = list(paddleseg_model("ginet").state_dict())
    names = {local[len("jpu."):]: source for local, source in _names("ginet", ginet_keys, ZOO["ginet"][0]).items()
             if local.startswith("jpu.")}
    rng = np.random.default_rng(6)
    levels = [paddle.to_tensor(rng.normal(size=(2, c, 64 // s, 96 // s)).astype("float32"))
              for c, s in zip(channels, (8, 16, 32))]
    reference.eval()
    expected = reference(paddle.zeros([2, 1, 1, 1]), *levels)[-1].numpy()
    errors = {}
    for deepest_first, align_corners in [(True, True), (True, False), (False, True)]:
        ours = JPU(channels, width, deepest_first=deepest_first, align_corners=align_corners)
        load_converted(ours, {local: state[source] for local, source in names.items()})
        ours.eval()
        errors[deepest_first, align_corners] = relative_error(ours(levels).numpy(), expected)
    assert errors[True, True] <= 1e-4, errors
    assert errors[True, False] > 1e-2 and errors[False, True] > 1e-2, errors


def test_names_refuse_options_that_compute_otherwise(pair):
    """One line naming each option that would make the loaded weights compute something else."""
    name, reference, _ = pair
    keys = list(reference.state_dict())
    if name == "glore":
        with pytest.raises(SemsegError) as info:
            _names(name, keys, {"normalize": True, "conv_bias": True})
        assert str(info.value) == ("PaddleSeg GloRe weights need decoder options conv_bias: false, normalize: false "
                                   "(the config gives conv_bias: true, normalize: true)")
        return
    with pytest.raises(SemsegError) as info:
        _names(name, keys, {"conv_bias": True})
    assert str(info.value) == (
        "PaddleSeg GINet weights need decoder options context_weight: 0, conv_bias: false, jpu_deepest_first: true, "
        "jpu_align_corners: true (the config gives context_weight: 0.2, conv_bias: true, jpu_deepest_first: false, "
        "jpu_align_corners: false)")
    with pytest.raises(SemsegError, match=r"need decoder options jpu_align_corners: true \(the config gives "
                                          r"jpu_align_corners: false\)$"):
        _names(name, keys, {**ZOO["ginet"][0], "jpu_align_corners": False})
    with pytest.raises(SemsegError, match="^PaddleSeg GINet weights with a JPU need decoder option jpu: true$"):
        _names(name, keys, {"jpu": False, "context_weight": 0})


def test_names_refuse_other_checkpoints(pair):
    name, reference, _ = pair
    other = {"glore": "ginet", "ginet": "glore"}[name]
    with pytest.raises(SemsegError, match=f"^these are not PaddleSeg {'GloRe' if other == 'glore' else 'GINet'} "
                                          "weights"):
        _names(other, list(reference.state_dict()), ZOO[other][0])
    classifier_bias = {"glore": "head.classifier.bias", "ginet": "head.conv6.1.bias"}[name]
    keys = [key for key in reference.state_dict() if key != classifier_bias]
    with pytest.raises(SemsegError, match=f"no tensor '{classifier_bias}'$"):
        _names(name, keys, ZOO[name][0])


def test_aux_entries_only_when_the_checkpoint_has_an_aux_layer(pair):
    name, reference, _ = pair
    keys = [key for key in reference.state_dict() if "auxlayer" not in key]
    names = _names(name, keys, ZOO[name][0])
    assert names and not any(local.startswith("aux_head.") for local in names)


def _silent_parameters(model: paddle.nn.Layer, features: list[paddle.Tensor], height: int, width: int) -> set[str]:
    """Trainable parameters left with an all-zero gradient by one training step on every output."""
    model.backbone.features = features
    model.train()
    label = paddle.to_tensor(np.random.default_rng(7).integers(0, NUM_CLASSES, (2, height, width)))
    outputs = model(paddle.zeros([2, 3, height, width]))
    sum(paddle.nn.functional.cross_entropy(o, label, axis=1) for o in outputs).backward()
    return {name for name, p in model.named_parameters()
            if not p.stop_gradient and (p.grad is None or not float(p.grad.abs().sum()))}


def test_ginet_trains_what_paddleseg_trains():
    """Freshly initialised, one training step on the same features: the same parameters learn. With
    PaddleSeg's fixed all-zero class embeddings, zero-initialised graph scales and biases, and its class
    nodes unused, the whole semantic branch gets no gradient in PaddleSeg — and, with its options, in ours."""
    paddle.seed(0)
    reference = paddleseg_model("ginet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = build("ginet", RESNET50_OS8, NUM_CLASSES, **ZOO["ginet"][0])
    ours = SegmentationModel(FixedFeatures(), decoder, NUM_CLASSES, [0.0] * 3, [1.0] * 3, **ZOO["ginet"][1])
    assert decoder.embeddings.stop_gradient and not decoder.embeddings.numpy().any()
    assert not hasattr(decoder, "context_centroids") and decoder.aux_weights == ()
    features = features_for(32, 32, seed=8)
    names = _names("ginet", list(reference.state_dict()), ZOO["ginet"][0])
    ours_name = {source: local if local.startswith("aux_head.") else f"decoder.{local}"
                 for local, source in names.items()}
    expected = {ours_name[name] for name in _silent_parameters(reference, features, 32, 32)}
    assert "decoder.interaction.gamma_semantic" in expected and "decoder.conv.0.weight" not in expected
    assert _silent_parameters(ours, features, 32, 32) == expected


@pytest.mark.parametrize("options, message", [
    ({"embedding_init": "uniform"}, "embedding_init='uniform' must be one of 'normal', 'zeros'"),
    ({"train_embeddings": "no"}, "train_embeddings='no' must be true or false"),
    ({"jpu_deepest_first": 1}, "jpu_deepest_first=1 must be true or false"),
    ({"jpu_align_corners": None}, "jpu_align_corners=None must be true or false"),
])
def test_bad_new_options_name_the_option(options, message):
    with pytest.raises(ValueError) as info:
        build("ginet", RESNET50_OS8, NUM_CLASSES, **options)
    assert str(info.value) == message
