"""Cost of the built-in loggers outside the training step: importing the tracker package, the first
start (MLflow: creating the local file store and the run), logging one step of scalars, and
starting a resumed session over a run of STEPS logged steps.

    .venv/bin/python benchmarks/loggers.py [--steps 2000] [--tags 30]

Each logger runs in its own fresh process (import times are then cold-cache-free but honest);
figures are seconds, median of three processes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import json, sys, time
from pathlib import Path
name, folder, steps, tags = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from semsegpaddle.core.engine.loggers import RunInfo
from semsegpaddle.core.plugin.manager import get_registry
out = {}
t = time.perf_counter()
logger = get_registry("logger").get(name).factory()
out["import"] = time.perf_counter() - t
params = {f"section.key{i}": i for i in range(120)}
values = {f"eval/IoU/class{i}": 0.5 for i in range(tags)}
t = time.perf_counter()
logger.start(RunInfo(folder, "bench", False), params, 0)
out["first start"] = time.perf_counter() - t
t = time.perf_counter()
logger.scalars(1, values)
out["one step"] = time.perf_counter() - t
for step in range(2, steps + 1):
    logger.scalars(step, values)
logger.finish("stopped")
t = time.perf_counter()
logger = get_registry("logger").get(name).factory()
logger.start(RunInfo(folder, "bench", True), params, steps // 2)
out["resumed start"] = time.perf_counter() - t
logger.finish("finished")
print(json.dumps(out))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps logged before the resume")
    parser.add_argument("--tags", type=int, default=30, help="scalars per step")
    args = parser.parse_args()
    print(f"{args.steps} steps of {args.tags} scalars; seconds, median of 3 processes")
    print("| logger | import | first start | one step | resumed start |")
    print("|---|---|---|---|---|")
    for name in ("visualdl", "tensorboard", "mlflow"):
        runs = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as folder:
                done = subprocess.run([sys.executable, "-c", CHILD, name, folder, str(args.steps), str(args.tags)],
                                      capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        cells = [f"{statistics.median(r[key] for r in runs):.3f}" for key in runs[0]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
