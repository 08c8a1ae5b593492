"""The documentation's promises: a README of one screen with the two quick-start commands and the
test command CI runs, a documented CLI, and an mkdocs site that builds strictly and lists every
command and every packaged config."""
from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from semsegpaddle.cli import cli
from tests.helpers.cli import invoke

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
PACKAGED_CONFIGS = ROOT / "semsegpaddle" / "plugins" / "configs"
MKDOCS = Path(sys.executable).with_name("mkdocs")


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("semseg train")
    assert "pytest" in commands[1]


def test_readme_fits_one_screen_and_keeps_the_quick_start_commands():
    assert len(README.splitlines()) <= 80
    assert quick_start_commands() == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[cpu]" && .venv/bin/semseg train',
        'python3 -m venv .venv && .venv/bin/pip install -e ".[cpu,test,reference]" && .venv/bin/pip install --no-deps paddleseg==2.8.0 && .venv/bin/python -m pytest',
    ]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def test_every_cli_command_is_in_the_readme():
    for name in cli.commands:
        assert f"semseg {name}" in README, name
    train_help = invoke("train", "--help").output
    assert "--resume" in train_help and "--overwrite" in train_help and "key=value" in train_help
    help_text = invoke("--help").output
    assert all(name in help_text for name in cli.commands)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """The mkdocs site built with --strict (any broken link, anchor or nav entry fails it)."""
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                             "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return site


def test_the_docs_build_strictly(built_site):
    for page in ("index", "getting-started", "datasets", "models", "model-zoo", "inference", "training", "cli",
                 "plugins", "benchmarks", "architecture", "configs"):
        target = built_site / ("index.html" if page == "index" else f"{page}/index.html")
        assert target.is_file(), f"{page} was not built"


def test_every_cli_command_is_in_the_built_command_reference(built_site):
    page = (built_site / "cli" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for name, command in cli.commands.items():
        assert f'id="semseg-{name}"' in page, f"no generated section for semseg {name}"
        assert f"semseg {name} [OPTIONS]" in text, f"no generated usage line for semseg {name}"
        first_line = (command.help or "").strip().splitlines()[0]
        assert first_line and first_line in text, name


def test_every_packaged_config_is_in_the_configs_page():
    page = (ROOT / "docs" / "configs.md").read_text()
    names = sorted(path.stem for path in PACKAGED_CONFIGS.glob("*.yaml"))
    assert names
    for name in names:
        assert f"| `{name}` |" in page, f"packaged config {name} missing from docs/configs.md"
