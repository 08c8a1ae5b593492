"""The README's promises: two quick-start commands, the test command CI runs, documented CLI."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from semsegpaddle.cli import cli

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("semseg train")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def test_every_cli_command_is_in_the_readme():
    for name in cli.commands:
        assert f"semseg {name}" in README, name
    train_help = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "--resume" in train_help and "--overwrite" in train_help and "key=value" in train_help
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert all(name in help_text for name in cli.commands)
