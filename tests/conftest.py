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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch references single-threaded for a module (``pytestmark = pytest.mark.usefixtures(...)``):
    on a busy 2-core machine its thread pool spins for seconds per forward pass. Restored afterwards."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def timm_resnet18(tmp_path_factory):
    """A random-init timm resnet18 with non-trivial BN statistics, saved as timm would (.safetensors):
    (the torch model, the file)."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    import numpy as np
    from safetensors.numpy import save_file

    from tests.helpers.parity import torch_state_numpy

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("timm") / "resnet18.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in torch_state_numpy(model).items()}, str(path))
    return model, path
