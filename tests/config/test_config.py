"""Config loading: inheritance, overrides, validation errors naming file, key and closest key."""
from __future__ import annotations

import re

import pytest
import yaml

from semsegpaddle.core.config.loader import load_config, parse_override, packaged_configs
from semsegpaddle.core.common.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_packaged_config_loads_by_name_with_defaults_filled():
    config = load_config("synthetic_deeplabv3")
    assert "synthetic_deeplabv3" in packaged_configs()
    assert config["model"]["backbone"]["width"] == "18_small"
    # defaults of the component and of the engine are filled in
    assert config["model"]["backbone"]["frozen_stages"] == -1
    assert config["train"]["momentum"] == 0.9
    assert config["dataset"]["max_objects"] == 5


def test_base_inheritance_merges_in_order(tmp_path):
    write(tmp_path / "a.yaml", {"train": {"iters": 10, "lr": 0.1}, "model": {"backbone": {"name": "resnet", "depth": 50}}})
    write(tmp_path / "b.yaml", {"train": {"iters": 20}})
    child = write(tmp_path / "c.yaml", {"_base_": ["a.yaml", "b.yaml"], "train": {"batch_size": 3}})
    config = load_config(child)
    assert config["train"]["iters"] == 20
    assert config["train"]["lr"] == 0.1
    assert config["train"]["batch_size"] == 3
    assert config["model"]["backbone"]["depth"] == 50
    assert config.sources["train.iters"].endswith("b.yaml")
    assert config.sources["train.lr"].endswith("a.yaml")


def test_base_can_name_a_packaged_config(tmp_path):
    child = write(tmp_path / "c.yaml", {"_base_": "synthetic_deeplabv3", "train": {"iters": 7}})
    config = load_config(child)
    assert config["train"]["iters"] == 7
    assert config["model"]["backbone"]["width"] == "18_small"


def test_changing_component_name_replaces_its_options(tmp_path):
    child = write(tmp_path / "c.yaml", {"_base_": "synthetic_deeplabv3", "model": {"backbone": {"name": "resnet"}}})
    config = load_config(child)
    assert config["model"]["backbone"]["name"] == "resnet"
    assert "width" not in config["model"]["backbone"]  # hrnet's option did not leak into resnet
    assert config["model"]["backbone"]["output_stride"] == 32  # resnet's default, not the base's 8


def test_overrides_parse_yaml_values_and_apply_last():
    config = load_config("synthetic_deeplabv3", ["train.iters=5", "train.crop_size=[64,48]",
                                                  "model.decoder.atrous_rates=null", "runtime.progress=false"])
    assert config["train"]["iters"] == 5
    assert config["train"]["crop_size"] == [64, 48]
    assert config["runtime"]["progress"] is False
    assert config.sources["train.iters"] == "command line"


def test_unknown_key_names_file_key_and_closest(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"_base_": "synthetic_deeplabv3", "train": {"itres": 5}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert str(bad) in message and "train.itres" in message and "did you mean 'iters'" in message


def test_unknown_component_option_suggests_closest(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic_deeplabv3", ["model.backbone.widht=32"])
    message = str(info.value)
    assert message.startswith("command line:")
    assert "model.backbone.widht" in message and "'width'" in message


def test_wrong_type_is_an_error(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"_base_": "synthetic_deeplabv3", "train": {"iters": "many"}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "train.iters" in str(info.value) and "expects int" in str(info.value) and str(bad) in str(info.value)
    with pytest.raises(ConfigError, match="model.backbone.output_stride' expects int"):
        load_config("synthetic_deeplabv3", ["model.backbone.output_stride=1.5"])
    with pytest.raises(ConfigError, match="runtime.progress' expects bool"):
        load_config("synthetic_deeplabv3", ["runtime.progress=3"])


def test_unknown_component_name_lists_available():
    with pytest.raises(ConfigError) as info:
        load_config("synthetic_deeplabv3", ["model.backbone.name=resnte"])
    assert "did you mean 'resnet'" in str(info.value) and "available:" in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a packaged config"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listy = write(tmp_path / "list.yaml", [1, 2])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_base_cycle_is_detected(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "a.yaml")


def test_yaml_is_read_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


@pytest.mark.parametrize("text", ["noequals", "=5", "a..b=1"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override(text)


def test_choice_keys_list_the_choices_and_the_closest():
    with pytest.raises(ConfigError) as info:
        load_config("synthetic_deeplabv3", ["train.optimizer=adam"])
    assert "expects one of 'sgd', 'adamw'" in str(info.value) and "did you mean 'adamw'" in str(info.value)


@pytest.mark.parametrize("override, message", [
    ("train.crop_size=[64]", "'train.crop_size' expects [height, width], both > 0"),
    ("train.scale_range=[2.0,1.0]", "'train.scale_range' expects [min, max] with 0 < min ≤ max"),
    ("train.iters=0", "'train.iters' expects a number > 0"),
    ("model.std=[1,0,1]", "'model.std' expects three positive numbers"),
    ("runtime.threads=-1", "'runtime.threads' expects a number ≥ 0"),
])
def test_engine_values_are_range_checked(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("synthetic_deeplabv3", [override])


def test_bad_component_option_value_names_its_key_and_source(tmp_path):
    from semsegpaddle.api import create_dataset, create_model

    with pytest.raises(ConfigError) as info:
        create_dataset(load_config("synthetic_deeplabv3", ["dataset.image_size=10"]), "train")
    assert str(info.value).startswith("command line: dataset.image_size (dataset 'synthetic'): image_size=10")
    bad = write(tmp_path / "bad.yaml", {"_base_": "synthetic_deeplabv3", "model": {"backbone": {"output_stride": 4}}})
    with pytest.raises(ConfigError) as info:
        create_model(load_config(bad), num_classes=3)
    assert str(info.value).startswith(f"{bad}: model.backbone.output_stride (backbone 'hrnet')")


@pytest.mark.parametrize("override, message", [
    ("model.backbone.depth=19", "model.backbone.depth (backbone 'resnet'): depth=19 is not one of 18, 34, 50, 101, 152"),
    ("model.backbone.output_stride=12", "model.backbone.output_stride (backbone 'resnet'): output_stride=12 is not one of 8, 16, 32"),
])
def test_config_checks_component_option_values_as_train_does(override, message):
    """`semseg config` validates what `semseg train` refuses, without building (or importing) the model."""
    from tests.helpers.cli import semseg

    for command in ("config", "train"):
        result = semseg(None, command, "model.backbone.name=resnet", override, timeout=120)
        assert result.returncode == 1 and message in result.stderr, (command, result.stderr[-500:])
