"""``semseg train --nproc N``: hand the run over to Paddle's own launcher.

The command runs ``python -m paddle.distributed.launch [--nnodes --master --rank] --nproc_per_node
N --log_dir DIR python -u -m semsegpaddle.cli train ...`` under a supervisor
(:mod:`semsegpaddle.core.engine.supervisor`): the launcher starts and watches the workers, the
supervisor makes sure one failed process ends them all, names it in one line and leaves none behind.
Multi-node: start the same command on every machine with ``--nnodes M --master HOST:PORT`` (and
``--rank`` 0..M-1 to fix the order); the launchers meet at the master and form one job.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from semsegpaddle.core.common.errors import SemsegError


@dataclass(frozen=True)
class LaunchPlan:
    """Where and how many worker processes a launcher starts."""

    nproc: int = 1
    nnodes: int = 1
    master: str | None = None
    rank: int | None = None
    log_dir: str | None = None


def check_plan(plan: LaunchPlan) -> None:
    """One-line errors for launcher options that cannot work."""
    if os.environ.get("PADDLE_TRAINERS_NUM") or os.environ.get("PADDLE_TRAINER_ID"):
        raise SemsegError("--nproc/--nnodes given inside a job that paddle.distributed.launch already started; "
                          "drop them (the launcher set up this process)")
    if plan.nproc < 1:
        raise SemsegError(f"--nproc expects a number ≥ 1, got {plan.nproc}")
    if plan.nnodes < 1:
        raise SemsegError(f"--nnodes expects a number ≥ 1, got {plan.nnodes}")
    if plan.nnodes > 1 and not plan.master:
        raise SemsegError("--nnodes > 1 needs --master HOST:PORT, the address every node's launcher meets at")
    if plan.master is not None:
        host, _, port = plan.master.rpartition(":")
        if not host or not port.isdigit():
            raise SemsegError(f"--master expects HOST:PORT, got {plan.master!r}")
    if plan.rank is not None and not 0 <= plan.rank < plan.nnodes:
        raise SemsegError(f"--rank expects a node rank in 0..{plan.nnodes - 1}, got {plan.rank}")


def default_log_dir(output_dir: str | Path, plan: LaunchPlan) -> Path:
    """``OUTPUT_DIR/launch_logs`` (one folder per node in multi-node jobs, whose output folders may be shared)."""
    base = Path(output_dir) / "launch_logs"
    if plan.nnodes == 1:
        return base
    return base / (f"node{plan.rank}" if plan.rank is not None else socket.gethostname())


def launcher_command(plan: LaunchPlan, train_args: Sequence[str], output_dir: str | Path,
                     debug: bool = False) -> list[str]:
    """The full command line that starts Paddle's launcher for ``semseg [--debug] train TRAIN_ARGS``."""
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(plan.nproc),
               "--log_dir", str(plan.log_dir or default_log_dir(output_dir, plan))]
    if plan.nnodes > 1:
        command += ["--nnodes", str(plan.nnodes)]
    if plan.master:
        command += ["--master", plan.master]
    if plan.rank is not None:
        command += ["--rank", str(plan.rank)]
    # not ending in .py, the "script" is run as it is: this interpreter, our module, unbuffered
    return [*command, sys.executable, "-u", "-m", "semsegpaddle.cli", *(["--debug"] if debug else []),
            "train", *train_args]


def run_supervised(command: list[str], plan: LaunchPlan, output_dir: str | Path) -> int:
    """Run the launcher ``command`` under the supervisor; the job's exit code. The processes'
    records go to the launcher's log folder (one per node)."""
    from semsegpaddle.core.engine.supervisor import supervise

    sys.stdout.flush()
    sys.stderr.flush()
    return supervise(command, Path(plan.log_dir or default_log_dir(output_dir, plan)))
