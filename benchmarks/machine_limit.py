"""The machine's float32 limit: numpy's sgemm with the widest kernels its OpenBLAS has for this CPU.

This machine's environment sets ``OPENBLAS_CORETYPE=Haswell`` (and ``OPENBLAS_L2_SIZE``), which
makes OpenBLAS run its AVX2 kernels at about half the AVX-512 rate. The limit is measured in a
child process with those two variables removed — in that process only, never in tests or CI —
and the child reports which kernels ran (threadpoolctl's ``architecture``).

    .venv/bin/python benchmarks/machine_limit.py              # prints the limit and the kernels
    .venv/bin/python benchmarks/machine_limit.py --n 4096 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

#: variables that pin OpenBLAS to narrower kernels than the CPU has
PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_CHILD = r"""
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
a @ b
rates = []
for _ in range(repeats):
    tic = time.perf_counter()
    a @ b
    rates.append(2 * n ** 3 / (time.perf_counter() - tic) / 1e9)
try:
    from threadpoolctl import threadpool_info
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    kernels = ", ".join(f"{p['internal_api']} {p.get('architecture')} ({p['num_threads']} threads)" for p in pools)
except ImportError:
    kernels = "unknown (threadpoolctl not importable)"
print(json.dumps({"rates": rates, "kernels": kernels}))
"""


def measure_limit(n: int = 4096, repeats: int = 5, unpin: bool = True, threads: int | None = None) -> dict[str, Any]:
    """``{"gflops": best rate, "median": median rate, "kernels": ..., "n": n}`` of numpy's float32
    n³ matmul in a child process on ``threads`` threads (default: every core this process may use),
    with OpenBLAS's pinning variables removed when ``unpin``."""
    threads = threads or len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if not (unpin and k in PINNING)}
    # importing paddle sets OMP_NUM_THREADS=1 in the parent: the child's BLAS gets the cores explicitly
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(repeats)], env=env, capture_output=True,
                          text=True, check=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rates = sorted(result["rates"])
    return {"gflops": rates[-1], "median": rates[len(rates) // 2], "kernels": result["kernels"], "n": n,
            "unpinned": [k for k in PINNING if k in os.environ] if unpin else []}


def main() -> None:
    """Print the limit with AVX-512 kernels, and the pinned (environment's) figure beside it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for unpin in (True, False):
        limit = measure_limit(args.n, args.repeats, unpin)
        label = "widest kernels (pinning removed: " + (", ".join(limit["unpinned"]) or "none set") + ")" \
            if unpin else "as the environment pins it"
        print(f"{label}: best {limit['gflops']:.0f} GFLOP/s, median {limit['median']:.0f} "
              f"(float32 {args.n}³, {limit['kernels']})")


if __name__ == "__main__":
    main()
