"""Time-to-exit of a data-parallel job (2 processes, tiny model, CPU/gloo) when one process is
killed (SIGKILL, rank 0 and rank 1), raises (a bad sample only rank 1 reads) or hangs (rank 1
never returns a sample; ``runtime.collective_timeout`` seconds), for the single-node launcher and
the two-launcher multi-node rehearsal on loopback.

Time-to-exit is counted from the fault (the kill; the raise; the hang's start) to the moment every
launcher command has exited; the hang's includes the timeout itself.

    .venv/bin/python benchmarks/rank_failures.py [--timeout 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.cli import plugin_env  # noqa: E402
from tests.helpers.rank_faults import TINY_ARGS, install_fault_plugins, start_job, wait_all  # noqa: E402


def _rank_dirs(out: Path, nodes: int) -> list[Path]:
    return [out / "launch_logs"] if nodes == 1 else [out / "launch_logs" / f"node{r}" for r in range(nodes)]


def _pid_of(out: Path, nodes: int, rank: int) -> int:
    while True:
        for folder in _rank_dirs(out, nodes):
            path = folder / f"rank-{rank}.json"
            if path.exists():
                try:
                    return json.loads(path.read_text())["pid"]
                except ValueError:
                    pass
        time.sleep(0.05)


def _fault_time(out: Path, nodes: int) -> float | None:
    for folder in _rank_dirs(out, nodes):
        path = folder / "rank-1.end.json"
        if path.exists():
            return json.loads(path.read_text())["time"]
    return None


def measure(site: Path, root: Path, case: str, nodes: int, timeout: float) -> dict:
    """Run one failure case; the seconds from the fault to the last launcher's exit, and the line."""
    out = root / f"{case}-{nodes}"
    env = plugin_env(site)
    mode, _, rank = case.partition("-rank")
    if mode in ("raise", "hang"):
        env["SEMSEG_TEST_FAULT"] = f"{mode}:{rank}:6"
    args = [*TINY_ARGS, "train.batch_size=2", "train.iters=200", f"runtime.output_dir={out}",
            f"runtime.collective_timeout={timeout}"]
    jobs = start_job(env, args, nodes=nodes)
    fault = None
    if mode == "kill":
        log = out / "train_log.jsonl"
        while all(j.poll() is None for j in jobs) and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.05)
        os.kill(_pid_of(out, nodes, int(rank)), signal.SIGKILL)
        fault = time.time()
    errors, _ = wait_all(jobs, 600)
    ended = time.time()
    if fault is None:
        fault = _fault_time(out, nodes) or ended
        if mode == "hang":
            fault -= timeout  # the record is written when the timeout fires
    lines = [line for err in errors for line in err.splitlines() if line.startswith("semseg train:")]
    return {"case": case, "launchers": nodes, "exit_codes": [j.returncode for j in jobs],
            "seconds_to_exit": round(ended - fault, 1), "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0, help="runtime.collective_timeout for the hang")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = install_fault_plugins(root / "plugins")
        results = [measure(site, root, case, nodes, args.timeout)
                   for nodes in (1, 2) for case in ("kill-rank0", "kill-rank1", "raise-rank1", "hang-rank1")]
    for r in results:
        print(f"{r['case']:<12} launchers={r['launchers']} exit={r['exit_codes']} "
              f"time-to-exit {r['seconds_to_exit']:>5.1f} s  {' | '.join(r['lines'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
