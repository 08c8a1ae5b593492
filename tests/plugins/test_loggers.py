"""The built-in loggers (VisualDL, TensorBoard, MLflow), read back with each tool's own format or
client after a run that was killed and resumed; how they are chosen, listed and refused."""
from __future__ import annotations

import json
import struct
import sys

import pytest

from semsegpaddle.api import train
from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.config.loader import config_from_dict

from tests.engine.test_run_folder import train_until
from tests.helpers.cli import invoke
from tests.helpers.tiny import TINY_CONFIG

CLASSES = ("background", "bright", "dark")


def tiny(out, loggers, **train_options):
    data = json.loads(json.dumps(TINY_CONFIG))
    data["train"].update(train_options)
    data["runtime"].update(output_dir=str(out), loggers=loggers)
    return config_from_dict(data)


def tensorboard_events(folder):
    """Every event of the event files of ``folder`` (files in name order, as TensorBoard reads them)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(folder.glob("*tfevents*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
    return events


def tensorboard_values(events):
    """tag -> [(step, summary value)] over ``events``."""
    out: dict[str, list] = {}
    for event in events:
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value))
    return out


def test_builtin_loggers_read_back_after_a_killed_and_resumed_run(tmp_path, tiny_plugins, monkeypatch):
    from mlflow.tracking import MlflowClient

    from semsegpaddle.plugins.loggers.visualdl_impl import read_scalars, record_files

    out = tmp_path / "run"
    config = tiny(out, ["visualdl", "tensorboard", {"name": "mlflow", "experiment": "tiny"}],
                  iters=4, save_interval=2, log_interval=1, eval_interval=2)
    train_until(config, 3)  # killed after step 3; the checkpoint holds step 2
    first_run = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    train(config, resume=True)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [json.loads(line) for line in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and [r["step"] for r in evals] == [2, 4]

    # TensorBoard: one stream, step 3 (replayed) once, the config once, the confusion matrix at the end
    tags = tensorboard_values(tensorboard_events(out / "tensorboard"))
    assert [s for s, _ in tags["train/loss"]] == [1, 2, 3, 4]
    assert [v.simple_value for _, v in tags["train/loss"]] == pytest.approx([r["loss"] for r in log], rel=1e-6)
    assert [v.simple_value for _, v in tags["train/lr"]] == pytest.approx([r["lr"] for r in log], rel=1e-6)
    assert [s for s, _ in tags["train/images_per_second"]] == [1, 2, 3, 4]
    assert all(v.simple_value > 0 for _, v in tags["train/images_per_second"])
    assert {"train/loss_main", "train/step_time", "train/data_time"} <= set(tags)
    assert [s for s, _ in tags["eval/mIoU"]] == [2, 4]
    assert tags["eval/mIoU"][-1][1].simple_value == pytest.approx(evals[-1]["mIoU"], abs=1e-6)
    for name in CLASSES:
        assert tags[f"eval/IoU/{name}"][-1][1].simple_value == pytest.approx(evals[-1]["per_class"][name]["IoU"],
                                                                             abs=1e-6)
    (params,) = tags["params/text_summary"]
    assert b"| train.iters | 4 |" in params[1].tensor.string_val[0]
    ((image_step, image),) = tags["artifacts/confusion"]
    assert image_step == 4 and image.image.encoded_image_string.startswith(b"\x89PNG")

    # MLflow: the resumed session logged into the first session's run, each step once
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.run_id == first_run and run.info.status == "FINISHED" and run.info.run_name == "run"
    history = client.get_metric_history(first_run, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([r["loss"] for r in log],
                                                                                      rel=1e-6)
    assert sorted(m.step for m in client.get_metric_history(first_run, "eval/mIoU")) == [2, 4]
    assert run.data.metrics["eval/IoU/dark"] == pytest.approx(evals[-1]["per_class"]["dark"]["IoU"], abs=1e-6)
    assert run.data.params["train.iters"] == "4" and run.data.params["runtime.loggers.1.name"] == "tensorboard"
    assert run.data.params["model.backbone.name"] == "tiny"
    artifacts = {a.path for a in client.list_artifacts(first_run)}
    assert artifacts == {"metrics.json", "confusion.png"}
    kept = json.loads(open(client.download_artifacts(first_run, "metrics.json", str(tmp_path))).read())
    assert kept["mIoU"] == evals[-1]["mIoU"]

    # VisualDL: the newest (only) record file holds the whole run
    (record,) = record_files(out / "visualdl")
    assert [s for s, _, _ in read_scalars(record)["train/loss"]] == [1, 2, 3, 4]


def test_a_fresh_run_over_an_old_one_starts_new_streams(tmp_path, tiny_plugins):
    out = tmp_path / "run"
    train(tiny(out, ["tensorboard", "mlflow"], iters=2, log_interval=1))
    first = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    train(tiny(out, ["tensorboard", "mlflow"], iters=1, log_interval=1), overwrite=True)
    tags = tensorboard_values(tensorboard_events(out / "tensorboard"))
    assert [s for s, _ in tags["train/loss"]] == [1] and len(tags["params/text_summary"]) == 1
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] != first


def test_runtime_loggers_names_are_checked_against_the_registry(tiny_plugins):
    with pytest.raises(ConfigError, match=r"unknown logger 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        tiny("unused", ["tensorbord"])
    with pytest.raises(ConfigError, match=r"logger 'mlflow' has no option 'tracking_url' \(did you mean "
                                          r"'tracking_uri'\?\)"):
        tiny("unused", [{"name": "mlflow", "tracking_url": "http://localhost:5000"}])


def test_a_logger_whose_package_is_missing_names_the_extra_before_anything_is_written(tmp_path, tiny_plugins,
                                                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"runtime.loggers.1 \(logger 'mlflow'\): MLflow is not installed: "
                                          r"pip install 'semsegpaddle\[mlflow\]'$"):
        train(tiny(tmp_path / "run", ["tensorboard", "mlflow"]))
    assert not (tmp_path / "run").exists()


def test_a_logger_listed_twice_is_refused(tmp_path, tiny_plugins):
    with pytest.raises(ConfigError, match=r"runtime.loggers names 'tensorboard' more than once"):
        train(tiny(tmp_path / "run", ["tensorboard", {"name": "tensorboard", "flush_secs": 5}]))


def test_semseg_list_logger_shows_each_builtin_with_its_plugin_and_options(tiny_plugins):
    result = invoke("list", "logger")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "loggers"
    for name in ("visualdl", "tensorboard", "mlflow"):
        assert any(line.startswith(f"  {name}  [plugin loggers, semsegpaddle ") for line in lines), name
    assert "      tracking_uri: str | None = None  — MLflow tracking URI" in result.output
    assert "      experiment: str = 'semsegpaddle'  — experiment name (created when missing)" in result.output
    listed = json.loads(invoke("list", "logger", "--json").output)
    assert {c["name"] for c in listed} == {"visualdl", "tensorboard", "mlflow"}
    assert {c["kind"] for c in listed} == {"logger"}
