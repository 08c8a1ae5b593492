"""train.skip_bad_samples: a sample that fails to load is replaced deterministically, named once and
counted in the train log; broken data still stops training."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.data.datasets import (DataWarning, StepBatches, TrainSamples, epoch_order, max_bad_samples,
                                             train_loader, train_transform)
from semsegpaddle.core.engine.checkpoint import read_metadata
from semsegpaddle.core.common.errors import DataError
from semsegpaddle.core.data.base import SegDataset

from tests.helpers.cli import semseg

TINY = ["model.backbone.name=tiny_cnn", "model.backbone.width=8", "model.decoder.name=simple_fcn",
        "model.decoder.channels=8", "train.crop_size=[32,32]", "train.scale_range=[1.0,1.0]",
        "train.batch_size=2", "eval.batch_size=4", "runtime.progress=false", "runtime.threads=1",
        "dataset.name=flaky", "train.log_interval=1"]
SAMPLE = "flaky/train/0003.png"
REASON = {"raise": f"{SAMPLE}: cannot load (RuntimeError: corrupt record in shard 7)",
          "label": f"{SAMPLE}: label values [9] are neither classes 0..2 nor ignore_index 255"}


def skipped_log(run) -> list[dict]:
    return [json.loads(line)["skipped"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning:")]


@pytest.mark.parametrize("failure", ["raise", "label"])
def test_a_bad_sample_is_replaced_named_once_and_counted(plugin_site, tmp_path, failure):
    runs = {}
    for workers in (0, 2):
        run = tmp_path / f"workers{workers}"
        result = semseg(plugin_site, "train", *TINY, f"dataset.failure={failure}", "train.iters=8",
                        "train.skip_bad_samples=true", f"train.num_workers={workers}", f"runtime.output_dir={run}",
                        timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        # 8 samples, 2 per step: each 4-step epoch draws the bad sample once; one warning names it
        assert warning_lines(result.stderr) == [
            f"Warning: skipping bad training sample (train.skip_bad_samples), replaced whenever drawn: "
            f"{REASON[failure]}"], result.stderr[-3000:]
        log = skipped_log(run)
        assert [entry["count"] for entry in log] == sorted(entry["count"] for entry in log) and log[-1]["count"] == 2
        assert {entry["last"] for entry in log if entry["count"]} == {SAMPLE}
        assert log[0] in ({"count": 0, "last": None}, {"count": 1, "last": SAMPLE})
        assert read_metadata(run / "model_last.safetensors")["skipped"] == {"count": 2, "last": SAMPLE}
        runs[workers] = run
    # the same replacements, whatever the number of workers: identical losses and weights
    losses = [[json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]
              for run in runs.values()]
    assert losses[0] == losses[1]
    weights = [load_file(str(run / "model_last.safetensors")) for run in runs.values()]
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_resume_continues_the_count(plugin_site, tmp_path):
    run = tmp_path / "run"
    first = semseg(plugin_site, "train", *TINY, "train.iters=4", "train.skip_bad_samples=true",
                   f"runtime.output_dir={run}", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert read_metadata(run / "model_last.safetensors")["skipped"] == {"count": 1, "last": SAMPLE}
    resumed = semseg(plugin_site, "train", *TINY, "train.iters=12", "train.skip_bad_samples=true",
                     f"runtime.output_dir={run}", "--resume", timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = semseg(plugin_site, "train", *TINY, "train.iters=12", "train.skip_bad_samples=true",
                   f"runtime.output_dir={tmp_path / 'whole'}", timeout=180)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert skipped_log(run) == skipped_log(tmp_path / "whole")
    assert read_metadata(run / "model_last.safetensors")["skipped"] == {"count": 3, "last": SAMPLE}


def test_a_dataset_whose_every_sample_fails_stops_with_one_line(plugin_site, tmp_path):
    result = semseg(plugin_site, "train", *TINY, "dataset.count=1", "dataset.bad_index=0", "train.iters=3",
                    "train.skip_bad_samples=true", f"runtime.output_dir={tmp_path / 'run'}", timeout=180)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == ("Error: every training sample failed to load (1 of 1), e.g. flaky/train/0000.png: "
                         "cannot load (RuntimeError: corrupt record in shard 7)"), result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_without_the_switch_the_log_has_no_skipped_record(plugin_site, tmp_path):
    run = tmp_path / "run"
    result = semseg(plugin_site, "train", *TINY, "dataset.bad_index=99", "train.iters=2",
                    f"runtime.output_dir={run}", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all("skipped" not in json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines())
    assert "skipped" not in read_metadata(run / "model_last.safetensors")


class Broken(SegDataset):
    """``count`` 8×8 samples whose image value is the index; the indices in ``bad`` raise."""

    num_classes, ignore_index = 2, 255

    def __init__(self, count: int, bad: set[int]) -> None:
        self.count, self.bad = count, bad

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if index in self.bad:
            raise OSError("truncated file")
        return np.full((8, 8, 3), index, np.uint8), np.zeros((8, 8), np.int64)

    def describe(self, index: int) -> str:
        return f"broken/{index}.png"


def config(**train):
    return config_from_dict({"train": {"crop_size": [8, 8], "scale_range": [1.0, 1.0], "batch_size": 4,
                                       "skip_bad_samples": True, **train}})


def test_the_replacement_is_the_next_sample_of_the_epoch_that_loads():
    dataset = Broken(10, bad={3, 4})
    cfg = config()
    samples = TrainSamples(dataset, train_transform(cfg, 255), seed=5, skip_bad=True)
    batches = StepBatches(10, 4, seed=5, start=0, total=5)
    replaced = 0
    for step in range(5):
        for index, draw in batches.batch_for_step(step):
            image, _, failed = samples[index, draw]
            epoch, offset = divmod(draw, 10)
            order = epoch_order(5, epoch, 10).tolist()
            expected = next(order[(offset + k) % 10] for k in range(10) if order[(offset + k) % 10] not in {3, 4})
            assert image[0, 0, 0] == expected  # channel 0, pixel (0, 0)
            assert [f.where for f in failed][:1] == ([f"broken/{index}.png"] if index in {3, 4} else [])
            replaced += bool(failed)
            assert samples[index, draw][0].tobytes() == image.tobytes()  # the same, every time
    assert replaced == 4  # two bad samples in each of the two epochs


def test_more_bad_samples_than_tolerated_stop_training():
    dataset = Broken(40, bad={5, 17, 30})  # 40 samples tolerate max(1, 5 %) = 2 bad ones
    assert max_bad_samples(40) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=r"^3 of the 40 training samples failed to load, more than the 2 "
                                            r"train.skip_bad_samples tolerates \(5 % of the dataset\); the last: "
                                            r"broken/\d+.png: cannot load \(OSError: truncated file\)$"):
            for _ in train_loader(dataset, config(iters=10), start=0):
                pass
    named = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(named) == 2 and len(set(named)) == 2


def test_without_the_switch_the_first_bad_sample_stops_the_loader():
    with pytest.raises(DataError, match=r"^broken/\d.png: cannot load \(OSError: truncated file\)$"):
        for _ in train_loader(Broken(8, bad={2}), config(iters=4, skip_bad_samples=False), start=0):
            pass


@pytest.mark.slow
def test_data_parallel_counts_the_replacements_of_every_process(plugin_site, tmp_path):
    import subprocess
    import sys

    import semsegpaddle.cli
    from tests.helpers.cli import plugin_env

    run = tmp_path / "run"
    # 8 samples, 2 per process and step: each 2-step epoch draws the bad sample in one of the processes
    result = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
         semsegpaddle.cli.__file__, "train", *TINY, "train.iters=6", "train.skip_bad_samples=true",
         f"runtime.output_dir={run}"], env=plugin_env(plugin_site), capture_output=True, text=True, timeout=600,
        cwd=tmp_path)
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "log").glob("workerlog.*")}
    assert result.returncode == 0, (result.stderr[-2000:], {k: v[-2000:] for k, v in logs.items()})
    assert [entry["count"] for entry in skipped_log(run)][-1] == 3
    assert read_metadata(run / "model_last.safetensors")["skipped"]["count"] == 3
    assert sum(log.count("Warning: skipping bad training sample") for log in logs.values()) in (1, 2)
