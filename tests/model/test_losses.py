"""The built-in losses: values on hand-computed cases, ignore handling, OHEM's pixel choice, Lovász
against a NumPy version of the paper's definition, gradients, training, listing and lazy import."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.plugin.manager import get_registry
from semsegpaddle.plugins.losses.cross_entropy import ohem_kept
from semsegpaddle.plugins.losses.options import LossOptionError
from tests.helpers.cli import semseg

IGNORE = 255
PIXEL_LOSSES = ["cross_entropy", "ohem_cross_entropy", "dice", "lovasz_softmax"]
ALL_LOSSES = PIXEL_LOSSES + ["semantic_context"]
EXPECTED_OPTIONS = {
    "cross_entropy": ["class_weights", "class_weights_method", "class_weights_max", "class_weights_enet_c",
                      "label_smoothing"],
    "ohem_cross_entropy": ["thresh", "min_kept", "class_weights", "class_weights_method", "class_weights_max",
                           "class_weights_enet_c"],
    "dice": ["smooth", "exponent"],
    "lovasz_softmax": ["classes", "per_image"],
    "semantic_context": [],
}


def build(name: str, **options):
    """The registered loss ``name`` built with ``options`` (through the installed entry point)."""
    return get_registry("loss").get(name).factory(IGNORE, **options)


def value(loss, logits, label) -> float:
    """The loss of NumPy logits and labels, as a float."""
    return float(loss(paddle.to_tensor(np.asarray(logits, np.float32)), paddle.to_tensor(np.asarray(label, np.int64))))


def random_case(seed: int = 0, n: int = 2, c: int = 4, h: int = 6, w: int = 7, ignored: float = 0.2):
    """Random logits (N×C×H×W) and labels (N×H×W) with about ``ignored`` of the pixels ignored."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, c, h, w)) * 2).astype(np.float32)
    label = rng.integers(0, c, size=(n, h, w))
    label[rng.random((n, h, w)) < ignored] = IGNORE
    return logits, label


def two_pixel_case():
    """One image, two classes, three pixels: A (label 0, p = [3/4, 1/4]), B (label 1, p = [1/2, 1/2]),
    and an ignored pixel whose logits are extreme."""
    logits = np.array([[[[math.log(3.0), 0.0, -30.0]], [[0.0, 0.0, 30.0]]]], np.float32)  # 1×2×1×3
    label = np.array([[[0, 1, IGNORE]]])
    return logits, label


# -------------------------------------------------------------------------------------------------
# cross-entropy
# -------------------------------------------------------------------------------------------------


def test_cross_entropy_hand_computed():
    logits, label = two_pixel_case()
    # A: −log 3/4 ; B: −log 1/2 ; mean over the two labelled pixels
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert value(build("cross_entropy"), logits, label) == pytest.approx(expected, rel=1e-6)
    # class weights [1, 3]: (1·CE_A + 3·CE_B) / (1 + 3)
    weighted = (-math.log(0.75) - 3 * math.log(0.5)) / 4
    assert value(build("cross_entropy", class_weights=[1.0, 3.0]), logits, label) == pytest.approx(weighted, rel=1e-6)
    # label smoothing ε: (1−ε)·CE + ε·mean over classes of −log p_c
    eps = 0.2
    smooth_a = (1 - eps) * -math.log(0.75) + eps * (-math.log(0.75) - math.log(0.25)) / 2
    smooth_b = -math.log(0.5)  # uniform prediction: every term is log 2
    assert value(build("cross_entropy", label_smoothing=eps), logits, label) == pytest.approx(
        (smooth_a + smooth_b) / 2, rel=1e-6)


def test_cross_entropy_matches_pytorch():
    torch = pytest.importorskip("torch")
    logits, label = random_case(seed=3)
    weights = [0.5, 2.0, 1.0, 3.0]
    for options in [{}, {"class_weights": weights}, {"label_smoothing": 0.1},
                    {"class_weights": weights, "label_smoothing": 0.3}]:
        reference = torch.nn.functional.cross_entropy(
            torch.tensor(logits), torch.tensor(label), ignore_index=IGNORE,
            weight=torch.tensor(weights) if "class_weights" in options else None,
            label_smoothing=options.get("label_smoothing", 0.0))
        assert value(build("cross_entropy", **options), logits, label) == pytest.approx(float(reference), rel=1e-5)
        # and the gradients (the plain loss runs through Paddle's fused kernel, smoothing does not)
        ours = paddle.to_tensor(logits, stop_gradient=False)
        build("cross_entropy", **options)(ours, paddle.to_tensor(label)).backward()
        theirs = torch.tensor(logits, requires_grad=True)
        torch.nn.functional.cross_entropy(
            theirs, torch.tensor(label), ignore_index=IGNORE, label_smoothing=options.get("label_smoothing", 0.0),
            weight=torch.tensor(weights) if "class_weights" in options else None).backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_every_pixel_ignored_gives_zero_and_finite_gradients(name):
    logits = paddle.to_tensor(random_case()[0], stop_gradient=False)
    loss = build(name)(logits, paddle.full([2, 6, 7], IGNORE, "int64"))
    loss.backward()
    assert float(loss) == 0.0
    assert np.isfinite(logits.grad.numpy()).all()


def test_class_weights_change_the_loss_and_their_length_is_checked():
    logits, label = random_case()
    plain = value(build("cross_entropy"), logits, label)
    assert value(build("cross_entropy", class_weights=[1.0] * 4), logits, label) == pytest.approx(plain, rel=1e-6)
    assert value(build("cross_entropy", class_weights=[1.0, 5.0, 1.0, 1.0]), logits, label) != pytest.approx(plain)
    for name in ("cross_entropy", "ohem_cross_entropy"):
        with pytest.raises(ValueError, match=r"class_weights has 3 entries but the output has 4 classes") as info:
            value(build(name, class_weights=[1.0, 2.0, 3.0]), logits, label)
        assert isinstance(info.value, SemsegError) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, options, option", [
    ("cross_entropy", {"class_weights": [1.0, -1.0]}, "class_weights"),
    ("cross_entropy", {"class_weights": [0.0, 0.0]}, "class_weights"),
    ("cross_entropy", {"label_smoothing": 1.0}, "label_smoothing"),
    ("ohem_cross_entropy", {"thresh": 0.0}, "thresh"),
    ("ohem_cross_entropy", {"min_kept": -1}, "min_kept"),
    ("dice", {"smooth": -1.0}, "smooth"),
    ("dice", {"exponent": 0}, "exponent"),
    ("lovasz_softmax", {"classes": "some"}, "classes"),
])
def test_bad_options_are_refused_when_the_loss_is_built(name, options, option):
    with pytest.raises(LossOptionError, match=f"loss option {option} must") as info:
        build(name, **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_bad_labels_and_shapes_are_one_line_errors(name):
    logits, label = random_case()
    label[0, 0, 0] = 7
    with pytest.raises(LossOptionError, match=rf"loss {name}: label value 7 is neither a class in \[0, 4\)"):
        value(build(name), logits, label)
    with pytest.raises(LossOptionError, match=r"got \[2, 4, 6, 7\] and \[2, 6, 6\]"):
        value(build(name), logits, label[:, :, :6])


# -------------------------------------------------------------------------------------------------
# every pixel loss: ignore pixels, gradients
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options", [
    ("cross_entropy", {}), ("cross_entropy", {"class_weights": [1.0, 2.0, 0.5, 1.0], "label_smoothing": 0.1}),
    ("ohem_cross_entropy", {"thresh": 0.5, "min_kept": 20}), ("dice", {}), ("dice", {"exponent": 1}),
    ("lovasz_softmax", {}), ("lovasz_softmax", {"classes": "all", "per_image": True}),
])
def test_logits_at_ignored_pixels_never_change_the_loss(name, options):
    logits, label = random_case(seed=1)
    loss = build(name, **options)
    before = value(loss, logits, label)
    rng = np.random.default_rng(7)
    changed = logits.copy()
    ignored = np.broadcast_to((label == IGNORE)[:, None], logits.shape)
    changed[ignored] = (rng.normal(size=int(ignored.sum())) * 50).astype(np.float32)
    assert value(loss, changed, label) == pytest.approx(before, rel=1e-6, abs=1e-7)
    # while changing a labelled pixel does change it
    changed = logits.copy()
    changed[~ignored] += (rng.normal(size=int((~ignored).sum())) * 3).astype(np.float32)
    assert value(loss, changed, label) != pytest.approx(before, rel=1e-4)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_flow(name):
    logits, label = random_case(seed=2)
    output = logits.max(axis=(2, 3)) if name == "semantic_context" else logits
    tensor = paddle.to_tensor(output, stop_gradient=False)
    loss = build(name)(tensor, paddle.to_tensor(label))
    loss.backward()
    grad = tensor.grad.numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 1e-4
    if name != "semantic_context":
        assert np.abs(grad.transpose(0, 2, 3, 1)[label == IGNORE]).max() == 0.0


# -------------------------------------------------------------------------------------------------
# OHEM
# -------------------------------------------------------------------------------------------------

OHEM_PROBS = [0.1, 0.3, 0.5, 0.65, 0.8, 0.95]


def ohem_case():
    """One image, classes 0/1, a row of pixels of class 0 whose probability of class 0 is OHEM_PROBS,
    then an ignored pixel predicted very badly (probability 0.01)."""
    probs = np.array(OHEM_PROBS + [0.01])
    logits = np.stack([np.log(probs / (1 - probs)), np.zeros_like(probs)])[None, :, None, :].astype(np.float32)
    label = np.zeros((1, 1, len(probs)), np.int64)
    label[0, 0, -1] = IGNORE
    return logits, label


@pytest.mark.parametrize("thresh, min_kept, kept", [
    (0.7, 2, [0.1, 0.3, 0.5, 0.65]),        # enough pixels under thresh: exactly those
    (0.7, 4, [0.1, 0.3, 0.5, 0.65]),
    (0.7, 5, [0.1, 0.3, 0.5, 0.65, 0.8]),   # too few: the 5 lowest probabilities
    (0.2, 3, [0.1, 0.3, 0.5]),
    (0.2, 0, [0.1]),                        # min_kept 0: thresh alone
    (0.05, 0, []),
    (0.7, 6, OHEM_PROBS),                   # no more labelled pixels than min_kept: all of them
    (0.7, 100, OHEM_PROBS),
])
def test_ohem_keeps_the_expected_pixels(thresh, min_kept, kept):
    logits, label = ohem_case()
    prob = paddle.nn.functional.softmax(paddle.to_tensor(logits), axis=1)[:, 0]
    mask = ohem_kept(prob, paddle.to_tensor(label) != IGNORE, thresh, min_kept).numpy()
    assert np.flatnonzero(mask[0, 0]).tolist() == [OHEM_PROBS.index(p) for p in kept]
    expected = float(np.mean([-math.log(p) for p in kept])) if kept else 0.0
    loss = build("ohem_cross_entropy", thresh=thresh, min_kept=min_kept)
    assert value(loss, logits, label) == pytest.approx(expected, rel=1e-5)


def test_ohem_backpropagates_through_kept_pixels_only():
    logits, label = ohem_case()
    tensor = paddle.to_tensor(logits, stop_gradient=False)
    build("ohem_cross_entropy", thresh=0.7, min_kept=2)(tensor, paddle.to_tensor(label)).backward()
    moved = np.abs(tensor.grad.numpy()).sum(axis=1)[0, 0] > 0
    assert moved.tolist() == [True, True, True, True, False, False, False]


def test_ohem_is_plain_cross_entropy_when_it_keeps_everything():
    logits, label = random_case(seed=4)
    weights = [1.0, 2.0, 0.5, 3.0]
    for options in [{}, {"class_weights": weights}]:
        plain = value(build("cross_entropy", **options), logits, label)
        for thresh, min_kept in [(1.01, 10**6), (0.5, 10**6), (1.01, 0)]:
            ohem = build("ohem_cross_entropy", thresh=thresh, min_kept=min_kept, **options)
            assert value(ohem, logits, label) == pytest.approx(plain, rel=1e-6)
    assert value(build("ohem_cross_entropy", thresh=0.5, min_kept=10), logits, label) > plain


# -------------------------------------------------------------------------------------------------
# Dice and Lovász
# -------------------------------------------------------------------------------------------------


def test_dice_hand_computed():
    logits, label = two_pixel_case()
    # class 0: p = [3/4, 1/2], t = [1, 0];  class 1: p = [1/4, 1/2], t = [0, 1]
    dice0 = 1 - (2 * 0.75 + 1) / (0.75**2 + 0.5**2 + 1 + 1)
    dice1 = 1 - (2 * 0.5 + 1) / (0.25**2 + 0.5**2 + 1 + 1)
    assert value(build("dice"), logits, label) == pytest.approx((dice0 + dice1) / 2, rel=1e-6)
    linear0 = 1 - (2 * 0.75 + 0.5) / (0.75 + 0.5 + 1 + 0.5)
    linear1 = 1 - (2 * 0.5 + 0.5) / (0.25 + 0.5 + 1 + 0.5)
    assert value(build("dice", smooth=0.5, exponent=1), logits, label) == pytest.approx(
        (linear0 + linear1) / 2, rel=1e-6)


def test_dice_averages_over_images_and_classes():
    logits, label = random_case(seed=5)
    loss = build("dice")
    both = value(loss, logits, label)
    assert both == pytest.approx((value(loss, logits[:1], label[:1]) + value(loss, logits[1:], label[1:])) / 2,
                                 rel=1e-6)


def test_lovasz_hand_computed():
    logits, label = two_pixel_case()
    # class 0: errors A .25 (fg), B .5 (bg); sorted B, A; Jaccard loss of {B} = 1/2, of {B, A} = 1
    #          -> .5·.5 + .25·(1 − .5) = .375
    # class 1: errors B .5 (fg), A .25 (bg); Jaccard loss of {B} = 1, of {B, A} = 1 -> .5·1 + .25·0 = .5
    assert value(build("lovasz_softmax"), logits, label) == pytest.approx((0.375 + 0.5) / 2, rel=1e-6)


def jaccard_loss(mispredicted: set[int], foreground: set[int]) -> float:
    """Δ_J(M) = |M| / |F ∪ M|, the set function whose Lovász extension the loss is (0 for M = ∅)."""
    return len(mispredicted) / len(foreground | mispredicted) if mispredicted else 0.0


def lovasz_reference(logits: np.ndarray, label: np.ndarray, classes: str, per_image: bool) -> float:
    """Berman et al.'s Algorithm 1 written directly: per class, sort the errors, and weight each by
    how much the Jaccard loss grows when that pixel joins the mispredicted set."""
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    groups = [(prob[i:i + 1], label[i:i + 1]) for i in range(len(label))] if per_image else [(prob, label)]
    results = []
    for group_prob, group_label in groups:
        valid = group_label != IGNORE
        if not valid.any():
            continue
        flat_prob = group_prob.transpose(0, 2, 3, 1)[valid]  # labelled pixels only, P×C
        flat_label = group_label[valid]
        per_class = []
        for c in range(prob.shape[1]):
            foreground = set(np.flatnonzero(flat_label == c).tolist())
            if classes == "present" and not foreground:
                continue
            errors = np.abs((flat_label == c).astype(np.float64) - flat_prob[:, c])
            order = np.argsort(-errors, kind="stable")
            total, mispredicted = 0.0, set()
            for pixel in order:
                before = jaccard_loss(mispredicted, foreground)
                mispredicted.add(int(pixel))
                total += errors[pixel] * (jaccard_loss(mispredicted, foreground) - before)
            per_class.append(total)
        results.append(np.mean(per_class) if per_class else 0.0)
    return float(np.mean(results)) if results else 0.0


@pytest.mark.parametrize("classes", ["present", "all"])
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_matches_numpy_reference(classes, per_image):
    for seed in range(3):
        logits, label = random_case(seed=10 + seed, n=3, c=5, h=5, w=6)
        label[label == 4] = 0        # a class absent from the batch: "present" and "all" differ
        label[0][label[0] == 3] = 1  # and one absent from one image only
        label[2] = IGNORE            # an image with nothing labelled
        loss = build("lovasz_softmax", classes=classes, per_image=per_image)
        expected = lovasz_reference(logits, label, classes, per_image)
        assert value(loss, logits, label) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    present = lovasz_reference(logits, label, "present", per_image)
    assert present != pytest.approx(lovasz_reference(logits, label, "all", per_image))


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
def test_zero_for_perfect_predictions_and_large_for_wrong_ones(name):
    _, label = random_case(seed=6, c=3)
    safe = np.where(label == IGNORE, 0, label)
    perfect = (np.eye(3)[safe].transpose(0, 3, 1, 2) * 40 - 20).astype(np.float32)
    wrong = (np.eye(3)[(safe + 1) % 3].transpose(0, 3, 1, 2) * 40 - 20).astype(np.float32)
    unsure = np.zeros_like(perfect)
    loss = build(name)
    assert value(loss, perfect, label) < 1e-5
    assert value(loss, unsure, label) > 0.3
    assert value(loss, wrong, label) > 0.9


# -------------------------------------------------------------------------------------------------
# training, listing, lazy import
# -------------------------------------------------------------------------------------------------


def training_batch():
    """Two 16×16 images whose pixels are noisy colours of their class (3 classes; image 0 lacks
    class 2), a corner of ignored pixels."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, size=(2, 16, 16))
    label[0][label[0] == 2] = 0
    label[:, :2, :2] = IGNORE
    colours = np.eye(3, dtype=np.float32) * 2 - 0.5
    image = colours[np.where(label == IGNORE, 0, label)].transpose(0, 3, 1, 2)
    image = image + rng.normal(scale=0.3, size=image.shape).astype(np.float32)
    return paddle.to_tensor(image), paddle.to_tensor(label)


@pytest.mark.parametrize("name, options", [
    ("cross_entropy", {}), ("ohem_cross_entropy", {"min_kept": 50}), ("dice", {}), ("lovasz_softmax", {}),
    ("semantic_context", {}),
])
def test_each_loss_trains_a_tiny_model(name, options):
    image, label = training_batch()
    paddle.seed(0)
    conv = paddle.nn.Conv2D(3, 3, 1)
    optimizer = paddle.optimizer.Adam(0.1, parameters=conv.parameters())
    loss_fn = build(name, **options)
    values = []
    for _ in range(40):
        output = conv(image)
        if name == "semantic_context":  # "class c is in the image": its best pixel's score
            output = output.amax(axis=[2, 3])
        loss = loss_fn(output, label)
        values.append(float(loss))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    assert values[-1] <= 0.1 * values[0], values[::8]


def test_semseg_list_loss_shows_all_five_with_their_options():
    run = semseg(None, "list", "loss", "--json", timeout=120)
    assert run.returncode == 0, run.stderr
    listed = {c["name"]: c for c in json.loads(run.stdout)}
    assert set(ALL_LOSSES) <= set(listed)
    for name, options in EXPECTED_OPTIONS.items():
        assert listed[name]["kind"] == "loss" and listed[name]["distribution"] == "semsegpaddle"
        assert [o["name"] for o in listed[name]["options"]] == options
        assert all(o["description"] and not o["required"] for o in listed[name]["options"])
    defaults = {o["name"]: o["default"] for o in listed["ohem_cross_entropy"]["options"]}
    assert defaults == {"thresh": 0.7, "min_kept": 100000, "class_weights": None,
                        "class_weights_method": "inverse_frequency", "class_weights_max": 10.0,
                        "class_weights_enet_c": 1.02}
    text = semseg(None, "list", "loss", timeout=120)
    assert text.returncode == 0, text.stderr
    for name in ALL_LOSSES:
        assert f"  {name}  [plugin losses" in text.stdout
    assert "classes: one of 'present', 'all' = 'present'" in text.stdout


def test_registration_module_imports_without_paddle():
    script = """
import sys
sys.modules['paddle'] = None
from semsegpaddle.plugins.losses import standard
from semsegpaddle.plugins.losses.options import LossOptionError
names = []
standard.semseg_register_losses(lambda name, factory, **kwargs: names.append(name))
try:
    standard.dice(255, exponent=0)
except LossOptionError as error:
    print(error)
print(sorted(names))
try:
    standard.dice(255)
except ImportError:
    print('building needs paddle')
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "loss option exponent must be in [1, inf), got 0",
        str(sorted(ALL_LOSSES)),
        "building needs paddle",
    ]
