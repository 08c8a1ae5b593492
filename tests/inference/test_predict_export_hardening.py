"""predict and export from a checkpoint alone, file modes under the umask, quiet ONNX export that
installs nothing, inputs never overwritten, every pixel mode read correctly."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsegpaddle.core.common.atomic import atomic_path, staging_dir, write_text_atomic
from semsegpaddle.core.common.errors import DataError, SemsegError
from semsegpaddle.core.data.image_io import read_image, read_label
from semsegpaddle.core.inference.prediction import output_names, predict_files
from tests.helpers.cli import invoke

#: a small real model from the built-in plugins, so the real CLI in a subprocess can build it
SMALL_RUN = ["model.backbone.name=resnet", "model.backbone.depth=18", "model.decoder.channels=16",
             "model.decoder.atrous_rates=[1,2,3]", "dataset.image_size=32", "dataset.num_train=4",
             "dataset.num_val=2", "train.iters=2", "train.batch_size=2", "train.crop_size=[32,32]",
             "train.warmup_iters=0", "eval.batch_size=2", "runtime.progress=false", "runtime.threads=2"]
#: what Paddle, paddle2onnx, Polygraphy and onnxruntime print when left alone
NOISE = re.compile(r"\[Paddle2ONNX\]|\[INFO\]|\[WARNING\]|^[IWE]\d{4} |Polygraphy|\[[IWE]\] |onnxruntime|"
                   r"pir_interpreter|eager_utils|ccache|Intermediate model", re.M)


def semseg(*args: str, cwd: Path, umask: int = 0o022) -> subprocess.CompletedProcess:
    """The real command line in a child process whose umask is ``umask``."""
    return subprocess.run([sys.executable, "-m", "semsegpaddle.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: os.umask(umask))


def modes(root: Path) -> dict[str, str]:
    """Relative path -> octal permission bits of ``root`` and everything below it."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def expected_modes(root: Path) -> dict[str, str]:
    """What plain open() / mkdir() give under umask 022."""
    return {name: oct(0o755 if (root / name).is_dir() else 0o644) for name in modes(root)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training run of the real CLI under umask 022."""
    root = tmp_path_factory.mktemp("hardening")
    result = semseg("train", *SMALL_RUN, f"runtime.output_dir={root / 'run'}", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def _rgb(seed: int, size=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# file modes
# ---------------------------------------------------------------------------------------------


def test_a_training_run_writes_files_readable_under_the_umask(run_dir):
    found = modes(run_dir)
    assert {"model_best.safetensors", "model_last.safetensors", "config.yaml", "metrics.json"} <= set(found)
    assert found == expected_modes(run_dir)


def test_atomic_writes_follow_the_umask_and_keep_an_existing_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
        kept = tmp_path / "private.txt"
        kept.write_text("old")
        kept.chmod(0o600)
        with atomic_path(kept) as tmp:
            tmp.write_text("new")
        folder = staging_dir(tmp_path / "exported")
    finally:
        os.umask(previous)
    assert oct(stat.S_IMODE((tmp_path / "new.txt").stat().st_mode)) == oct(0o640)
    assert kept.read_text() == "new" and oct(stat.S_IMODE(kept.stat().st_mode)) == oct(0o600)
    assert oct(stat.S_IMODE(folder.stat().st_mode)) == oct(0o750)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------------------------------
# predict and export from a checkpoint alone, through the real CLI
# ---------------------------------------------------------------------------------------------


def test_predict_from_a_checkpoint_alone_never_touches_its_inputs(run_dir, tmp_path):
    from semsegpaddle.core.engine.checkpoint import read_metadata

    images, other = tmp_path / "imgs", tmp_path / "other"
    images.mkdir(), other.mkdir()
    for index, path in enumerate([images / "a.png", images / "b.png", other / "a.png"]):
        Image.fromarray(_rgb(index)).save(path)
    before = {p: p.read_bytes() for p in [images / "a.png", images / "b.png", other / "a.png"]}
    result = semseg("predict", "imgs/a.png", "imgs/b.png", "other/a.png", "imgs/b.png",
                    "--weights", str(run_dir / "model_best.safetensors"), "--output", "imgs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote 3 masks to imgs"
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "b.png", "b_mask.png", "imgs_a.png", "other_a.png"]
    palette = np.asarray(read_metadata(run_dir / "model_best.safetensors")["palette"])
    for name in ["b_mask.png", "imgs_a.png", "other_a.png"]:
        with Image.open(images / name) as mask:
            assert mask.mode == "P" and mask.size == (48, 40)
            assert (np.array(mask.getpalette()[: palette.size]).reshape(palette.shape) == palette).all()
            assert np.asarray(mask).max() < len(palette)
    assert modes(images) == expected_modes(images)


def test_an_unreadable_image_is_named_after_the_others_were_written(run_dir, tmp_path):
    Image.fromarray(_rgb(0)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = semseg("predict", "broken.png", "good.png", "--weights", str(run_dir / "model_best.safetensors"),
                    "--output", "out", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: 1 of 2 images unreadable (1 mask written for the others): ")
    assert "broken.png: cannot read image" in lines[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_onnx_export_from_a_checkpoint_is_quiet_and_installs_nothing(run_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    import paddle

    freeze = [sys.executable, "-m", "pip", "freeze", "--all"]
    packages_before = subprocess.run(freeze, capture_output=True, text=True, check=True).stdout
    result = semseg("export", "--weights", str(run_dir / "model_best.safetensors"), "--output", "exported", "--onnx",
                    cwd=tmp_path)
    assert subprocess.run(freeze, capture_output=True, text=True, check=True).stdout == packages_before
    assert result.returncode == 0, result.stderr
    assert not NOISE.search(result.stdout) and not NOISE.search(result.stderr), result.stdout + result.stderr
    assert result.stderr == "" and len(result.stdout.strip().splitlines()) == 1
    assert result.stdout.startswith("exported to exported (max |exported - model| 64x64:")
    out = tmp_path / "exported"
    assert modes(out) == expected_modes(out)
    info = json.loads((out / "export_info.json").read_text())
    assert info["class_names"][1] == "disc" and {"onnx 64x64", "onnx 48x80"} <= set(info["verified_max_abs_error"])
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(0, 255, (1, 3, 36, 52)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = paddle.jit.load(str(out / "model"))(paddle.to_tensor(x)).numpy()
    assert got.shape == (1, 6, 36, 52)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_a_given_config_or_override_wins_over_the_stored_one(run_dir, tmp_path):
    weights = run_dir / "model_best.safetensors"
    shown = invoke("config", *SMALL_RUN, "model.decoder.channels=24")
    assert shown.exit_code == 0, shown.output
    (tmp_path / "wider.yaml").write_text(shown.output)
    given = invoke("export", str(tmp_path / "wider.yaml"), "--weights", str(weights),
                                "--output", str(tmp_path / "e"))
    overridden = invoke("predict", str(weights), "--config", "model.decoder.channels=24",
                                     "--weights", str(weights), "--output", str(tmp_path / "p"))
    for result in (given, overridden):
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: {weights} do not fit the model:"), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()


def test_a_checkpoint_without_a_config_asks_for_one(tmp_path, tiny_plugins):
    from semsegpaddle.api import config_from_dict, create_model
    from semsegpaddle.core.engine.checkpoint import save_weights

    from tests.helpers.tiny import TINY_CONFIG

    save_weights(create_model(config_from_dict(TINY_CONFIG)), tmp_path / "bare.safetensors")
    result = invoke("predict", str(tmp_path / "bare.safetensors"), "--weights",
                                      str(tmp_path / "bare.safetensors"), "--output", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'bare.safetensors'}: the checkpoint stores no config; "
                                     f"give the config it was trained with")


def test_onnx_conversion_skips_the_installing_step_and_debug_shows_the_log(tmp_path, capfd):
    pytest.importorskip("paddle2onnx")
    from semsegpaddle.core.inference.export import export_model
    from semsegpaddle.core.model.assembly import SegmentationModel
    from semsegpaddle.plugins.decoders.deeplab import DeepLabV3

    from tests.helpers.tiny import TinyBackbone

    if "polygraphy" in sys.modules:
        pytest.skip("another test imported polygraphy already")
    backbone = TinyBackbone()
    model = SegmentationModel(backbone, DeepLabV3(backbone.feature_info, 3, channels=8), 3, [0.0] * 3, [1.0] * 3)
    capfd.readouterr()
    export_model(model, tmp_path / "quiet", ["a", "b", "c"], np.zeros((3, 3), np.uint8), onnx=True)
    quiet = capfd.readouterr()
    assert "polygraphy" not in sys.modules  # its constant folding is what pip-installs packages
    assert quiet.out == "" and quiet.err == ""
    export_model(model, tmp_path / "loud", ["a", "b", "c"], np.zeros((3, 3), np.uint8), onnx=True, verbose=True)
    assert "[Paddle2ONNX]" in capfd.readouterr().out


def test_a_failed_onnx_conversion_is_one_line_with_its_cause(tmp_path, monkeypatch):
    paddle2onnx = pytest.importorskip("paddle2onnx")
    from semsegpaddle.core.inference.export import export_model
    from semsegpaddle.core.model.assembly import SegmentationModel
    from semsegpaddle.plugins.decoders.deeplab import DeepLabV3

    from tests.helpers.tiny import TinyBackbone

    def failing(*args, **kwargs):  # what paddle2onnx does when a conversion fails: log, then exit
        from paddle2onnx.utils import logging

        print("[Paddle2ONNX] Start parsing the Paddle model file...")
        logging.error("Failed to convert PaddlePaddle model: operator pd_op.foo is not supported.")

    monkeypatch.setattr(paddle2onnx, "export", failing)
    backbone = TinyBackbone()
    model = SegmentationModel(backbone, DeepLabV3(backbone.feature_info, 3, channels=8), 3, [0.0] * 3, [1.0] * 3)
    with pytest.raises(SemsegError) as caught:
        export_model(model, tmp_path / "e", ["a", "b", "c"], np.zeros((3, 3), np.uint8), onnx=True)
    assert str(caught.value) == ("ONNX conversion failed: Failed to convert PaddlePaddle model: "
                                 "operator pd_op.foo is not supported.")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# output names
# ---------------------------------------------------------------------------------------------


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(0, (8, 8))).save(path, format="PNG")


def test_same_stems_get_names_from_their_folders_or_extensions(tmp_path):
    x, y, z, j = tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", tmp_path / "z" / "c.png", tmp_path / "z" / "c.jpg"
    _touch(x, y, z, j)
    plan = output_names([x, y, z, j, tmp_path / "x" / ".." / "x" / "a.png"], tmp_path / "out", overlay=True)
    assert [(p, m.name, o.name) for p, m, o in plan] == [
        (x, "x_a.png", "x_a_overlay.png"), (y, "y_a.png", "y_a_overlay.png"),
        (z, "c_png.png", "c_png_overlay.png"), (j, "c_jpg.png", "c_jpg_overlay.png")]


def test_a_mask_that_would_replace_an_input_gets_a_suffix(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    _touch(a, b)
    (tmp_path / "link").symlink_to(tmp_path)
    plan = output_names([a, b], tmp_path / "link")
    assert [m.name for _, m, _ in plan] == ["a_mask.png", "b.png"]


def test_clashing_names_stop_before_anything_is_written(tmp_path):
    a, overlay_named = tmp_path / "in" / "a.png", tmp_path / "in" / "a_overlay.png"
    _touch(a, overlay_named)
    with pytest.raises(SemsegError, match="would overwrite an input image"):
        predict_files(None, [a, overlay_named], tmp_path / "in", np.zeros((3, 3), np.uint8), overlay=True,
                      progress=False)
    _touch(tmp_path / "p" / "a.png", tmp_path / "q" / "a.png", tmp_path / "p_a.png")
    with pytest.raises(SemsegError, match="would both write .*p_a.png; rename one of them"):
        predict_files(None, [tmp_path / "p" / "a.png", tmp_path / "q" / "a.png", tmp_path / "p_a.png"],
                      tmp_path / "out", np.zeros((3, 3), np.uint8), progress=False)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png", "a_overlay.png"]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# pixel modes
# ---------------------------------------------------------------------------------------------

SIXTEEN = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)


@pytest.mark.parametrize("mode, make, expected", [
    ("L", lambda: Image.fromarray(np.array([[0, 77, 255]], np.uint8)), [0, 77, 255]),
    ("LA", lambda: Image.fromarray(np.array([[[10, 0], [200, 255]]], np.uint8), mode="LA"), [10, 200]),
    ("1", lambda: Image.fromarray(np.array([[False, True]])), [0, 255]),
    ("I;16", lambda: Image.fromarray(SIXTEEN), [0, 0, 1, 156, 255]),
    ("I", lambda: Image.fromarray(SIXTEEN.astype(np.int32)), [0, 0, 1, 156, 255]),
    ("F", lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), [0, 128, 255]),
])
def test_grayscale_modes_become_gray_rgb_by_their_value_range(tmp_path, mode, make, expected):
    image = make()
    assert image.mode == mode
    path = tmp_path / ("x.png" if mode in ("L", "LA", "1", "I;16") else "x.tif")
    image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (1, len(expected), 3)
    assert got[0].tolist() == [[v, v, v] for v in expected]


@pytest.mark.parametrize("mode, pixel, expected", [
    ("RGB", (10, 20, 30), (10, 20, 30)),
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
    ("CMYK", (0, 255, 0, 0), (255, 0, 255)),
    ("P", 3, (200, 100, 50)),
])
def test_colour_modes_become_rgb(tmp_path, mode, pixel, expected):
    image = Image.new(mode, (5, 4), pixel)
    if mode == "P":
        image.putpalette([0, 0, 0, 1, 2, 3, 4, 5, 6, 200, 100, 50])
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    got = read_image(path)
    assert got.shape == (4, 5, 3) and got.dtype == np.uint8
    assert tuple(got[0, 0]) == expected and (got == got[0, 0]).all()


def test_out_of_range_and_unreadable_images_are_named(tmp_path):
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "big.tif")
    Image.fromarray(np.array([[0.0, 2.0]], np.float32)).save(tmp_path / "hdr.tif")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"big.tif: 32-bit integer pixels must lie in 0-65535 .*found 0..70000"):
        read_image(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"hdr.tif: floating-point pixels must lie in \[0, 1\], found 0..2"):
        read_image(tmp_path / "hdr.tif")
    with pytest.raises(DataError, match=r"text.png: cannot read image \(cannot identify image file"):
        read_image(tmp_path / "text.png")


def test_predict_feeds_a_16_bit_png_by_its_value_range(tmp_path, monkeypatch):
    import semsegpaddle.core.inference.prediction as prediction

    seen = []

    def record(model, images):
        seen.append(images[0])
        return np.zeros((1, *images[0].shape[:2]), np.int64)

    monkeypatch.setattr(prediction, "predict_batch", record)
    values = np.random.default_rng(0).integers(0, 65536, (6, 7), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    predict_files(None, [tmp_path / "deep.png"], tmp_path / "out", np.zeros((3, 3), np.uint8), progress=False)
    assert seen[0].dtype == np.uint8
    assert (seen[0] == (values >> 8).astype(np.uint8)[:, :, None]).all()
    assert len(np.unique(seen[0])) > 10  # not saturated at 255


def test_labels_are_class_ids_and_colour_or_float_labels_are_refused(tmp_path):
    Image.fromarray(np.array([[0, 1, 2]], np.uint8)).save(tmp_path / "l.png")
    palette = Image.fromarray(np.array([[0, 3, 255]], np.uint8), mode="P")
    palette.putpalette([9, 9, 9] * 256)
    palette.save(tmp_path / "p.png")
    Image.fromarray(np.array([[0, 300, 1000]], np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((2, 3, 3), 7, np.uint8)).save(tmp_path / "gray_rgb.png")
    Image.fromarray(np.array([[[1, 2, 3]]], np.uint8)).save(tmp_path / "colour.png")
    Image.fromarray(np.array([[0.0, 1.0]], np.float32)).save(tmp_path / "float.tif")
    assert read_label(tmp_path / "l.png").tolist() == [[0, 1, 2]]
    assert read_label(tmp_path / "p.png").tolist() == [[0, 3, 255]]
    deep = read_label(tmp_path / "deep.png")
    assert deep.tolist() == [[0, 300, 1000]] and deep.dtype == np.uint16
    assert read_label(tmp_path / "gray_rgb.png").tolist() == [[7, 7, 7], [7, 7, 7]]
    with pytest.raises(DataError, match=r"colour.png: label file holds colours or several channels \(mode RGB\)"):
        read_label(tmp_path / "colour.png")
    with pytest.raises(DataError, match=r"float.tif: label file holds floating-point pixels \(mode F\)"):
        read_label(tmp_path / "float.tif")
