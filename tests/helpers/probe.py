"""Running the command line in a fresh interpreter under a probe that records which modules were
imported, and who imported paddle or cv2 first (it blocks nothing): the check that commands needing
no model stay light."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from semsegpaddle.core.plugin.manager import BUILTIN_DISTRIBUTION, ENTRY_POINT_GROUP

HEAVY = ("paddle", "cv2")

#: run as ``python -c PROBE REPORT.json CODE ARGS...``: CODE runs with sys.argv = ["semseg", *ARGS]
PROBE = r"""
import atexit, json, sys, traceback
report, code, sys.argv = sys.argv[1], sys.argv[2], ["semseg", *sys.argv[3:]]
stacks = {}

class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in %r and top not in stacks:
            stack = traceback.extract_stack()[:-1]
            if any(frame.name == "_find_and_load" for frame in stack):  # an import, not importlib.util.find_spec
                stacks[top] = traceback.format_list(stack)
        return None

sys.meta_path.insert(0, Watch())

@atexit.register
def write():
    with open(report, "w") as f:
        json.dump({"modules": sorted(sys.modules), "stacks": stacks}, f)

exec(code)
""" % (HEAVY,)
CLI = "import runpy; runpy.run_module('semsegpaddle.cli', run_name='__main__')"


def _builtin_entry_points() -> dict[str, str]:
    """Entry-point name -> module of semsegpaddle's own plugins."""
    return {ep.name: ep.value for dist in importlib.metadata.distributions()
            if (dist.metadata["name"] or "").lower() == BUILTIN_DISTRIBUTION
            for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}


BUILTIN = _builtin_entry_points()


@dataclass
class Run:
    """One finished process: exit code, output, the modules loaded at exit, and who imported what."""

    returncode: int
    stdout: str
    stderr: str
    modules: set[str]
    stacks: dict[str, list[str]]  # heavy package -> stack of its first import

    def heavy(self) -> list[str]:
        """The heavy packages the process imported, in the order of HEAVY."""
        tops = {m.partition(".")[0] for m in self.modules}
        return [package for package in HEAVY if package in tops]

    def importer(self, package: str) -> str:
        """The frames of semsegpaddle's code in the stack that first imported ``package``."""
        frames = self.stacks.get(package, [])
        ours = [f.strip() for f in frames if "semsegpaddle" in f.split("\n")[0]]
        return "\n".join(ours or [f.strip() for f in frames[-6:]])


def run_probed(code: str, *args: str, tmp: Path) -> Run:
    """Run CODE (e.g. :data:`CLI`) with ARGS in a fresh interpreter under the probe; only the
    built-in plugins are loaded."""
    report = tmp / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEG_")}
    env["SEMSEG_LOAD_PLUGINS"] = ",".join(BUILTIN)
    result = subprocess.run([sys.executable, "-c", PROBE, str(report), code, *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert report.is_file(), f"the probe wrote no report; stderr: {result.stderr[-2000:]}"
    data = json.loads(report.read_text())
    report.unlink()
    return Run(result.returncode, result.stdout, result.stderr, set(data["modules"]), data["stacks"])


def assert_light(run: Run, packages: tuple[str, ...] = HEAVY) -> None:
    """None of ``packages`` (default: neither paddle nor cv2) was imported; the message shows
    where the first one was."""
    heavy = [package for package in run.heavy() if package in packages]
    assert not heavy, f"{heavy[0]} was imported, at:\n{run.importer(heavy[0])}"


def assert_plugins_loaded(run: Run) -> None:
    """Every built-in plugin module was imported (so the check above is not vacuous)."""
    missing = sorted(set(BUILTIN.values()) - run.modules)
    assert not missing, f"plugin modules not loaded: {missing}"
