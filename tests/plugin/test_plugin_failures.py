"""Broken third-party plugins, installed for real with pip, must not break the `semseg` command line.

One module-scoped fixture builds and pip-installs several small packages into a private folder;
every test runs the real CLI in a subprocess with that folder on PYTHONPATH, so all the broken
plugins are present at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# distribution -> (entry-point name, module name, {file: source}); a package folder when the module
# name has no ".py" file of its own
TYPO = '''\
from semsegpaddle import hookimpl


def tiny(split, *, size: int = 8):
    """Never built."""


@hookimpl
def semseg_register_backbone(register):  # misspelled: the spec is semseg_register_backbones
    register("typo_net", tiny, options={"size": "s"})


@hookimpl
def semseg_register_datasets(register):
    register("typo_data", tiny, options={"size": "s"})
'''

BADARG = '''\
from semsegpaddle import hookimpl


@hookimpl
def semseg_register_backbones(registry):  # the hook passes `register`
    pass
'''

DUPE = '''\
import click

from semsegpaddle import hookimpl


def net(*, width: int = 8):
    """A stand-in backbone factory (never built here)."""


@hookimpl
def semseg_register_backbones(register):
    register("resnet", net, options={"width": "w"})
    register("shared_net", net, options={"width": "w"})
    register("dupe_net", net, options={"width": "w"})


@hookimpl
def semseg_register_configs(register):
    register("synthetic_deeplabv3", "configs/dupe_cfg.yaml")
    register("dupe_cfg", "configs/dupe_cfg.yaml")


@hookimpl
def semseg_register_commands(cli):
    @cli.command(name="list")
    def hijack():
        click.echo("hijacked")

    @cli.command(name="dupe-hello")
    def hello():
        click.echo("hello from dupe")
'''

FIRST = '''\
from semsegpaddle import hookimpl


def net(*, depth: int = 1):
    """The first plugin to register shared_net."""


@hookimpl
def semseg_register_backbones(register):
    register("shared_net", net, options={"depth": "d"})
'''

IMPORTFAIL = '''\
"""This plugin's module cannot be imported."""
import os
import not_a_module_xyz
'''

HOOKRAISE = '''\
from semsegpaddle import hookimpl


def data(split, *, size: int = 8):
    """Never built."""


@hookimpl
def semseg_register_datasets(register):
    register("early_data", data, options={"size": "s"})
    settings = {}
    register("late_data", data, options={"size": settings["size"]})
'''

BADDECL = '''\
from semsegpaddle import hookimpl


def head(feature_info, num_classes, *, channels: int = 8):
    """Never built."""


@hookimpl
def semseg_register_decoders(register):
    register("bad_opts", head, options={"nope": "not an argument"})
    register("Bad Name", head, options={"channels": "c"})
    register("good_after", head, options={"channels": "c"})
'''

REQPLUG = '''\
import json
from pathlib import Path

from semsegpaddle import hookimpl


def needs_root(split: str, *, root: Path, labels: Path | None = None, size: int = 32):
    """A dataset read from a folder (fails on purpose once the folder is found)."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(2, "dataset folder not found", str(folder))
    return json.loads((folder / "meta.json").read_text())["classes"]


@hookimpl
def semseg_register_datasets(register):
    register("needs_root", needs_root, options={"root": "dataset folder", "labels": "label folder",
                                                "size": "image side"})


@hookimpl
def semseg_register_configs(register):
    register("reqplug_demo", "configs/reqplug_demo.yaml")
'''

PACKAGES = {
    "semseg-typo": ("typo", "typo_plugin", {"typo_plugin.py": TYPO}),
    "semseg-badarg": ("badarg", "badarg_plugin", {"badarg_plugin.py": BADARG}),
    "semseg-dup": ("dupe", "dupe_plugin", {
        "dupe_plugin/__init__.py": DUPE,
        "dupe_plugin/configs/dupe_cfg.yaml": "_base_: synthetic_deeplabv3\ntrain: {iters: 7}\n",
    }),
    # its distribution name sorts after semseg-dup, its entry-point name before: the entry point decides
    "semseg-zz-first": ("aaa", "aaa_plugin", {"aaa_plugin.py": FIRST}),
    "semseg-importfail": ("importfail", "importfail_plugin", {"importfail_plugin.py": IMPORTFAIL}),
    "semseg-hookraise": ("hookraise", "hookraise_plugin", {"hookraise_plugin.py": HOOKRAISE}),
    "semseg-baddecl": ("baddecl", "baddecl_plugin", {"baddecl_plugin.py": BADDECL}),
    "semseg-reqplug": ("reqplug", "reqplug", {
        "reqplug/__init__.py": REQPLUG,
        "reqplug/configs/reqplug_demo.yaml": "_base_: synthetic_deeplabv3\n"
                                             "dataset:\n  name: needs_root\n  root: data\n",
    }),
}


def _setup_py(dist: str, ep: str, module: str, files: dict[str, str]) -> str:
    if any("/" in f for f in files):
        layout = f"packages=[{module!r}], package_data={{{module!r}: ['configs/*.yaml']}},"
    else:
        layout = f"py_modules=[{module!r}],"
    return textwrap.dedent(f"""\
        from setuptools import setup
        setup(name={dist!r}, version="0.1.0", {layout}
              entry_points={{"semsegpaddle": ["{ep} = {module}"]}})
        """)


def line_of(source: str, text: str) -> int:
    """1-based line number of the first line of ``source`` containing ``text``."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """All the packages above, pip-installed (one pip run) into a private folder."""
    build = tmp_path_factory.mktemp("build")
    target = tmp_path_factory.mktemp("site")
    sources = []
    for dist, (ep, module, files) in PACKAGES.items():
        root = build / dist
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        (root / "setup.py").write_text(_setup_py(dist, ep, module, files))
        sources.append(str(root))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *sources], check=True, capture_output=True)
    return target


def semseg(site, *args, cwd=None, env=None):
    """Run `python -m semsegpaddle.cli ARGS` with the broken plugins importable."""
    environ = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "semsegpaddle.cli", *args], env=environ, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: plugin ")]


def warnings_of(listed, plugin: str) -> list[str]:
    return [w for w in listed["warnings"] if w.startswith(f"Warning: plugin '{plugin}' ")]


@pytest.fixture(scope="module")
def listed(site):
    """`semseg list --json` and `semseg plugins --json` with every broken plugin installed."""
    components = semseg(site, "list", "--json")
    plugins = semseg(site, "plugins", "--json")
    assert components.returncode == 0, components.stderr
    assert plugins.returncode == 0, plugins.stderr
    return {
        "components": {(row["kind"], row["name"]): row for row in json.loads(components.stdout)},
        "plugins": json.loads(plugins.stdout),
        "warnings": warning_lines(components.stderr),
    }


def test_basic_commands_keep_working(site, tmp_path):
    assert semseg(site, "--version").returncode == 0
    shown = semseg(site, "--help")
    assert shown.returncode == 0 and "dupe-hello" in shown.stdout
    printed = semseg(site, "config", "synthetic_deeplabv3", "train.iters=3", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "iters: 3" in printed.stdout


def test_each_failure_is_one_warning_line(listed):
    counts = {name: len(warnings_of(listed, name)) for name in
              ("typo", "badarg", "dupe", "importfail", "hookraise", "baddecl", "aaa", "reqplug")}
    # dupe loses four names (two backbones, a config, a command), baddecl two declarations
    assert counts == {"typo": 1, "badarg": 1, "dupe": 4, "importfail": 1, "hookraise": 1, "baddecl": 2,
                      "aaa": 0, "reqplug": 0}
    assert len(listed["warnings"]) == sum(counts.values())


def test_misspelled_hook_skips_the_plugin_and_names_the_closest_hook(listed, site):
    [warning] = warnings_of(listed, "typo")
    assert warning.startswith("Warning: plugin 'typo' (semseg-typo 0.1.0) was skipped: "
                              "unknown hook 'semseg_register_backbone' (did you mean 'semseg_register_backbones'?)")
    assert warning.endswith(f"(at {site / 'typo_plugin.py'}:{line_of(TYPO, 'def semseg_register_backbone(')})")
    # skipped as a whole: its valid hook did not run either
    assert ("dataset", "typo_data") not in listed["components"] and ("backbone", "typo_net") not in listed["components"]
    assert ("backbone", "resnet") in listed["components"]


def test_wrong_hook_argument_skips_the_plugin(listed, site):
    [warning] = warnings_of(listed, "badarg")
    assert "plugin 'badarg' (semseg-badarg 0.1.0) was skipped" in warning
    assert "hook 'semseg_register_backbones' asks for argument(s) 'registry'" in warning
    assert warning.endswith(f"(it is given: register) (at {site / 'badarg_plugin.py'}:{line_of(BADARG, 'def ')})")
    names = {row["name"] for row in listed["plugins"]["plugins"]}
    assert "badarg" not in names and "typo" not in names and "dupe" in names


def test_duplicate_names_go_to_the_first_plugin_only(listed, site):
    components = listed["components"]
    assert components[("backbone", "resnet")]["plugin"] == "resnet"
    assert components[("backbone", "resnet")]["distribution"] == "semsegpaddle"
    assert components[("backbone", "dupe_net")]["plugin"] == "dupe"  # the newcomer's other names register
    assert components[("backbone", "shared_net")]["plugin"] == "aaa"  # entry-point name order, not distribution
    [resnet] = [w for w in warnings_of(listed, "dupe") if "backbone 'resnet'" in w]
    assert resnet.startswith("Warning: plugin 'dupe' (semseg-dup 0.1.0): backbone 'resnet' is registered twice: "
                             "plugin 'resnet' (semsegpaddle) registered it first and keeps it; "
                             "plugin 'dupe' (semseg-dup) is refused")
    where = line_of(DUPE, '"resnet", net')
    assert resnet.endswith(f"(at {site / 'dupe_plugin' / '__init__.py'}:{where})")
    [shared] = [w for w in warnings_of(listed, "dupe") if "backbone 'shared_net'" in w]
    assert "plugin 'aaa' (semseg-zz-first)" in shared
    failed = [f for f in listed["plugins"]["failed"] if f["name"] == "dupe"]
    assert {f["component"] for f in failed} == {"backbone 'resnet'", "backbone 'shared_net'",
                                                "config 'synthetic_deeplabv3'", "command 'list'"}
    assert {(f["stage"], f["distribution"], f["version"]) for f in failed} == {("duplicate", "semseg-dup", "0.1.0")}


def test_duplicate_configs_and_commands(site, tmp_path):
    shown = semseg(site, "config", "--list")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert "[semsegpaddle " in rows["synthetic_deeplabv3"] and "plugins/configs" in rows["synthetic_deeplabv3"]
    assert "[plugin dupe, semseg-dup 0.1.0]" in rows["dupe_cfg"]
    assert "[plugin reqplug, semseg-reqplug 0.1.0]" in rows["reqplug_demo"]
    printed = semseg(site, "config", "dupe_cfg", cwd=tmp_path)  # a plugin's config by name, its _base_ too
    assert printed.returncode == 0 and "iters: 7" in printed.stdout
    hello = semseg(site, "dupe-hello")
    assert hello.returncode == 0 and "hello from dupe" in hello.stdout


def test_import_failure_names_file_and_line_and_debug_prints_the_traceback(listed, site):
    [warning] = warnings_of(listed, "importfail")
    assert warning.startswith("Warning: plugin 'importfail' (semseg-importfail 0.1.0) failed to import and was "
                              "skipped: ModuleNotFoundError: No module named 'not_a_module_xyz'")
    assert warning.endswith(f"(at {site / 'importfail_plugin.py'}:{line_of(IMPORTFAIL, 'import not_a_module_xyz')})")
    [failed] = [f for f in listed["plugins"]["failed"] if f["name"] == "importfail"]
    assert (failed["distribution"], failed["version"], failed["stage"]) == ("semseg-importfail", "0.1.0", "import")
    debug = semseg(site, "--debug", "plugins")
    assert debug.returncode == 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'importfail_plugin.py", line 3' in debug.stderr and 'hookraise_plugin.py", line' in debug.stderr
    assert "importfail  FAILED: ModuleNotFoundError" in debug.stdout and "semseg-importfail 0.1.0" in debug.stdout


def test_hook_raising_part_way_keeps_what_it_registered(listed, site):
    assert listed["components"][("dataset", "early_data")]["plugin"] == "hookraise"
    assert ("dataset", "late_data") not in listed["components"]
    [warning] = warnings_of(listed, "hookraise")
    assert ("plugin 'hookraise' (semseg-hookraise 0.1.0) failed in semseg_register_datasets after registering "
            "dataset 'early_data': KeyError: 'size'") in warning
    assert warning.endswith(f"(at {site / 'hookraise_plugin.py'}:{line_of(HOOKRAISE, 'settings[')})")


def test_bad_declaration_loses_that_component_only(listed, site):
    warnings = warnings_of(listed, "baddecl")
    [bad] = [w for w in warnings if "decoder 'bad_opts'" in w]
    assert "plugin 'baddecl' (semseg-baddecl 0.1.0): decoder 'bad_opts' was not registered: TypeError" in bad
    assert "undescribed: ['channels']" in bad and "not arguments: ['nope']" in bad
    assert bad.endswith(f"(at {site / 'baddecl_plugin.py'}:{line_of(BADDECL, 'bad_opts')})")
    assert any("decoder 'Bad Name' was not registered: ValueError" in w for w in warnings)
    assert listed["components"][("decoder", "good_after")]["plugin"] == "baddecl"


def test_required_option_listed_and_enforced(listed, site, tmp_path):
    options = {o["name"]: o for o in listed["components"][("dataset", "needs_root")]["options"]}
    assert options["root"]["required"] is True and options["root"]["type"] == "path"
    assert options["size"]["required"] is False and options["size"]["default"] == 32
    missing = semseg(site, "config", "synthetic_deeplabv3", "dataset.name=needs_root", cwd=tmp_path)
    assert missing.returncode == 1
    lines = [line for line in missing.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [line for line in missing.stderr.splitlines() if not line.startswith("Warning:")]
    assert lines[0].startswith("Error: command line: dataset.root is required by dataset 'needs_root'")
    text = semseg(site, "list", "dataset")
    assert "root: path (required)" in text.stdout


def test_packaged_config_paths_are_templates_for_the_working_folder(site, tmp_path):
    printed = semseg(site, "config", "reqplug_demo", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert f"root: {tmp_path / 'data'}" in printed.stdout
    mine = tmp_path / "cfg"
    mine.mkdir()
    (mine / "child.yaml").write_text("_base_: reqplug_demo\ndataset:\n  labels: ../labels\n")
    printed = semseg(site, "config", str(mine / "child.yaml"), "model.backbone.pretrained=w.safetensors", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert f"root: {tmp_path / 'data'}" in printed.stdout  # set by the packaged file: the working folder
    assert f"labels: {tmp_path / 'labels'}" in printed.stdout  # set by child.yaml, relative to it
    assert f"pretrained: {tmp_path / 'w.safetensors'}" in printed.stdout  # command line: the current folder


def test_factory_errors_name_file_and_key(site, tmp_path):
    packaged = site / "reqplug" / "configs"
    failed = semseg(site, "train", "reqplug_demo", "runtime.progress=false", cwd=tmp_path)
    assert failed.returncode == 1
    [line] = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert line == (f"Error: {packaged / 'reqplug_demo.yaml'}: dataset.root (dataset 'needs_root'): "
                    f"FileNotFoundError: [Errno 2] dataset folder not found: '{tmp_path / 'data'}'")
    assert "Traceback" not in failed.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.json").write_text("{}")
    debug = semseg(site, "--debug", "train", "reqplug_demo", "dataset.root=data", cwd=tmp_path)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert f'{site / "reqplug" / "__init__.py"}", line {line_of(REQPLUG, "json.loads")}' in debug.stderr
    assert f"{packaged / 'reqplug_demo.yaml'}: dataset (dataset 'needs_root'): KeyError: 'classes'" in debug.stderr
