"""Plugin discovery through real entry points, the registry's errors, and broken plugins."""
from __future__ import annotations

import importlib.metadata

import pytest

import semsegpaddle
from semsegpaddle import hookimpl
from semsegpaddle.core.plugin import hookspecs
from semsegpaddle.core.common.errors import DuplicateComponentError, UnknownComponentError
from semsegpaddle.core.plugin.manager import PluginWarning, new_state
from semsegpaddle.core.plugin.registry import Registry

from tests.helpers.tiny import TinyBackbone


def test_builtins_come_from_the_packages_own_entry_points():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="semsegpaddle")}
    assert eps["resnet"] == "semsegpaddle.plugins.backbones.resnet"
    state = new_state()
    backbones = state.registries["backbone"]
    resnet = backbones.get("resnet")
    assert resnet.plugin == "resnet"
    assert (resnet.distribution, resnet.version) == ("semsegpaddle", semsegpaddle.__version__)
    assert "deeplabv3" in state.registries["decoder"] and "synthetic" in state.registries["dataset"]
    assert {o.name for o in resnet.options} >= {"depth", "output_stride", "stem"}
    assert resnet.option("depth").default == 50 and resnet.option("depth").description


def test_core_imports_no_plugin_module_by_name():
    from pathlib import Path

    core = Path(semsegpaddle.__file__).parent / "core"
    for source in core.rglob("*.py"):
        assert "semsegpaddle.plugins" not in source.read_text(), source


def test_unknown_name_lists_available_and_closest():
    registry = new_state().registries["backbone"]
    with pytest.raises(UnknownComponentError) as info:
        registry.get("resnt")
    message = str(info.value)
    assert "did you mean 'resnet'" in message and "hrnet" in message and "efficientnet" in message


def test_duplicate_name_stays_with_the_first_plugin_and_names_both():
    class Again:
        @hookimpl
        def semseg_register_backbones(self, register):
            register("resnet", TinyBackbone, options={"width": "w"})
            register("tiny_again", TinyBackbone, options={"width": "w"})

    with pytest.warns(PluginWarning) as record:
        state = new_state(plugins=[(Again(), "again")])
    message = str(record[0].message)
    assert message.startswith("plugin 'again': backbone 'resnet' is registered twice: plugin 'resnet' "
                              "(semsegpaddle) registered it first and keeps it; plugin 'again' is refused")
    backbones = state.registries["backbone"]
    assert backbones.get("resnet").plugin == "resnet"  # the built-in keeps its name
    assert backbones.get("tiny_again").plugin == "again"  # the newcomer's other components register
    [failure] = state.failures
    assert (failure.plugin, failure.stage, failure.component) == ("again", "duplicate", "backbone 'resnet'")
    registry = Registry("backbone")
    registry.add("x", TinyBackbone, options={"width": "w"}, plugin="p1")
    with pytest.raises(DuplicateComponentError, match="'p1'.*'p2'"):
        registry.add("x", TinyBackbone, options={"width": "w"}, plugin="p2")
    assert registry.get("x").plugin == "p1"


def test_plugin_raising_in_hook_warns_and_others_load():
    class Broken:
        @hookimpl
        def semseg_register_backbones(self, register):
            raise RuntimeError("boom")

    with pytest.warns(PluginWarning, match="plugin 'broken' failed.*RuntimeError: boom"):
        state = new_state(plugins=[(Broken(), "broken")])
    assert "resnet" in state.registries["backbone"]
    assert [(f.plugin, f.error) for f in state.failures] == [("broken", "RuntimeError: boom")]


def test_plugin_failing_on_import_warns(monkeypatch):
    class FakeEntryPoint:
        name, group, value = "ghost", "semsegpaddle", "ghost_module"

        def load(self):
            raise ImportError("No module named 'ghost_module'")

    class FakeDist:
        entry_points = [FakeEntryPoint()]
        metadata = {"name": "ghost-dist"}
        version = "1.0"

    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [FakeDist(), *real()])
    with pytest.warns(PluginWarning, match=r"plugin 'ghost' \(ghost-dist 1.0\) failed to import.*No module named"):
        state = new_state()
    assert "resnet" in state.registries["backbone"]


def test_block_and_allow_lists(monkeypatch):
    monkeypatch.setenv("SEMSEG_BLOCK_PLUGINS", "hrnet")
    assert "hrnet" not in new_state().registries["backbone"]
    monkeypatch.delenv("SEMSEG_BLOCK_PLUGINS")
    monkeypatch.setenv("SEMSEG_LOAD_PLUGINS", "resnet,synthetic")
    state = new_state()
    assert state.registries["backbone"].names() == ["resnet", "resnext"]
    assert len(state.registries["decoder"]) == 0


def test_option_declarations_must_match_the_factory():
    registry = Registry("backbone")
    with pytest.raises(TypeError, match="undescribed"):
        registry.add("a", TinyBackbone, options={})
    with pytest.raises(TypeError, match="not arguments"):
        registry.add("b", TinyBackbone, options={"width": "w", "height": "h"})


def test_names_filter_and_natural_sort():
    registry = Registry("backbone")
    for name in ["net10", "net2", "other"]:
        registry.add(name, TinyBackbone, options={"width": "w"})
    assert registry.names() == ["net2", "net10", "other"]
    assert registry.names("net*") == ["net2", "net10"]


def test_misspelled_hook_skips_that_plugin_only():
    class Typo:
        @hookimpl
        def semseg_register_backbone(self, register):  # missing the final "s"
            pass

        @hookimpl
        def semseg_register_datasets(self, register):
            register("typo_data", TinyBackbone, options={"width": "w"})

    with pytest.warns(PluginWarning, match="plugin 'typo' was skipped: unknown hook 'semseg_register_backbone' "
                                           r"\(did you mean 'semseg_register_backbones'\?\)"):
        state = new_state(plugins=[(Typo(), "typo")])
    assert "typo_data" not in state.registries["dataset"]  # the whole plugin is skipped
    assert not state.manager.has_plugin("typo") and "resnet" in state.registries["backbone"]


def test_every_hook_is_documented_in_the_plugin_guide():
    from pathlib import Path

    guide = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("semseg_")]
    assert hooks
    for hook in hooks:
        assert getattr(hookspecs, hook).__doc__, hook
        assert f"`{hook}" in guide, f"{hook} missing from docs/plugins.md"


#: what plugin authors import from the core (docs/plugins.md); each a module's one and only name
PUBLIC_CORE_NAMES = {
    "semsegpaddle.core.model.interfaces": ["Backbone", "Decoder", "FeatureInfo", "FeatureLevel"],
    "semsegpaddle.core.data.base": ["SegDataset", "default_palette"],
    "semsegpaddle.core.model.layers": ["ConvBNReLU", "resize_to", "spatial_size"],
    "semsegpaddle.core.model.weights": ["torch_to_paddle_names", "drop_prefixes"],
    "semsegpaddle.core.common.errors": ["SemsegError"],
    "semsegpaddle.core.plugin.manager": ["new_state", "reset_plugins"],
}


def test_public_core_names_for_plugin_authors_import_under_one_name_each():
    """The documented names import from their one home; the flat paths of the pre-stage layout do not."""
    import importlib

    for module, names in PUBLIC_CORE_NAMES.items():
        loaded = importlib.import_module(module)
        missing = [name for name in names if not hasattr(loaded, name)]
        assert not missing, f"{module} lacks {missing}"
    for flat in ("interfaces", "layers", "loader", "plugins", "errors", "weights"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"semsegpaddle.core.{flat}")
