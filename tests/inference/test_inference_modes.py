"""Inference modes: whole image, sliding windows (flush edge windows), multi-scale with flip."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from semsegpaddle.core.config.loader import config_from_dict, load_config
from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.inference.backends import DynamicBackend
from semsegpaddle.core.inference.evaluation import evaluate
from semsegpaddle.core.inference.segmenter import (InferenceMode, Segmenter, coverage, resize_image, scaled_size,
                                               window_boxes, window_starts)
from semsegpaddle.core.model.assembly import build_model

from tests.helpers.tiny import TINY_CONFIG, TwoSquares
from tests.cli.test_cli import TINY
from tests.helpers.cli import invoke


@pytest.fixture
def tiny_model(tiny_plugins):
    """The conftest tiny backbone + DeepLabv3 (random weights, eval mode): position-dependent."""
    paddle.seed(3)
    model = build_model(config_from_dict(TINY_CONFIG), 3, pretrained=False)
    model.eval()
    return model


class PixelModel(paddle.nn.Layer):
    """A 1×1 convolution: every pixel's logits depend on that pixel alone (position-independent)."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 1)

    def forward(self, x):
        return self.conv(x / 255.0)


def image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def model_logits(model, img):
    """Logits of the model on one image, straight from paddle."""
    with paddle.no_grad():
        return model(paddle.to_tensor(img.transpose(2, 0, 1)[None].astype(np.float32)))


# ------------------------------------------------------------------ windows


def test_windows_are_stride_apart_and_the_last_is_flush_with_the_border():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(3, 4, 2) == [0]  # shorter than the window: one window of its own size
    assert coverage(10, 4, 3).tolist() == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert coverage(11, 4, 3).tolist() == [1, 1, 1, 2, 1, 1, 2, 2, 2, 2, 1]
    assert coverage(8, 4, 4).tolist() == [1] * 8
    assert window_boxes(3, 9, (4, 4), (2, 3)) == [(0, 0, 3, 4), (0, 3, 3, 7), (0, 5, 3, 9)]


def test_sliding_windows_cover_every_pixel_the_expected_number_of_times():
    """The backend reads each window's position from the pixels (row, column encoded in them)."""
    height, width, crop, stride = 11, 10, (4, 5), (3, 4)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    img = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    counts = np.zeros((height, width), int)
    origins = []

    def backend(batch):
        assert batch.shape[0] == 1 and batch.shape[2:] == crop  # one whole window at a time, never cut
        top, left = int(batch[0, 0, 0, 0]), int(batch[0, 1, 0, 0])
        origins.append((top, left))
        counts[top:top + crop[0], left:left + crop[1]] += 1
        return np.zeros((1, 2, *crop), np.float32)

    Segmenter(backend, InferenceMode("slide", crop, stride)).masks([img])
    assert origins == [(t, l) for t in (0, 3, 6, 7) for l in (0, 4, 5)]
    expected_rows = [1, 1, 1, 2, 1, 1, 2, 2, 2, 2, 1]
    expected_cols = [1, 1, 1, 1, 2, 2, 2, 2, 2, 1]
    assert (counts == np.outer(expected_rows, expected_cols)).all()


def test_slide_averages_each_pixel_over_the_windows_covering_it():
    """Each window answers with its own constant logit (its left edge): a pixel's result must be
    the mean of the windows covering it, worked out here window by window."""
    height, width, crop, stride = 6, 13, (6, 5), (6, 3)
    cols = np.broadcast_to(np.arange(width), (height, width))
    img = np.stack([cols, cols, cols], axis=-1).astype(np.uint8)

    def backend(batch):
        return np.full((1, 1, *batch.shape[2:]), float(batch[0, 0, 0, 0]), np.float32)

    scores = Segmenter(backend, InferenceMode("slide", crop, stride)).scores(img)
    lefts = [0, 3, 6, 8]
    expected = [np.mean([left for left in lefts if left <= x < left + 5]) for x in range(width)]
    assert np.allclose(scores[0], np.broadcast_to(expected, (height, width)), atol=1e-6)


# ------------------------------------------------------------------ slide vs whole


def test_slide_with_one_exact_window_equals_whole_image(tiny_model):
    img = image(32, 48)
    whole = Segmenter(DynamicBackend(tiny_model)).scores(img)
    for crop in ((32, 48), (64, 64)):  # exactly the image; larger than the image
        slide = Segmenter(DynamicBackend(tiny_model), InferenceMode("slide", crop, crop)).scores(img)
        assert np.array_equal(slide, whole)
    assert np.array_equal(whole, model_logits(tiny_model, img).numpy()[0])


def test_overlapping_slide_equals_whole_for_a_position_independent_model():
    paddle.seed(0)
    model = PixelModel()
    img = image(37, 53, seed=1)
    whole = Segmenter(DynamicBackend(model)).scores(img)
    slide = Segmenter(DynamicBackend(model), InferenceMode("slide", (16, 24), (10, 14))).scores(img)
    assert np.allclose(slide, whole, rtol=1e-6, atol=1e-6)
    multi = InferenceMode("slide", (16, 24), (10, 14), scales=(0.75, 1.5), flip=True)
    assert np.allclose(Segmenter(DynamicBackend(model), multi).probabilities(img),
                       Segmenter(DynamicBackend(model), InferenceMode(scales=(0.75, 1.5), flip=True)).probabilities(img),
                       atol=1e-6)


def test_slide_on_a_real_model_differs_from_whole_but_keeps_the_size(tiny_model):
    img = image(40, 56)
    slide = Segmenter(DynamicBackend(tiny_model), InferenceMode("slide", (32, 32), (16, 16))).masks([img])
    whole = Segmenter(DynamicBackend(tiny_model)).scores(img)
    assert slide.shape == (1, 40, 56)
    slide_scores = Segmenter(DynamicBackend(tiny_model), InferenceMode("slide", (32, 32), (16, 16))).scores(img)
    assert not np.allclose(slide_scores, whole)  # windows see less context: not the same computation


# ------------------------------------------------------------------ flip, scales


def test_flip_is_the_mean_of_the_image_and_its_mirror_mirrored_back(tiny_model):
    img = image(30, 44, seed=2)
    plain = F.softmax(model_logits(tiny_model, img), axis=1).numpy()[0]
    mirrored = F.softmax(model_logits(tiny_model, np.ascontiguousarray(img[:, ::-1])), axis=1).numpy()[0]
    expected = (plain + mirrored[:, :, ::-1]) / 2
    segmenter = Segmenter(DynamicBackend(tiny_model), InferenceMode(flip=True))
    got = segmenter.probabilities(img)
    assert np.allclose(got, expected, atol=1e-6)
    assert not np.allclose(plain, expected, atol=1e-3)  # the mirror changed something
    assert np.array_equal(segmenter.masks([img])[0], expected.argmax(axis=0))


def test_multi_scale_with_flip_equals_a_direct_computation(tiny_model):
    """Direct: paddle's softmax of each resized (and mirrored) image, resized back by paddle's
    bilinear interpolation, mirrored back, averaged."""
    img = image(36, 52, seed=4)
    scales = (0.5, 1.0, 1.75)
    total = 0
    for scale in scales:
        scaled = resize_image(img, scaled_size(36, 52, scale))
        for mirrored in (False, True):
            view = np.ascontiguousarray(scaled[:, ::-1]) if mirrored else scaled
            probs = F.softmax(model_logits(tiny_model, view), axis=1)
            probs = F.interpolate(probs, size=[36, 52], mode="bilinear", align_corners=False).numpy()[0]
            total = total + (probs[:, :, ::-1] if mirrored else probs)
    expected = total / (2 * len(scales))
    segmenter = Segmenter(DynamicBackend(tiny_model), InferenceMode(scales=scales, flip=True))
    got = segmenter.probabilities(img)
    assert got.shape == (3, 36, 52)
    assert np.allclose(got, expected, atol=2e-5)
    assert np.allclose(got.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(segmenter.masks([img])[0], expected.argmax(axis=0))


def test_scaled_sizes_round_half_up_and_never_vanish():
    assert scaled_size(36, 52, 0.75) == (27, 39)
    assert scaled_size(5, 3, 0.5) == (3, 2)
    assert scaled_size(1, 1, 0.1) == (1, 1)


def test_single_pass_batches_images_and_matches_one_by_one(tiny_model):
    images = [image(32, 40, seed=s) for s in range(3)]
    calls = []
    backend = DynamicBackend(tiny_model)

    def recording(batch):
        calls.append(batch.shape[0])
        return backend(batch)

    batched = Segmenter(recording).masks(images)
    assert calls == [3]
    for img, mask in zip(images, batched):
        assert np.array_equal(mask, Segmenter(backend).masks([img])[0])


def test_a_backend_of_the_wrong_shape_is_named():
    from semsegpaddle.core.common.errors import SemsegError

    with pytest.raises(SemsegError, match=r"backend returned an array of shape \(1, 2, 8, 8\) for input \(1, 3, 16, 16\)"):
        Segmenter(lambda batch: np.zeros((1, 2, 8, 8), np.float32)).masks([image(16, 16)])


# ------------------------------------------------------------------ configuration


def test_mode_checks_name_the_key():
    assert InferenceMode("slide", (512, 1024)).stride == (342, 683)  # 2/3 of the window, rounded up
    with pytest.raises(ConfigError, match=r"eval.crop_size: eval.mode slide needs the window size"):
        InferenceMode("slide")
    with pytest.raises(ConfigError, match=r"eval.stride: \[40, 8\] must not exceed eval.crop_size \[32, 32\]"):
        InferenceMode("slide", (32, 32), (40, 8))
    with pytest.raises(ConfigError, match=r"eval.scales: expected a non-empty list of numbers > 0, got \[1.0, 0\]"):
        InferenceMode(scales=(1.0, 0))
    with pytest.raises(ConfigError, match="eval.mode: expected whole or slide, got 'tiles'"):
        InferenceMode("tiles")


def test_config_keys_and_their_errors(tmp_path):
    config = load_config(None, ["eval.mode=slide", "eval.crop_size=[48,64]", "eval.scales=[0.5,1]", "eval.flip=true"])
    mode = InferenceMode.from_config(config)
    assert (mode.mode, mode.crop_size, mode.stride, mode.scales, mode.flip) == ("slide", (48, 64), (32, 43), (0.5, 1.0), True)
    assert InferenceMode.from_config(load_config(None)) == InferenceMode()
    with pytest.raises(ConfigError, match=r"'eval.scales' expects a non-empty list of numbers > 0, got \[\]"):
        load_config(None, ["eval.scales=[]"])
    with pytest.raises(ConfigError, match=r"eval.mode"):
        load_config(None, ["eval.mode=tiles"])
    path = tmp_path / "slide.yaml"
    path.write_text("eval:\n  mode: slide\n")
    with pytest.raises(ConfigError, match=rf"{path}: eval.crop_size: eval.mode slide needs"):
        InferenceMode.from_config(load_config(path))


# ------------------------------------------------------------------ evaluation and the CLI


def test_evaluation_in_each_mode_sees_every_image(tiny_model):
    dataset = TwoSquares("val", size=32, count=4)
    whole = evaluate(tiny_model, dataset, batch_size=2, progress=False)
    exact = evaluate(tiny_model, dataset, batch_size=2, progress=False, mode=InferenceMode("slide", (32, 32), (32, 32)))
    assert exact.to_json() == whole.to_json()
    multi = evaluate(tiny_model, dataset, progress=False, mode=InferenceMode("slide", (24, 24), (16, 16), (0.75, 1.25), True))
    assert multi.pixels == whole.pixels == 4 * (32 * 32 - 1)
    assert not tiny_model.training


def test_cli_mode_options_override_the_config(tmp_path, tiny_plugins):
    args = [*TINY, "train.iters=2", f"runtime.output_dir={tmp_path / 'run'}"]
    assert invoke("train", *args).exit_code == 0
    plain = invoke("eval", *args, "--out", str(tmp_path / "a.json"))
    exact = invoke("eval", *args, "eval.mode=whole", "--mode", "slide", "--crop-size", "32",
                                "--stride", "32,32", "--out", str(tmp_path / "b.json"))
    assert plain.exit_code == 0 and exact.exit_code == 0, exact.output
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()

    result = invoke("eval", *args, "--mode", "slide")
    assert result.exit_code == 1 and "eval.crop_size: eval.mode slide needs the window size" in result.output
    result = invoke("eval", *args, "--crop-size", "32,abc")
    assert result.exit_code == 2 and "expected HEIGHT,WIDTH" in result.output
    result = invoke("eval", *args, "--scales", "1,-2")
    assert result.exit_code == 2 and "expected comma-separated numbers > 0" in result.output

    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(image(40, 36)).save(tmp_path / "in.png")
    config = [f"--config={a}" for a in args]
    for name, options in (("a", []), ("b", ["--mode", "slide", "--crop-size", "24,24", "--scales", "0.75,1.25", "--flip"])):
        result = invoke("predict", str(tmp_path / "in.png"), "--output", str(tmp_path / name), *config,
                                     *options)
        assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "b" / "in.png")).shape == (40, 36)
