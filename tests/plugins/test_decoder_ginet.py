"""GINet head and the semantic-context loss: PaddleSeg's parameter count, the GI unit's arithmetic,
shapes, gradients, learning, class embeddings, options, export, training runs."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml

from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.model.interfaces import FeatureInfo, FeatureLevel
from semsegpaddle.core.model.assembly import FCNAuxHead, SegmentationModel
from semsegpaddle.plugins.decoders import ginet_impl
from semsegpaddle.plugins.losses.semantic_context import class_presence, semantic_context_loss

from tests.helpers.tiny import TinyBackbone
from tests.helpers.decoder_checks import (
    RESNET50_OS8, blocky_batch, build, count_parameters, entry_point_module, import_without_paddle,
    resnet18_features, small_info,
)
from tests.plugins.test_decoder_glore import _conv1x1, _batchnorm_eval, _np, _randomise

#: measured with PaddleSeg 2.8: GINet on ResNet50_vd OS8 with JPU (levels 1-3: 512/1024/2048), 19 classes,
#: with its auxiliary head (AuxLayer 1024 → 256, conv without bias); BN statistics included
PADDLESEG_GINET_WITH_AUX = 32_291_589
#: small options for cheap forward passes
SMALL = {"channels": 16, "num_state": 8, "num_node": 4, "embedding_dim": 6, "jpu_width": 8}


@pytest.fixture(autouse=True)
def quiet_learnable_embeddings_warning():
    """Most tests build without an embeddings file; the warning is tested on its own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GINet: no class_embeddings file")
        yield


def _aux_like_paddleseg():
    """The core's auxiliary head on level 2, as PaddleSeg's GINet builds its AuxLayer (no conv bias)."""
    aux = FCNAuxHead(RESNET50_OS8[2].channels, 256, 19)
    extra_bias = 0 if aux.conv[0].bias is None else 256
    return count_parameters(aux) - extra_bias


def test_parameter_count_within_one_percent_of_paddleseg(tmp_path):
    """Where we differ from PaddleSeg's GINet, and why:

    - the semantic-context centroids (num_state × num_classes = 256 × 19): PaddleSeg computes the
      class nodes but discards them (no SC-loss), so it has no such parameters;
    - with an embeddings file, the 19 × 300 embeddings are a fixed buffer, not a parameter
      (PaddleSeg keeps its all-zero, frozen embeddings as a parameter). Without a file they are
      learnable parameters of the same shape.
    Everything else — JPU, 3×3 conv, GI unit, classifier, aux head — matches exactly.
    """
    centroids = 256 * 19
    learnable = count_parameters(build("ginet", RESNET50_OS8, 19)) + _aux_like_paddleseg()
    assert learnable - PADDLESEG_GINET_WITH_AUX == centroids
    assert abs(learnable - PADDLESEG_GINET_WITH_AUX) / PADDLESEG_GINET_WITH_AUX < 0.01

    path = tmp_path / "words.npy"
    np.save(path, np.random.default_rng(0).normal(size=(19, 300)).astype("float32"))
    fixed = count_parameters(build("ginet", RESNET50_OS8, 19, class_embeddings=path)) + _aux_like_paddleseg()
    assert fixed - PADDLESEG_GINET_WITH_AUX == centroids - 19 * 300
    assert abs(fixed - PADDLESEG_GINET_WITH_AUX) / PADDLESEG_GINET_WITH_AUX < 0.01


def test_jpu_has_fastfcns_layers():
    """Three 3×3 conv-BN-ReLU (levels 1-3 → 512), four separable convs (1536 → 512, dilations 1, 2, 4, 8)."""
    head = build("ginet", RESNET50_OS8, 19)
    w = 512
    reduce = sum(9 * c * w + 4 * w for c in (512, 1024, 2048))
    separable = 9 * 3 * w + 4 * 3 * w + 3 * w * w + 4 * w  # depthwise, BN, pointwise, BN
    assert count_parameters(head.jpu) == reduce + 4 * separable
    assert [b[0]._dilation for b in head.jpu.branches] == [[1, 1], [2, 2], [4, 4], [8, 8]]
    assert head.jpu.out_channels == 2048
    without = build("ginet", RESNET50_OS8, 19, jpu=False)
    assert without.jpu is None
    assert count_parameters(head) - count_parameters(without) == count_parameters(head.jpu)


def test_conv_bias_adds_one_bias_per_conv_before_batchnorm():
    without = count_parameters(build("ginet", RESNET50_OS8, 19))
    with_bias = count_parameters(build("ginet", RESNET50_OS8, 19, conv_bias=True))
    jpu = 3 * 512 + 4 * (3 * 512 + 512)
    assert with_bias - without == jpu + 512 + 512  # JPU, the 3×3 conv, the GI unit's extend conv


def test_head_has_the_papers_layers_and_loss_contract():
    head = build("ginet", RESNET50_OS8, 19)
    assert list(head.conv[0].weight.shape) == [512, 2048, 3, 3]
    unit = head.interaction
    assert list(unit.project.weight.shape) == [84, 512, 1, 1]  # visual nodes
    assert list(unit.reduce.weight.shape) == [256, 512, 1, 1]  # node states
    assert list(unit.semantic_gcn.node_conv.weight.shape) == [19, 19, 1]  # one semantic node per class
    assert list(head.embeddings.shape) == [19, 300]
    assert [list(layer.weight.shape) for layer in (head.embed[0], head.embed[3])] == [[300, 128], [128, 256]]
    assert list(head.context_centroids.shape) == [256, 19]
    assert head.aux_weights == (0.2,) and head.aux_losses == ("semantic_context",)
    off = build("ginet", RESNET50_OS8, 19, context_weight=0.0)
    assert off.aux_weights == () and off.aux_losses == ()


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _node_gcn(gcn, v):
    """numpy GINet graph convolution: relu(v + A v) across nodes, then W across states."""
    across = _conv1x1(_np(gcn.node_conv.weight), _np(gcn.node_conv.bias), v.transpose(0, 2, 1)).transpose(0, 2, 1)
    return _conv1x1(_np(gcn.state_conv.weight), None, np.maximum(across + v, 0))


def test_graph_interaction_unit_computes_the_papers_formula():
    """Against numpy: visual nodes V = (W_r X) Bᵀ / HW; both graphs reason (GCN); class nodes gather
    visual values by an affinity softmax over the visual nodes, visual nodes gather semantic values
    by the same affinity softmax over the classes; γ-weighted sums; back-projection; residual."""
    from semsegpaddle.plugins.decoders.ginet_impl import GraphInteractionUnit

    unit = GraphInteractionUnit(6, num_state=4, num_node=3, num_classes=5)
    _randomise(unit, seed=3)  # the γ scales too, so both directions of the interaction count
    unit.eval()
    rng = np.random.default_rng(4)
    x, semantic = rng.normal(size=(2, 6, 3, 4)), rng.normal(size=(2, 4, 5))
    got_x, got_classes = unit(paddle.to_tensor(x.astype("float32")), paddle.to_tensor(semantic.astype("float32")))

    flat = x.reshape(2, 6, 12)
    weights = _conv1x1(_np(unit.project.weight), _np(unit.project.bias), flat)  # N×K×L
    states = _conv1x1(_np(unit.reduce.weight), _np(unit.reduce.bias), flat)  # N×S×L
    visual = _node_gcn(unit.visual_gcn, states @ weights.transpose(0, 2, 1) / 12)
    semantic = _node_gcn(unit.semantic_gcn, semantic)
    it = unit.interaction
    query = _conv1x1(_np(it.query.weight), _np(it.query.bias), semantic)
    key = _conv1x1(_np(it.key.weight), _np(it.key.bias), visual)
    affinity = query.transpose(0, 2, 1) @ key  # N×classes×nodes
    to_classes = _conv1x1(_np(it.visual_value.weight), _np(it.visual_value.bias), visual) \
        @ _softmax(affinity, 2).transpose(0, 2, 1)
    to_visual = _conv1x1(_np(it.semantic_value.weight), _np(it.semantic_value.bias), semantic) @ _softmax(affinity, 1)
    classes = _np(unit.gamma_semantic) * semantic + to_classes
    visual = _np(unit.gamma_visual) * to_visual + visual
    y = _conv1x1(_np(unit.extend.weight), None, visual @ weights)
    expected_x = (flat + _batchnorm_eval(unit.norm, y)).reshape(x.shape)
    for got, expected in ((got_x.numpy(), expected_x), (got_classes.numpy(), classes)):
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_shapes(output_stride):
    """With JPU the head works at the stride of level 1 (8); without, at the deepest level's."""
    info, features = resnet18_features(output_stride, 64, 48)
    for jpu, stride in ((True, 8), (False, output_stride)):
        head = build("ginet", info, 5, jpu=jpu, **SMALL)
        head.eval()
        assert head(features).shape == [2, 5, 64 // stride, 48 // stride]
        head.train()
        logits, context = head(features)
        assert logits.shape == [2, 5, 64 // stride, 48 // stride] and context.shape == [2, 5]


def test_every_parameter_gets_a_gradient():
    """Pixel loss + semantic-context loss reach every trainable parameter, the embeddings included.

    At initialisation the γ scales are 0, which by design stops the gradient into the
    semantic-to-visual values; they are set non-zero first so every path is exercised.
    """
    paddle.seed(0)
    info = small_info(strides=(4, 8, 8, 8))
    head = build("ginet", info, 4, conv_bias=True, **SMALL)
    head.interaction.gamma_visual.set_value(paddle.full([4], 0.5))
    head.interaction.gamma_semantic.set_value(paddle.full([4], 0.5))
    head.train()
    features = [paddle.randn([2, level.channels, 64 // level.stride, 48 // level.stride]) for level in info]
    logits, context = head(features)
    label = paddle.randint(0, 4, [2, *logits.shape[2:]])
    (F.cross_entropy(logits, label, axis=1) + semantic_context_loss(context, label, 4, 255)).backward()
    trainable = [(name, p) for name, p in head.named_parameters() if not p.stop_gradient]
    assert "embeddings" in {name for name, _ in trainable}
    silent = [name for name, p in trainable if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert not silent, f"parameters without gradient: {silent}"


def test_overfits_one_batch():
    """TinyBackbone + GINet (JPU on levels 1-3) on one batch: the weighted loss falls by ≥ 90 %."""
    paddle.seed(0)
    backbone = TinyBackbone(width=16)
    head = build("ginet", backbone.feature_info, 4, channels=32, num_state=16, num_node=8, embedding_dim=16,
                 jpu_width=16)
    model = paddle.nn.LayerList([backbone, head])
    model.train()
    optimizer = paddle.optimizer.Adam(learning_rate=0.01, parameters=model.parameters())
    images, label = blocky_batch(4)
    losses = []
    for _ in range(100):
        logits, context = head(backbone((images - 128.0) / 64.0))
        logits = F.interpolate(logits, size=label.shape[1:], mode="bilinear")
        loss = F.cross_entropy(logits, label, axis=1) + head.aux_weights[0] * semantic_context_loss(context, label, 4, 255)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


# ---------------------------------------------------------------------------------------------------
# the semantic-context loss
# ---------------------------------------------------------------------------------------------------

def _bce(logit: float, target: float) -> float:
    return math.log1p(math.exp(-logit)) if target else math.log1p(math.exp(logit))


LABELS = np.array([
    [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 255], [0, 0, 0, 0]],  # classes {0, 2} and one ignored pixel
    [[1, 1, 1, 1], [1, 1, 1, 1], [255, 255, 1, 1], [1, 1, 1, 1]],  # class {1}
])
LOGITS = np.array([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]], np.float32)


def test_semantic_context_loss_against_a_hand_computed_example():
    targets, labelled = class_presence(paddle.to_tensor(LABELS), 3, 255)
    assert targets.numpy().tolist() == [[1, 0, 1], [0, 1, 0]]
    assert labelled.numpy().tolist() == [True, True]
    image0 = (_bce(2.0, 1) + _bce(-1.0, 0) + _bce(0.5, 1)) / 3
    image1 = (_bce(-0.3, 0) + _bce(1.5, 1) + _bce(-2.0, 0)) / 3
    loss = semantic_context_loss(paddle.to_tensor(LOGITS), paddle.to_tensor(LABELS), 3, 255)
    assert float(loss) == pytest.approx((image0 + image1) / 2, rel=1e-5)


def test_semantic_context_loss_excludes_ignored_pixels():
    logits = paddle.to_tensor(LOGITS)
    # ignore_index 0: image 0 contains only class 2; image 1 is unchanged
    targets, _ = class_presence(paddle.to_tensor(LABELS), 3, 0)
    assert targets.numpy().tolist() == [[0, 0, 1], [0, 1, 0]]
    image0 = (_bce(2.0, 0) + _bce(-1.0, 0) + _bce(0.5, 1)) / 3
    image1 = (_bce(-0.3, 0) + _bce(1.5, 1) + _bce(-2.0, 0)) / 3
    assert float(semantic_context_loss(logits, paddle.to_tensor(LABELS), 3, 0)) == pytest.approx(
        (image0 + image1) / 2, rel=1e-5)
    # an image whose every pixel is ignored says nothing: it leaves the mean
    blank = LABELS.copy()
    blank[1] = 255
    assert float(semantic_context_loss(logits, paddle.to_tensor(blank), 3, 255)) == pytest.approx(image0_255(), rel=1e-5)
    everything_ignored = np.full_like(LABELS, 255)
    assert float(semantic_context_loss(logits, paddle.to_tensor(everything_ignored), 3, 255)) == 0.0


def image0_255() -> float:
    """The loss of LABELS' first image alone with ignore_index 255."""
    return (_bce(2.0, 1) + _bce(-1.0, 0) + _bce(0.5, 1)) / 3


def test_semantic_context_loss_is_indifferent_to_label_resolution():
    """Presence is read from the label as given: upsampling the label changes nothing."""
    logits = paddle.to_tensor(LOGITS)
    big = np.kron(LABELS, np.ones((5, 5), LABELS.dtype))
    assert float(semantic_context_loss(logits, paddle.to_tensor(big), 3, 255)) == pytest.approx(
        float(semantic_context_loss(logits, paddle.to_tensor(LABELS), 3, 255)), rel=1e-6)


def test_semantic_context_loss_rejects_logits_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"N×3"):
        semantic_context_loss(paddle.zeros([2, 4]), paddle.to_tensor(LABELS), 3, 255)


# ---------------------------------------------------------------------------------------------------
# class embeddings
# ---------------------------------------------------------------------------------------------------

def test_embeddings_file_is_fixed_knowledge(tmp_path):
    """A file's embeddings are a buffer: saved with the model, never trained, exactly the file's values."""
    words = np.random.default_rng(1).normal(size=(3, 10)).astype("float32")
    path = tmp_path / "words.npy"
    np.save(path, words)
    head = build("ginet", small_info((4, 8, 8, 8)), 3, class_embeddings=path,
                 **{k: v for k, v in SMALL.items() if k != "embedding_dim"})
    assert "embeddings" not in {name for name, _ in head.named_parameters()}
    assert np.array_equal(head.state_dict()["embeddings"].numpy(), words)
    assert list(head.embed[0].weight.shape) == [10, 128]  # D comes from the file


@pytest.mark.parametrize("array", [np.zeros((18, 300)), np.zeros((19,)), np.zeros((19, 300, 1))])
def test_embeddings_of_the_wrong_shape_are_a_one_line_error(tmp_path, array):
    path = tmp_path / "words.npy"
    np.save(path, array)
    with pytest.raises(ConfigError) as info:
        build("ginet", RESNET50_OS8, 19, class_embeddings=path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "(19, D)" in message and str(tuple(array.shape)) in message


def test_missing_or_unreadable_embeddings_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"class_embeddings file .*nowhere\.npy does not exist"):
        build("ginet", RESNET50_OS8, 19, class_embeddings=tmp_path / "nowhere.npy")
    text = tmp_path / "words.npy"
    text.write_text("cat 0.1 0.2\n")
    with pytest.raises(ConfigError, match=r"class_embeddings file .*words\.npy is not a readable \.npy array"):
        build("ginet", RESNET50_OS8, 19, class_embeddings=text)
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full((19, 4), np.nan))
    with pytest.raises(ConfigError, match=r"nan\.npy: expected finite numbers"):
        build("ginet", RESNET50_OS8, 19, class_embeddings=bad)


def test_wrong_embeddings_stop_the_cli_with_one_line(tmp_path):
    np.save(tmp_path / "words.npy", np.zeros((5, 300), np.float32))
    config = {
        "model": {"backbone": {"name": "resnet", "depth": 18, "output_stride": 8},
                  "decoder": {"name": "ginet", "class_embeddings": str(tmp_path / "words.npy")}},
        "dataset": {"name": "synthetic", "image_size": 64, "num_train": 4, "num_val": 2},
        "train": {"iters": 1, "batch_size": 2, "crop_size": [64, 64]},
        "runtime": {"progress": False, "threads": 2, "output_dir": str(tmp_path / "run")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "train", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "words.npy" in lines[0] and "got (5, 300)" in lines[0], lines[0]


def test_learnable_embeddings_warn_once(monkeypatch, tmp_path):
    monkeypatch.setattr(ginet_impl, "_warned_learnable", False)
    info = small_info((4, 8, 8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build("ginet", info, 3, **SMALL)
        build("ginet", info, 3, **SMALL)
        path = tmp_path / "words.npy"
        np.save(path, np.ones((3, 5), np.float32))
        build("ginet", info, 3, class_embeddings=path, **SMALL)
    messages = [str(w.message) for w in caught if "class_embeddings" in str(w.message)]
    assert len(messages) == 1 and "learnable" in messages[0]


# ---------------------------------------------------------------------------------------------------
# options, plugin, export, training
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"channels": 0}, "channels=0"),
    ({"num_state": 1}, "num_state=1"),
    ({"num_node": 0}, "num_node=0"),
    ({"jpu_width": 0}, "jpu_width=0"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"context_weight": -0.1}, "context_weight=-0.1"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError) as info:
        build("ginet", RESNET50_OS8, 19, **options)
    assert message in str(info.value)


def test_jpu_needs_three_levels_without_it_one_is_enough():
    two = FeatureInfo([FeatureLevel(8, 8, "a"), FeatureLevel(12, 16, "b")])
    with pytest.raises(ValueError, match="jpu=True needs three backbone levels"):
        build("ginet", two, 3, **SMALL)
    head = build("ginet", two, 3, jpu=False, **SMALL)
    head.eval()
    assert head([paddle.rand([1, 8, 4, 4]), paddle.rand([1, 12, 2, 2])]).shape == [1, 3, 2, 2]


def test_exports_with_a_dynamic_input(tmp_path):
    """Eval mode returns the logits alone; batch, height and width are unknown while exporting."""
    from semsegpaddle.core.inference.export import export_model

    paddle.seed(0)
    backbone = TinyBackbone(width=8)
    model = SegmentationModel(backbone, build("ginet", backbone.feature_info, 3, **SMALL), 3,
                              [128.0] * 3, [64.0] * 3)
    report = export_model(model, tmp_path / "ginet", ["a", "b", "c"], np.zeros((3, 3), np.uint8))
    assert set(report.max_abs_error) == {"64x64", "48x80"}
    assert max(report.max_abs_error.values()) <= 1e-4


def test_entry_point_module_imports_without_paddle():
    module = entry_point_module("ginet")
    assert module == "semsegpaddle.plugins.decoders.ginet"
    done = import_without_paddle(module)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ginet"
    assert import_without_paddle("semsegpaddle.plugins.decoders.ginet_impl").returncode != 0


def test_ginet_trains_through_the_api_with_the_semantic_context_loss(tmp_path):
    """Three steps of semsegpaddle.api.train; the loss has a main, a semantic-context and an aux term."""
    import json

    from semsegpaddle.api import train
    from semsegpaddle.core.config.loader import config_from_dict

    config = config_from_dict({
        "model": {"backbone": {"name": "resnet", "depth": 18, "output_stride": 8},
                  "decoder": {"name": "ginet", **SMALL}, "aux": {"level": 2}},
        "dataset": {"name": "synthetic", "image_size": 64, "num_train": 8, "num_val": 4},
        "train": {"iters": 3, "batch_size": 2, "crop_size": [64, 64], "scale_range": [1.0, 1.0]},
        "eval": {"batch_size": 2},
        "runtime": {"progress": False, "threads": 2, "output_dir": str(tmp_path)},
    })
    result = train(config)
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log[-1]["terms"]) == 3
