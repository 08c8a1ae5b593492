"""A dataset plugin that fails on one process of a data-parallel job, for the rank-failure tests and
benchmark: ``faulty_rings`` reads like the example plugin's ``rings``; with
``SEMSEG_TEST_FAULT=MODE:RANK:READS`` in the environment, process RANK's training read number
READS (counted from 0 in each process) raises (``raise``), never returns (``hang``) or SIGKILLs the
process (``kill``)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.packages import EXAMPLE, pip_install, write_package

FAULTY_RINGS = '''
    import os
    import signal
    import time

    from semsegpaddle import hookimpl

    _reads = [0]


    def _maybe_fail(split):
        fault = os.environ.get("SEMSEG_TEST_FAULT")
        if not fault or split != "train":
            return
        mode, rank, reads = fault.split(":")
        if os.environ.get("PADDLE_TRAINER_ID") != rank:
            return
        count, _reads[0] = _reads[0], _reads[0] + 1
        if count != int(reads):
            return
        if mode == "raise":
            raise RuntimeError("corrupt record in shard 7")
        if mode == "hang":
            time.sleep(3600)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


    def faulty_rings(split, *, size=48, count=32):
        from semseg_example_plugin.models import Rings

        class FaultyRings(Rings):
            def __getitem__(self, index):
                _maybe_fail(self.split)
                return super().__getitem__(index)

        return FaultyRings(split, size=size, count=count)


    @hookimpl
    def semseg_register_datasets(register):
        register("faulty_rings", faulty_rings, options={"size": "image side", "count": "samples per split"})
'''

#: a tiny run: example backbone/decoder, 32×32 images, one thread per process
TINY_ARGS = ["model.backbone.name=tiny_cnn", "model.backbone.width=4", "model.decoder.name=simple_fcn",
             "model.decoder.channels=4", "dataset.name=faulty_rings", "dataset.size=32", "dataset.count=16",
             "train.crop_size=[32,32]", "train.scale_range=[0.75,1.25]", "train.save_interval=1",
             "train.log_interval=1", "train.eval_interval=0", "eval.batch_size=8", "runtime.progress=false",
             "runtime.threads=1"]


def install_fault_plugins(root: Path) -> Path:
    """A site folder with the example plugin and ``faulty_rings``."""
    source = write_package(root, "semseg-rank-faults", {"plugin": FAULTY_RINGS}, {"rank_faults": "plugin"})
    return pip_install(root / "site", EXAMPLE, source)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_job(env: dict, args: list[str], nodes: int = 1, nproc: int = 2) -> list[subprocess.Popen]:
    """Start ``semseg train ARGS`` with ``--nproc`` processes, or as ``nodes`` launchers of one
    process each on loopback (the multi-node rehearsal); each in its own session."""
    base = [sys.executable, "-m", "semsegpaddle.cli", "train", *args]
    if nodes == 1:
        commands = [[*base, "--nproc", str(nproc)]]
    else:
        master = f"127.0.0.1:{free_port()}"
        commands = [[*base, "--nproc", "1", "--nnodes", str(nodes), "--master", master, "--rank", str(rank),
                     "--log-dir", f"{args_output(args)}/launch_logs/node{rank}"] for rank in range(nodes)]
    return [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True) for command in commands]


def args_output(args: list[str]) -> str:
    """The ``runtime.output_dir=`` value among ``args``."""
    return next(a.split("=", 1)[1] for a in args if a.startswith("runtime.output_dir="))


def wait_all(jobs: list[subprocess.Popen], timeout: float) -> tuple[list[str], float]:
    """Wait for every launcher; their stderr and the seconds until the last ended."""
    begin = time.monotonic()
    errors = []
    for job in jobs:
        try:
            _, err = job.communicate(timeout=max(1.0, timeout - (time.monotonic() - begin)))
        except subprocess.TimeoutExpired:
            for other in jobs:
                with_group_killed(other)
            _, err = job.communicate()
        errors.append(err)
    return errors, time.monotonic() - begin


def with_group_killed(job: subprocess.Popen) -> None:
    """SIGKILL ``job``'s session (clean-up after a test that failed)."""
    try:
        import os

        os.killpg(job.pid, signal.SIGKILL)
    except OSError:
        pass
