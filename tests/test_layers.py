"""The import contract: layers import downwards only (.importlinter), no import circle anywhere,
the CLI goes through semsegpaddle.api, and importing the API loads no paddle."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=package_parent,
                          env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


def test_a_core_module_importing_the_api_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "semsegpaddle", tmp_path / "semsegpaddle",
                    ignore=shutil.ignore_patterns("__pycache__", "*.yaml"))
    metrics = tmp_path / "semsegpaddle" / "core" / "inference" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n\ndef _reach_up():\n    from semsegpaddle.api import train\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "semsegpaddle.core.inference.metrics -> semsegpaddle.api" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_in_the_package():
    """Imports inside functions count: grimp reads every import statement of a module."""
    graph = grimp.build_graph("semsegpaddle", cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    assert _cycles(graph) == [["a", "b", "c"]]


def test_cli_imports_only_the_api_and_the_api_loads_no_paddle():
    cli_imports = grimp.build_graph("semsegpaddle", cache_dir=None).find_modules_directly_imported_by("semsegpaddle.cli")
    assert {m for m in cli_imports if m.startswith("semsegpaddle.core")} == set()
    probe = ("import sys, semsegpaddle.api, semsegpaddle.cli; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'paddle', 'cv2', 'torch'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
