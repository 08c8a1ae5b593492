"""The commands that need no model never import paddle or cv2 (and so answer at once).

Each command runs in a fresh interpreter as ``python -m semsegpaddle.cli`` would, under a probe: an
import hook that notes the stack of the first import of paddle or cv2 (it blocks nothing), and an
exit handler that writes ``sys.modules``. The tests assert on those facts, not on a timing. Only
the built-in plugins are loaded (``SEMSEG_LOAD_PLUGINS``), so a third-party plugin that happens to
be installed cannot change the outcome.
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from semsegpaddle import __version__
from semsegpaddle.cli import cli as built_in_cli
from semsegpaddle.core.plugin.manager import BUILTIN_DISTRIBUTION, new_state
from tests.helpers.probe import BUILTIN, CLI, assert_light, assert_plugins_loaded, run_probed


@pytest.fixture
def semseg(tmp_path):
    """``semseg ARGS`` in a fresh interpreter under the probe."""
    return lambda *args: run_probed(CLI, *args, tmp=tmp_path)


# -------------------------------------------------------------------------------------------------
# the detector itself
# -------------------------------------------------------------------------------------------------


def test_the_probe_sees_paddle_and_where_it_was_imported(tmp_path):
    run = run_probed("import semsegpaddle.plugins.backbones.resnet_impl", tmp=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "paddle" in run.heavy()  # (paddle itself imports cv2)
    assert "resnet_impl.py" in run.importer("paddle")
    with pytest.raises(AssertionError, match=r"(?s)paddle was imported, at:.*resnet_impl\.py"):
        assert_light(run)


def test_builtin_plugins_are_known():
    assert {"resnet", "hrnet", "efficientnet", "synthetic", "deeplabv3", "pspnet"} <= set(BUILTIN)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_each_builtin_plugin_module_is_light(name, tmp_path):
    run = run_probed(f"import {BUILTIN[name]}", tmp=tmp_path)
    assert run.returncode == 0, run.stderr
    assert BUILTIN[name] in run.modules
    assert_light(run)


# -------------------------------------------------------------------------------------------------
# the commands
# -------------------------------------------------------------------------------------------------


def test_version(semseg):
    run = semseg("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"semseg, version {__version__}"
    assert_light(run)


BUILT_IN_COMMANDS = sorted(built_in_cli.commands)


@pytest.mark.parametrize("command", [[], *([name] for name in BUILT_IN_COMMANDS)])
def test_help_at_every_level(command, semseg):
    run = semseg(*command, "--help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"Usage: semseg {' '.join(command)}".rstrip())
    assert "--help" in run.stdout
    if not command:
        assert {"train", "eval", "predict", "export", "list", "config", "check-data"} <= set(BUILT_IN_COMMANDS)
        for sub in BUILT_IN_COMMANDS:
            assert re.search(rf"^  {sub}\b", run.stdout, re.M), sub
    assert_light(run)


def _expected_components() -> dict[tuple[str, str], list[dict]]:
    """(kind, name) -> options, from the registries filled in this (paddle-importing) process."""
    state = new_state()
    return {(c.kind, c.name): [{"name": o.name, "type": o.type_name, "required": o.required,
                                "default": None if o.required else o.default, "description": o.description}
                               for o in c.options]
            for registry in state.registries.values() for c in registry}


def test_list_json_shows_every_component_with_its_options(semseg):
    run = semseg("list", "--json")
    assert run.returncode == 0, run.stderr
    assert_light(run)
    assert_plugins_loaded(run)
    rows = {(r["kind"], r["name"]): r for r in json.loads(run.stdout)}
    for key in [("backbone", "resnet"), ("backbone", "resnext"), ("backbone", "hrnet"), ("backbone", "efficientnet"),
                ("decoder", "deeplabv3"), ("decoder", "deeplabv3p"), ("decoder", "pspnet"), ("decoder", "glore"),
                ("decoder", "ginet"), ("dataset", "synthetic")]:
        assert key in rows, key
    expected = _expected_components()
    assert set(rows) == set(expected)
    for key, options in expected.items():
        got = [{k: o[k] for k in ("name", "type", "required", "default", "description")} for o in rows[key]["options"]]
        assert got == json.loads(json.dumps(options, default=str)), key
        assert rows[key]["description"] and rows[key]["distribution"] == BUILTIN_DISTRIBUTION
    resnet = {o["name"]: o for o in rows[("backbone", "resnet")]["options"]}
    assert resnet["depth"]["default"] == 50 and resnet["depth"]["type"] == "int"
    assert resnet["depth"]["choices"] == [18, 34, 50, 101, 152] and resnet["stem_channels"]["choices"] is None
    synthetic = {o["name"]: o for o in rows[("dataset", "synthetic")]["options"]}
    assert synthetic["image_size"]["default"] == 96 and "split" not in synthetic


def test_list_table_and_filters(semseg):
    run = semseg("list")
    assert run.returncode == 0, run.stderr
    assert_light(run)
    for header in ("backbones", "decoders", "datasets"):
        assert re.search(rf"^{header}$", run.stdout, re.M), header
    assert re.search(r"^  hrnet  \[plugin hrnet, semsegpaddle ", run.stdout, re.M)
    assert re.search(r"^      image_size: int = 96  — ", run.stdout, re.M)
    backbones = semseg("list", "backbone", "--pattern", "res*", "--json")
    assert backbones.returncode == 0, backbones.stderr
    assert_light(backbones)
    assert [r["name"] for r in json.loads(backbones.stdout)] == ["resnet", "resnext"]


def test_plugins(semseg):
    run = semseg("plugins", "--json")
    assert run.returncode == 0, run.stderr
    assert_light(run)
    report = json.loads(run.stdout)
    assert report["failed"] == []
    rows = {r["name"]: r for r in report["plugins"]}
    assert set(BUILTIN) <= set(rows)
    assert "semseg_register_backbones" in rows["resnet"]["hooks"]
    assert "semseg_register_datasets" in rows["synthetic"]["hooks"]
    text = semseg("plugins")
    assert text.returncode == 0 and "FAILED" not in text.stdout
    assert_light(text)


def test_config_with_overrides(semseg):
    run = semseg("config", "synthetic_deeplabv3", "train.iters=10", "model.backbone.name=resnet")
    assert run.returncode == 0, run.stderr
    assert_light(run)
    assert_plugins_loaded(run)
    config = yaml.safe_load(run.stdout)
    assert config["train"]["iters"] == 10
    assert config["model"]["backbone"]["name"] == "resnet"
    assert config["model"]["backbone"]["depth"] == 50  # resnet's defaults, read from its light factory
    assert config["dataset"]["name"] == "synthetic"


def test_config_list(semseg):
    run = semseg("config", "--list")
    assert run.returncode == 0, run.stderr
    assert_light(run)
    assert re.search(r"^synthetic_deeplabv3  \[.*\]  \S+synthetic_deeplabv3\.yaml$", run.stdout, re.M)


@pytest.mark.parametrize("override, message", [
    ("model.backbone.widht=18", "widht"),
    ("model.backbone.name=resnt", "resnt"),
])
def test_config_errors_are_light_too(override, message, semseg):
    run = semseg("config", "synthetic_deeplabv3", override)
    assert run.returncode == 1
    assert message in run.stderr and "Traceback" not in run.stderr
    assert_light(run)
