"""The MLflow logger: one MLflow run per training run, continued by ``--resume``.

Without ``tracking_uri`` the run goes to MLflow's file store ``output_dir/mlruns`` (MLflow 3 refuses
that store unless ``MLFLOW_ALLOW_FILE_STORE`` is true: it is set for this logger's own calls only).
The run's id is kept in ``output_dir/mlflow_run.json``, so a resumed session logs into the same
run. MLflow cannot remove metric values: steps an earlier session already logged (trained again
after the resume step) are not logged a second time.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

RUN_RECORD = "mlflow_run.json"
STORE = "mlruns"
STATUS = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
_KEY_CHARACTERS = re.compile(r"[^\w\-. /:]")
_PARAMS_PER_BATCH, _METRICS_PER_BATCH, _PARAM_VALUE_LENGTH = 100, 1000, 6000


def metric_key(tag: str) -> str:
    """``tag`` with the characters MLflow refuses in a key (commas, brackets, ...) replaced by '_'."""
    return _KEY_CHARACTERS.sub("_", tag)[:250]


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri and not uri.startswith(("databricks", "sqlite:"))


class MLflowLogger:
    """Params, metrics by step and final artifacts of one MLflow run."""

    def __init__(self, *, tracking_uri: str | None = None, experiment: str = "semsegpaddle",
                 run_name: str | None = None) -> None:
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.client: Any = None
        self.run_id = ""
        self.logged: dict[str, int] = {}  # key -> the last step the run already holds (resume)
        self.last_step = 0
        self._file_store = False

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """Allow MLflow's file store for the calls made inside (and restore the environment)."""
        if not self._file_store or os.environ.get("MLFLOW_ALLOW_FILE_STORE") is not None:
            yield
            return
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        try:
            yield
        finally:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)

    def start(self, run: Any, params: dict[str, Any], resume_step: int) -> None:
        """Continue the run recorded in the run folder (on resume), or create one; log the params."""
        folder = Path(run.folder)
        uri = self.tracking_uri or (folder / STORE).resolve().as_uri()
        self._file_store = _is_file_store(uri)
        record = folder / RUN_RECORD
        previous = self._previous_run(record, uri) if run.resumed else None
        with self._calls():
            self.client = MlflowClient(tracking_uri=uri)
            if previous:
                self.run_id = previous
                self.client.update_run(self.run_id, status="RUNNING")
                known = self.client.get_run(self.run_id).data
                self.logged = {key: max((m.step for m in self.client.get_metric_history(self.run_id, key)),
                                        default=-1) for key in known.metrics}
                have = set(known.params)
            else:
                self.run_id = self._new_run(run)
                have = set()
            self._log_params({k: v for k, v in params.items() if k not in have})
        temporary = record.with_name(f".{record.name}.tmp")
        temporary.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": uri,
                                         "experiment": self.experiment}, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, record)
        self.last_step = resume_step

    def _previous_run(self, record: Path, uri: str) -> str | None:
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return saved.get("run_id") if saved.get("tracking_uri") == uri else None

    def _new_run(self, run: Any) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        created = self.client.create_run(experiment_id, run_name=self.run_name or run.name,
                                         tags={"semsegpaddle.output_dir": str(run.folder)})
        return created.info.run_id

    def _log_params(self, params: dict[str, Any]) -> None:
        entries = [Param(key, ("null" if v is None else str(v))[:_PARAM_VALUE_LENGTH]) for key, v in params.items()]
        for first in range(0, len(entries), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entries[first:first + _PARAMS_PER_BATCH])

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log each value at ``step``, unless the run already holds that key at this step or later."""
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in ((metric_key(t), v) for t, v in values.items())
                   if step > self.logged.get(key, -1)]
        with self._calls():
            for first in range(0, len(metrics), _METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[first:first + _METRICS_PER_BATCH])
        self.last_step = step

    def artifact(self, path: Path) -> None:
        """Copy ``path`` into the run's artifacts."""
        with self._calls():
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        """Mark the run finished, failed or killed."""
        if self.client is not None and self.run_id:
            with self._calls():
                self.client.set_terminated(self.run_id, status=STATUS.get(status, RunStatus.to_string(RunStatus.FAILED)))
