"""Data parallel on CPU through Paddle's own launcher (gloo): two processes train one model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

import semsegpaddle.cli
from semsegpaddle.core.common.runtime import convert_batch_norm, use_sync_bn


def test_sync_bn_is_chosen_only_for_multi_gpu():
    assert use_sync_bn("gpu", 2)
    assert not use_sync_bn("gpu", 1)
    assert not use_sync_bn("cpu", 2)


def test_cpu_multi_process_keeps_batch_norm_and_warns_once():
    import paddle

    from semsegpaddle.core.common import runtime

    runtime._warned_cpu_sync_bn = False
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    with pytest.warns(UserWarning, match="SyncBatchNorm exists only on GPU"):
        out = convert_batch_norm(layer, "cpu", 2)
    assert isinstance(out[1], paddle.nn.BatchNorm2D) and not isinstance(out[1], paddle.nn.SyncBatchNorm)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_batch_norm(layer, "cpu", 2)  # no second warning


@pytest.mark.slow
def test_two_process_training_on_cpu(tmp_path):
    out = tmp_path / "run"
    args = ["train", "model.backbone.output_stride=32", "train.iters=3", "train.batch_size=2",
            "train.crop_size=[48,48]", "dataset.image_size=48", "dataset.num_train=8", "dataset.num_val=4",
            "eval.batch_size=2", "runtime.progress=false", f"runtime.output_dir={out}"]
    result = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
         str(tmp_path / "log"), semsegpaddle.cli.__file__, *args],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "log").glob("workerlog.*")}
    assert result.returncode == 0, (result.stderr[-2000:], {k: v[-2000:] for k, v in logs.items()})
    assert set(logs) == {"workerlog.0", "workerlog.1"}
    assert "SyncBatchNorm exists only on GPU" in logs["workerlog.0"]
    metrics = json.loads((out / "metrics.json").read_text())
    # each rank evaluated half of the 4 val images; the summed matrix covers all of them
    from semsegpaddle.core.plugin.manager import get_registry

    val = get_registry("dataset").get("synthetic").factory("val", image_size=48, num_val=4)
    assert metrics["pixels"] == sum(int((val[i][1] != val.ignore_index).sum()) for i in range(4))
    assert len([line for line in (out / "train_log.jsonl").read_text().splitlines() if line]) == 1
    assert load_file(str(out / "model_last.safetensors"))
    # each process kept BatchNorm statistics of its own batches; the metrics reported are those of
    # the saved model (rank 0's), as a single-process evaluation of the checkpoint shows
    again = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "eval", *args[1:], "--out", str(tmp_path / "m.json")],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    single = json.loads((tmp_path / "m.json").read_text())
    assert single["pixels"] == metrics["pixels"]
    assert single["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-6)
    assert single["per_class"] == metrics["per_class"]
