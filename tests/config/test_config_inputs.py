"""Config inputs: YAML numbers, finite floats, duplicate keys, encodings, synonyms, required and path
options, packaged configs from plugins, and the prefix on a factory's errors."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

from semsegpaddle import hookimpl
from semsegpaddle.core.plugin import manager as plugin_module
from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.config.loader import load_config, load_yaml, resolve_config_path
from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.config.schema import SCHEMA
from tests.helpers.cli import invoke

BASE = "synthetic_deeplabv3"


def needs_root(split: str, *, root: Path, labels: Path | None = None, cache: Path = Path("cache"), size: int = 8):
    """A dataset factory that returns what it was given (so tests can look)."""
    return {"split": split, "root": root, "labels": labels, "cache": cache, "size": size}


def touchy(split: str, *, mode: str = "ok", path: Path | None = None, size: int = 8):
    """A dataset factory that fails the way real ones do, chosen by ``mode``."""
    if mode == "missing":
        return Path(path).read_text()
    if mode == "key":
        return {"train": 1}[split + "_extra"]
    if mode == "type":
        raise TypeError("mode='type' cannot be combined with size")
    if mode == "os":
        raise OSError(28, "No space left on device")
    if mode == "value":
        raise ValueError(f"size={size} is too small")
    return split


class InputsPlugin:
    """An in-memory plugin: a dataset with a required path option, a failing one, a packaged config."""

    config_path: Path | None = None

    @hookimpl
    def semseg_register_datasets(self, register):
        register("needs_root", needs_root, options={"root": "dataset folder", "labels": "label folder or null",
                                                    "cache": "cache folder", "size": "image side"})
        register("touchy", touchy, options={"mode": "how to fail", "path": "a file", "size": "image side"})

    @hookimpl
    def semseg_register_configs(self, register):
        register("inputs_demo", self.config_path)
        register(BASE, self.config_path)  # taken by semsegpaddle's own: refused


@pytest.fixture
def inputs_plugin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("packaged")
    (folder / "inputs_demo.yaml").write_text(f"_base_: {BASE}\ndataset:\n  name: needs_root\n  root: data\n")
    plugin = InputsPlugin()
    plugin.config_path = folder / "inputs_demo.yaml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = plugin_module.new_state(plugins=[(plugin, "inputs-test")])
    plugin_module.reset_plugins(state)
    try:
        yield folder, [str(w.message) for w in caught]
    finally:
        plugin_module.reset_plugins(None)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -------------------------------------------------------------------------------------------------
# numbers
# -------------------------------------------------------------------------------------------------


def test_exponent_numbers_are_floats_in_files_and_overrides(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", f"_base_: {BASE}\ntrain:\n  lr: 1e-3\n  weight_decay: 5E-4\n"),
                         ["train.power=1.0e0"])
    assert config["train"]["lr"] == 0.001 and isinstance(config["train"]["lr"], float)
    assert config["train"]["weight_decay"] == 0.0005 and config["train"]["power"] == 1.0
    assert load_config(BASE, ["train.lr=1e-3"])["train"]["lr"] == 0.001
    parsed = load_yaml("a: 1_000\nb: 12\nc: 1e\nd: .5e1\ne: v1e3")
    assert parsed == {"a": 1000, "b": 12, "c": "1e", "d": 5.0, "e": "v1e3"}
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # PyYAML's own SafeLoader is left alone


def test_yaml_stays_safe():
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['echo hi']")


@pytest.mark.parametrize("override, key", [
    ("train.lr=.inf", "train.lr"),
    ("train.momentum=.nan", "train.momentum"),
    ("train.scale_range=[0.5,.inf]", "train.scale_range"),
    ("dataset.noise_std=-.inf", "dataset.noise_std"),  # a component option annotated float
    ("model.mean=[1,.NaN,3]", "model.mean"),
])
def test_infinite_and_nan_floats_are_rejected(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(BASE, [override])
    message = str(info.value)
    assert message.startswith(f"command line: '{key}' expects finite numbers, got ")
    assert "(.inf and .nan are not allowed)" in message and "\n" not in message


def test_infinity_in_a_file_names_the_file(tmp_path):
    bad = write(tmp_path / "bad.yaml", f"_base_: {BASE}\ntrain:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: 'train.lr' expects finite numbers, got inf"):
        load_config(bad)


def test_negative_seed_is_one_line():
    with pytest.raises(ConfigError) as info:
        load_config(BASE, ["runtime.seed=-1"])
    assert str(info.value) == "command line: 'runtime.seed' expects a number ≥ 0, got -1"
    assert load_config(BASE, ["runtime.seed=0"])["runtime"]["seed"] == 0


# -------------------------------------------------------------------------------------------------
# files
# -------------------------------------------------------------------------------------------------


def test_duplicate_keys_name_file_line_and_key(tmp_path):
    bad = write(tmp_path / "dup.yaml", f"_base_: {BASE}\ntrain:\n  lr: 0.1\n  iters: 5\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad} line 5: key 'lr' is given twice in one mapping (first on line 3)"
    top = write(tmp_path / "top.yaml", "train:\n  lr: 0.1\neval:\n  batch_size: 2\ntrain:\n  iters: 3\n")
    with pytest.raises(ConfigError, match=rf"^{top} line 5: key 'train' is given twice .*first on line 1"):
        load_config(top)
    with pytest.raises(ConfigError, match=r"^command line: override 'train=\{lr: 1, lr: 2\}': key 'lr' is given twice"):
        load_config(BASE, ["train={lr: 1, lr: 2}"])


def test_merge_keys_are_not_duplicates():
    assert load_yaml("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  p: 3\n")["b"] == {"p": 3, "q": 2}


def test_non_utf8_file_is_named(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(f"_base_: {BASE}\n# caf\u00e9\ntrain:\n  iters: 5\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}: not UTF-8 text (byte 0xe9 at offset ")
    assert "save the file as UTF-8" in str(info.value)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(f"\ufeff_base_: {BASE}\ntrain:\n  iters: 5\n".encode("utf-8"))
    assert load_config(bom)["train"]["iters"] == 5


@pytest.mark.parametrize("key, meant", [
    ("train.learning_rate", "lr"),
    ("train.max_iters", "iters"),
    ("train.total_iters", "iters"),
    ("train.batch_size_per_gpu", "batch_size"),
    ("train.workers_per_gpu", "num_workers"),
    ("runtime.work_dir", "output_dir"),
])
def test_names_from_other_frameworks_suggest_ours(key, meant):
    with pytest.raises(ConfigError, match=rf"unknown key '{key}' \(did you mean '{meant}'\?\)"):
        load_config(BASE, [f"{key}=1"])


def test_synonym_in_a_file(tmp_path):
    bad = write(tmp_path / "mm.yaml", f"_base_: {BASE}\ntrain:\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown key 'train.learning_rate' \(did you mean 'lr'\?\)"):
        load_config(bad)


def test_convert_weights_refuses_an_unknown_option(tmp_path):
    source = tmp_path / "w.safetensors"
    source.write_bytes(b"not read: the options are checked first")
    result = invoke("convert-weights", "resnet", str(source), str(tmp_path / "out.safetensors"),
                                      "-o", "depht=50")
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: unknown option 'depht' for backbone 'resnet' (did you mean 'depth'?); "
                           "valid options: ")
    assert "depth" in line and "output_stride" in line and "stem" in line
    assert not (tmp_path / "out.safetensors").exists()


# -------------------------------------------------------------------------------------------------
# required and path options, packaged configs (an in-memory plugin)
# -------------------------------------------------------------------------------------------------


def test_required_option_missing_names_key_component_and_file(tmp_path, inputs_plugin):
    chooser = write(tmp_path / "mine.yaml", f"_base_: {BASE}\ndataset:\n  name: needs_root\n")
    with pytest.raises(ConfigError) as info:
        load_config(chooser)
    assert str(info.value).startswith(f"{chooser}: dataset.root is required by dataset 'needs_root' (dataset folder)")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^command line: dataset.root is required by dataset 'needs_root'"):
        load_config(BASE, ["dataset.name=needs_root"])
    # other configs, and the same one with the key set, still load and print
    assert load_config(BASE)["dataset"]["name"] == "synthetic"
    result = invoke("config", str(chooser), "dataset.root=/data")
    assert result.exit_code == 0, result.output
    assert "  root: /data\n" in result.output and "  labels: null\n" in result.output


def test_required_option_is_listed_as_required(inputs_plugin):
    result = invoke("list", "dataset", "--pattern", "needs_*")
    assert result.exit_code == 0, result.output
    assert "root: path (required)  — dataset folder" in result.output
    assert "labels: path | None = None" in result.output


def test_paths_resolve_against_the_file_that_set_them(tmp_path, inputs_plugin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "base" / "b.yaml", f"_base_: {BASE}\ndataset:\n  name: needs_root\n  root: ../data\n"
                                        "model:\n  backbone:\n    pretrained: weights/w.safetensors\n")
    child = write(tmp_path / "exp" / "deep" / "c.yaml", "_base_: ../../base/b.yaml\ndataset:\n  labels: labels\n")
    config = load_config(child, ["dataset.cache=~/cache"])
    section = config["dataset"]
    assert section["root"] == str(tmp_path / "data")  # relative to base/b.yaml
    assert section["labels"] == str(tmp_path / "exp" / "deep" / "labels")  # relative to c.yaml
    assert section["cache"] == os.path.expanduser("~/cache")  # command line, ~ expanded
    assert config["model"]["backbone"]["pretrained"] == str(tmp_path / "base" / "weights" / "w.safetensors")
    built = build_component(config, "dataset", "dataset", "train", extra=SCHEMA["dataset"].extra)
    assert built["root"] == str(tmp_path / "data") and isinstance(built["root"], str)
    # from the command line: the current folder; the default Path("cache") too, as a str
    config = load_config(BASE, ["dataset.name=needs_root", "dataset.root=d", "model.backbone.pretrained=w.pt"])
    assert config["dataset"]["root"] == str(tmp_path / "d")
    assert config["dataset"]["cache"] == str(tmp_path / "cache") and config["dataset"]["labels"] is None
    assert config["model"]["backbone"]["pretrained"] == str(tmp_path / "w.pt")
    assert load_config(BASE, ["dataset.name=needs_root", "dataset.root=/abs/x"])["dataset"]["root"] == "/abs/x"
    assert "cache: " + str(tmp_path / "cache") in config.to_yaml()  # printable: str, not a Path object


def test_path_option_type_is_checked(inputs_plugin):
    with pytest.raises(ConfigError, match=r"'dataset.root' expects path, got int 5"):
        load_config(BASE, ["dataset.name=needs_root", "dataset.root=5"])


def test_plugin_configs_resolve_by_name_and_in_base(tmp_path, inputs_plugin, monkeypatch):
    folder, caught = inputs_plugin
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("inputs_demo") == folder / "inputs_demo.yaml"
    config = load_config("inputs_demo")
    # a packaged config's relative paths are templates for the user's working folder
    assert config["dataset"]["root"] == str(tmp_path / "data")
    child = write(tmp_path / "exp" / "child.yaml", "_base_: inputs_demo\ntrain:\n  iters: 4\n")
    assert load_config(child)["dataset"]["root"] == str(tmp_path / "data")
    # the name semsegpaddle's own config has stays with it; the newcomer is told
    assert resolve_config_path(BASE).parent.name == "configs" and resolve_config_path(BASE).parent != folder
    assert any(m.startswith(f"plugin 'inputs-test': config '{BASE}' is registered twice: plugin 'configs' (semsegpaddle)")
               for m in caught)
    listed = invoke("config", "--list")
    rows = {line.split()[0]: line for line in listed.output.splitlines()}
    assert "[plugin inputs-test]" in rows["inputs_demo"] and "[semsegpaddle " in rows[BASE]


# -------------------------------------------------------------------------------------------------
# a factory's own errors
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, key, text", [
    (["dataset.mode=missing", "dataset.path=nowhere.txt"], "dataset.path",
     "FileNotFoundError: [Errno 2] No such file or directory: '{cwd}/nowhere.txt'"),
    (["dataset.mode=key"], "dataset", "KeyError: 'train_extra'"),
    (["dataset.mode=type"], "dataset.mode", "TypeError: mode='type' cannot be combined with size"),
    (["dataset.mode=os"], "dataset", "OSError: [Errno 28] No space left on device"),
    (["dataset.mode=value", "dataset.size=2"], "dataset.size", "size=2 is too small"),
])
def test_factory_errors_get_the_file_and_key_prefix(tmp_path, inputs_plugin, monkeypatch, overrides, key, text):
    monkeypatch.chdir(tmp_path)
    chooser = write(tmp_path / "t.yaml", f"_base_: {BASE}\ndataset:\n  name: touchy\n")
    config = load_config(chooser, overrides)
    with pytest.raises(ConfigError) as info:
        build_component(config, "dataset", "dataset", "train", extra=SCHEMA["dataset"].extra)
    source = chooser if key == "dataset" else "command line"
    assert str(info.value) == f"{source}: {key} (dataset 'touchy'): {text.format(cwd=tmp_path)}"
    assert info.value.__cause__ is not None  # the original, for --debug


def test_debug_shows_the_factory_traceback(tmp_path, inputs_plugin):
    args = ["eval", BASE, "dataset.name=touchy", "dataset.mode=key", f"runtime.output_dir={tmp_path}",
            "--weights", str(tmp_path / "none.safetensors")]
    plain = invoke(*args)
    assert plain.exit_code == 1
    assert "Error: command line: dataset (dataset 'touchy'): KeyError: 'val_extra'" in plain.output
    debug = invoke("--debug", *args)
    assert isinstance(debug.exception, ConfigError) and isinstance(debug.exception.__cause__, KeyError)
