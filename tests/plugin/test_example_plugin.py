"""A real third-party package, installed with pip, seen by `semseg list` and trained with."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import plugin_env, semseg

EXAMPLE = Path(__file__).parents[2] / "examples" / "semseg-example-plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """pip-install the example plugin into a private folder (the test environment is not touched)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True)
    return target


def test_installed_plugin_components_are_listed(plugin_path):
    result = semseg(plugin_path, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(row["kind"], row["name"]): row for row in json.loads(result.stdout)}
    for key in [("backbone", "tiny_cnn"), ("decoder", "simple_fcn"), ("dataset", "rings")]:
        assert key in rows, key
        assert rows[key]["plugin"] == "example"
        assert rows[key]["distribution"] == "semseg-example-plugin" and rows[key]["version"] == "0.1.0"
    assert ("backbone", "resnet") in rows  # the built-ins are still there
    hello = semseg(plugin_path, "hello")
    assert hello.returncode == 0 and "hello from semseg-example-plugin" in hello.stdout


def test_trains_with_the_plugins_components(plugin_path, tmp_path):
    result = semseg(plugin_path, "train", "model.backbone.name=tiny_cnn", "model.decoder.name=simple_fcn",
                    "dataset.name=rings", "train.crop_size=[48,48]", "train.iters=40", "train.batch_size=4",
                    "train.lr=0.05", "train.warmup_iters=0", "train.scale_range=[1.0,1.0]", "eval.batch_size=8",
                    "runtime.progress=false", f"runtime.output_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"background", "disc", "ring"}
    # three well-separated intensity classes: far above the ~0.25 mIoU of predicting background
    assert metrics["mIoU"] > 0.6


def test_the_registration_module_imports_no_paddle(plugin_path):
    """The example follows its own guide: loading the plugin (for `semseg list`) imports no paddle;
    building one of its components does."""
    probe = ("import sys, semseg_example_plugin.plugin as p; light = 'paddle' not in sys.modules; "
             "p.tiny_cnn(width=4); print(light, 'paddle' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], env=plugin_env(plugin_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True"]
