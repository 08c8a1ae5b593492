"""Running the ``semseg`` command line in tests: in-process through click's CliRunner, or as a real
subprocess (``python -m semsegpaddle.cli``) when a test needs real signals, exit codes or imports."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

#: the argv prefix that runs the command line in a fresh interpreter
SEMSEG = [sys.executable, "-m", "semsegpaddle.cli"]


def invoke(*args: Any, **kwargs: Any) -> Result:
    """Run ``semseg ARGS`` in this process (plugins registered in memory are visible)."""
    from semsegpaddle.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def plugin_env(site: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees the packages installed in ``site`` (and ``extra``)."""
    paths = [str(site)] if site else []
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]), **extra}


def semseg(site: Path | None, *args: Any, cwd: Path | None = None, timeout: float = 600,
           **popen: Any) -> subprocess.CompletedProcess:
    """Run ``python -m semsegpaddle.cli ARGS`` as a subprocess with the packages of ``site`` importable."""
    popen.setdefault("env", plugin_env(site))
    return subprocess.run([*SEMSEG, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          **popen)
