"""Weights of another framework's trained model used directly: --weights FILE or URL in eval/predict,
model.pretrained for fine-tuning, and semseg convert-weights CONFIG for a checkpoint of ours."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from semsegpaddle import api
from semsegpaddle.core.model.assembly import build_model
from tests.helpers.foreign import as_other, logits, randomised
from tests.helpers.cli import invoke

CLASSES = ["background", "bright", "dark"]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "imported.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"backbone": {"name": "tiny_imp"}, "decoder": {"name": "tiny_head"},
                  "aux": {"level": 2, "channels": 8}, "class_names": CLASSES},
        "dataset": {"name": "two_squares_imp", "count": 4},
        "train": {"iters": 2, "batch_size": 2, "crop_size": [32, 32], "scale_range": [1.0, 1.0]},
        "runtime": {"progress": False, "threads": 2, "output_dir": str(tmp_path / "run")},
    }))
    return path


def _foreign_file(config, folder: Path, classes: int = 3) -> tuple[Path, object]:
    """A .pdparams of the "other" framework (written by paddle.save) and the model it came from."""
    reference = build_model(config, classes, pretrained=False)
    state = randomised(reference)
    reference.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    path = folder / "trained.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in as_other(state).items()}, str(path))
    return path, reference


@pytest.fixture
def http_folder(tmp_path):
    """A loopback HTTP server over tmp_path/served; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_eval_weights_from_a_url_are_downloaded_once_and_give_the_referencelogits(
        import_plugins, config_file, http_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEG_CACHE", str(tmp_path / "cache"))
    folder, base = http_folder
    config = api.load_config(str(config_file))
    path, reference = _foreign_file(config, folder)
    model = api.load_model(config, f"{base}/{path.name}")
    np.testing.assert_array_equal(logits(model), logits(reference))
    cached = list((tmp_path / "cache" / "weights").rglob("trained.pdparams"))
    assert len(cached) == 1 and cached[0].read_bytes() == path.read_bytes()
    path.unlink()  # a second use needs no server: the cached copy is used
    np.testing.assert_array_equal(logits(api.load_model(config, f"{base}/{path.name}")), logits(reference))


def test_a_url_with_the_wrong_sha256_of_the_config_is_refused_and_removed(
        import_plugins, config_file, http_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEG_CACHE", str(tmp_path / "cache"))
    folder, base = http_folder
    config = api.load_config(str(config_file), [f"zoo.weights_url={base}/trained.pdparams",
                                                f"zoo.weights_sha256='{'0' * 64}'"])
    _foreign_file(config, folder)
    with pytest.raises(api.SemsegError, match="sha256 mismatch"):
        api.load_model(config, f"{base}/trained.pdparams")
    assert not list((tmp_path / "cache").rglob("trained.pdparams"))


def test_convert_weights_of_a_config_writes_a_checkpoint_usable_alone(import_plugins, config_file, tmp_path):
    config = api.load_config(str(config_file))
    source, reference = _foreign_file(config, tmp_path)
    destination = tmp_path / "ours.safetensors"
    result = invoke("convert-weights", str(config_file), str(source), str(destination))
    assert result.exit_code == 0, result.output
    stored, weights = api.resolve_config(None, [], destination)
    assert stored["model"]["class_names"] == CLASSES
    np.testing.assert_array_equal(logits(api.load_model(stored, weights)), logits(reference))
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(image)
    predicted = invoke("predict", str(image), "--weights", str(destination),
                                         "--output", str(tmp_path / "masks"))
    assert predicted.exit_code == 0, predicted.output
    mask = np.asarray(Image.open(tmp_path / "masks" / "street.png"))
    pixels = np.asarray(Image.open(image), dtype=np.float32).transpose(2, 0, 1)[None]
    with paddle.no_grad():
        expected = reference.eval()(paddle.to_tensor(pixels)).numpy()[0].argmax(0)
    np.testing.assert_array_equal(mask, expected)


def test_fine_tuning_from_a_model_with_another_class_count(import_plugins, config_file, tmp_path, capfd):
    config = api.load_config(str(config_file))
    source, _ = _foreign_file(config, tmp_path, classes=5)
    tuned = api.load_config(str(config_file), [f"model.pretrained={source}"])
    result = api.train(tuned, overwrite=True)
    assert result.steps == 2
    err = capfd.readouterr().err
    assert "other weights: loaded" in err and "re-initialised 4 of another class count" in err
    # the run's checkpoint stands alone: its stored config no longer asks for the pretrained file
    stored, _ = api.resolve_config(None, [], Path(tuned["runtime"]["output_dir"]) / "model_last.safetensors")
    assert stored["model"]["pretrained"] is None


def test_a_missing_weights_file_is_one_clear_error(import_plugins, config_file, tmp_path):
    config = api.load_config(str(config_file))
    with pytest.raises(api.SemsegError, match="weights file not found: .*absent.pdparams"):
        api.load_model(config, tmp_path / "absent.pdparams")


def test_predict_with_a_config_and_weights_from_a_url(import_plugins, config_file, http_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEG_CACHE", str(tmp_path / "cache"))
    folder, base = http_folder
    config = api.load_config(str(config_file))
    path, reference = _foreign_file(config, folder)
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (36, 52, 3), dtype=np.uint8)).save(image)
    result = invoke("predict", image, "--config", config_file, "--weights", f"{base}/{path.name}",
                    "--output", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    pixels = np.asarray(Image.open(image), dtype=np.float32).transpose(2, 0, 1)[None]
    with paddle.no_grad():
        expected = reference.eval()(paddle.to_tensor(pixels)).numpy()[0].argmax(0)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masks" / "street.png")), expected)


def test_a_safetensors_file_of_another_tool_is_imported_as_foreign(import_plugins, config_file, tmp_path):
    """A safetensors file without our metadata (or with another tool's, e.g. {"format": "pt"}) is read as
    a foreign model's tensors, not refused as a broken checkpoint of ours."""
    from safetensors.numpy import save_file

    config = api.load_config(str(config_file))
    reference = build_model(config, 3, pretrained=False)
    state = randomised(reference)
    reference.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    for metadata in (None, {"format": "pt"}, {"format": "pt", "note": "not json"}):
        path = tmp_path / "exported.safetensors"
        save_file(as_other(state), str(path), metadata=metadata)
        np.testing.assert_array_equal(logits(api.load_model(config, path)), logits(reference))
