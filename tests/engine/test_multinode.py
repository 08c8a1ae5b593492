"""Multi-node rehearsal on one machine: two launchers, one process each, meet at a master address
(`semseg train --nproc 1 --nnodes 2 --master 127.0.0.1:PORT --rank R`) and train one model (gloo)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

from semsegpaddle.core.engine.agreement import weights_digest
from semsegpaddle.core.engine.checkpoint import read_metadata

ARGS = ["model.backbone.output_stride=32", "train.iters=3", "train.batch_size=2", "train.crop_size=[48,48]",
        "dataset.image_size=48", "dataset.num_train=8", "dataset.num_val=4", "eval.batch_size=2",
        "runtime.progress=false"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_launchers_form_one_job_and_both_ranks_end_with_the_saved_weights(tmp_path):
    master = f"127.0.0.1:{free_port()}"
    nodes = []
    for rank in (0, 1):
        # each "machine" has its own output folder, as on separate disks; rank 0 writes the run
        command = [sys.executable, "-m", "semsegpaddle.cli", "train", *ARGS, f"runtime.output_dir={tmp_path / f'node{rank}'}",
                   "--nproc", "1", "--nnodes", "2", "--master", master, "--rank", str(rank)]
        nodes.append(subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=600))
    finally:
        for node in nodes:
            node.kill()
    logs = {rank: (tmp_path / f"node{rank}" / "launch_logs" / f"node{rank}" / "workerlog.0").read_text(errors="replace")
            for rank in (0, 1)}
    assert [n.returncode for n in nodes] == [0, 0], ([o[1][-1500:] for o in outputs], logs)
    digests = {rank: re.search(r"rank (\d)/2: trained weights sha256 (\w+)", logs[rank]).groups() for rank in (0, 1)}
    last = tmp_path / "node0" / "model_last.safetensors"
    saved = weights_digest(load_file(str(last)), read_metadata(last)["trainable"])
    assert digests == {0: ("0", saved), 1: ("1", saved)}
    assert read_metadata(last)["step"] == 3
    assert json.loads((tmp_path / "node0" / "versions.json").read_text())[0]["world_size"] == 2
    assert not list((tmp_path / "node1").glob("*.safetensors"))  # only rank 0 writes
