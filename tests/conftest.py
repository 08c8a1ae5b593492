"""Shared fixtures: in-memory plugins with tiny components, so core tests stay fast.

Fixtures live here; importable helpers (the tiny components, CLI runners, parity checks) live in
``tests/helpers``.
"""
from __future__ import annotations

import warnings

import pytest

from semsegpaddle.core.plugin import manager as plugin_module
from tests.helpers.tiny import TinyPlugin


@pytest.fixture
def tiny_plugins():
    """Plugins = the installed ones + TinyPlugin, restored afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test")])
    plugin_module.reset_plugins(state)
    try:
        yield state
    finally:
        plugin_module.reset_plugins(None)




@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A folder with real pip-installed plugins: the example plugin (tiny backbone ``tiny_cnn``,
    decoder ``simple_fcn``, dataset ``rings``) and ``flaky``, a dataset with one broken sample."""
    from tests.helpers.packages import EXAMPLE, FLAKY_DATASET, pip_install, write_package

    root = tmp_path_factory.mktemp("packages")
    flaky = write_package(root, "semseg-flaky-data", {"plugin": FLAKY_DATASET}, {"flaky": "plugin"})
    return pip_install(root / "site", EXAMPLE, flaky)


@pytest.fixture
def import_plugins():
    """Plugins = the installed ones + ImportPlugin (components that import an "other" framework's weights)."""
    from tests.helpers.foreign import ImportPlugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(ImportPlugin(), "import-test")])
    plugin_module.reset_plugins(state)
    try:
        yield state
    finally:
        plugin_module.reset_plugins(None)
