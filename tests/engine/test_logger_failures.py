"""Loggers from plugins: one that fails is reported once and training goes on unchanged; a
third-party logger installed as a real package is found through its entry point and used."""
from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file

from semsegpaddle import hookimpl
from semsegpaddle.api import train
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.engine.loggers import LoggerWarning
from semsegpaddle.core.plugin import manager as plugin_module

from tests.helpers.cli import semseg
from tests.helpers.packages import write_package, pip_install
from tests.helpers.tiny import TINY_CONFIG, TinyPlugin


class FullDisk:
    """A logger whose writes fail as on a full disk, from the second step on."""

    def scalars(self, step, values):
        if step >= 2:
            raise OSError(28, "No space left on device")


class Recorder:
    """A logger keeping what it is given (in memory, shared by the test)."""

    seen: list = []

    def start(self, run, params, resume_step):
        Recorder.seen.append(("start", resume_step, params["train.iters"]))

    def scalars(self, step, values):
        Recorder.seen.append(("scalars", step, sorted(values)))

    def artifact(self, path):
        Recorder.seen.append(("artifact", path.name))

    def finish(self, status):
        Recorder.seen.append(("finish", status))


class TestLoggers:
    @hookimpl
    def semseg_register_loggers(self, register):
        register("full_disk", FullDisk, options={})
        register("recorder", Recorder, options={})


@pytest.fixture
def plugins():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test"), (TestLoggers(), "test-loggers")])
    plugin_module.reset_plugins(state)
    try:
        yield state
    finally:
        plugin_module.reset_plugins(None)


def tiny(out, loggers):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(iters=3, log_interval=1)
    data["runtime"].update(output_dir=str(out), loggers=loggers)
    return config_from_dict(data)


def test_a_failing_logger_warns_once_and_training_ends_with_the_same_weights(tmp_path, plugins):
    Recorder.seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny(tmp_path / "with", ["full_disk", "recorder"]))
    lines = [str(w.message) for w in caught if issubclass(w.category, LoggerWarning)]
    assert lines == ["logger 'full_disk' failed in scalars() and is off for the rest of this run: "
                     "OSError: [Errno 28] No space left on device"]
    # the other logger saw the whole run
    assert Recorder.seen[0] == ("start", 0, 3) and Recorder.seen[-1] == ("finish", "finished")
    assert [s[1] for s in Recorder.seen if s[0] == "scalars"] == [1, 2, 3, 3]  # the last: the final evaluation
    assert [s[1] for s in Recorder.seen if s[0] == "artifact"] == ["metrics.json", "confusion.png"]
    train(tiny(tmp_path / "without", []))
    with_logger, without = (load_file(str(tmp_path / run / "model_last.safetensors")) for run in ("with", "without"))
    assert with_logger.keys() == without.keys()
    for name in without:
        np.testing.assert_array_equal(with_logger[name], without[name], err_msg=name)


CSV_LOGGER = '''
    """A logger writing scalars to a CSV file in the run folder."""
    import csv
    from semsegpaddle import hookimpl


    class CsvLogger:
        def __init__(self, *, file_name: str = "scalars.csv"):
            self.file_name = file_name

        def start(self, run, params, resume_step):
            self.path = run.folder / self.file_name
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(["step", "tag", "value"])

        def scalars(self, step, values):
            with open(self.path, "a", newline="") as handle:
                csv.writer(handle).writerows([step, tag, value] for tag, value in values.items())

        def finish(self, status):
            with open(self.path, "a", newline="") as handle:
                csv.writer(handle).writerow(["end", status, ""])


    @hookimpl
    def semseg_register_loggers(register):
        register("csv", CsvLogger, options={"file_name": "file in the run folder"})
'''


def test_a_third_party_logger_installed_with_an_entry_point_logs_a_run(plugin_site, tmp_path):
    source = write_package(tmp_path / "src", "semseg-csv-logger", {"plugin": CSV_LOGGER}, {"csv_logger": "plugin"})
    site = pip_install(tmp_path / "site", source)
    both = f"{plugin_site}:{site}"
    listed = semseg(both, "list", "logger", cwd=tmp_path, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "  csv  [plugin csv_logger, semseg-csv-logger 1.0]" in listed.stdout
    out = tmp_path / "run"
    trained = semseg(both, "train", "model.backbone.name=tiny_cnn", "model.backbone.width=8",
                     "model.decoder.name=simple_fcn", "model.decoder.channels=8", "dataset.name=rings",
                     "dataset.count=4", "dataset.size=32",
                     "train.crop_size=[32,32]", "train.batch_size=2", "train.iters=2", "train.log_interval=1",
                     "runtime.progress=false", "runtime.threads=1", "runtime.loggers=[{name: csv, file_name: s.csv}]",
                     f"runtime.output_dir={out}", cwd=tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    rows = list(csv.reader((out / "s.csv").open()))
    assert rows[0] == ["step", "tag", "value"] and rows[-1] == ["end", "finished", ""]
    losses = [(int(step), float(value)) for step, tag, value in rows[1:-1] if tag == "train/loss"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert losses == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in log] and len(losses) == 2
