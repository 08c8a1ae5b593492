"""Registers the built-in loggers. Each one's package is an optional extra, imported when a run
uses it; the loggers themselves live in sibling ``*_impl.py`` modules."""
from __future__ import annotations

import importlib.util

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError

FLUSH_HELP = "seconds between writes of buffered records to disk (they are also written at every checkpoint)"


def require(module: str, label: str, extra: str) -> None:
    """A one-line SemsegError naming the extra to install when ``module`` cannot be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SemsegError(f"{label} is not installed: pip install 'semsegpaddle[{extra}]'")


def _check_flush(flush_secs: int) -> None:
    if isinstance(flush_secs, bool) or not isinstance(flush_secs, int) or flush_secs < 1:
        raise ValueError(f"flush_secs={flush_secs!r}: expected a whole number of seconds ≥ 1")


def visualdl(*, flush_secs: int = 30):
    """VisualDL scalars, images and text in output_dir/visualdl."""
    _check_flush(flush_secs)
    require("visualdl", "VisualDL", "visualdl")
    from semsegpaddle.plugins.loggers.visualdl_impl import VisualDLLogger

    return VisualDLLogger(flush_secs=flush_secs)


def tensorboard(*, flush_secs: int = 30):
    """TensorBoard event files (tensorboardX) in output_dir/tensorboard."""
    _check_flush(flush_secs)
    require("tensorboardX", "tensorboardX", "tensorboard")
    from semsegpaddle.plugins.loggers.tensorboard_impl import TensorBoardLogger

    return TensorBoardLogger(flush_secs=flush_secs)


def mlflow(*, tracking_uri: str | None = None, experiment: str = "semsegpaddle", run_name: str | None = None):
    """An MLflow run: params, metrics by step, final metrics and confusion matrix as artifacts."""
    if not isinstance(experiment, str) or not experiment.strip():
        raise ValueError(f"experiment={experiment!r}: expected a non-empty experiment name")
    require("mlflow", "MLflow", "mlflow")
    from semsegpaddle.plugins.loggers.mlflow_impl import MLflowLogger

    return MLflowLogger(tracking_uri=tracking_uri, experiment=experiment, run_name=run_name)


@hookimpl
def semseg_register_loggers(register):
    """Register visualdl, tensorboard and mlflow."""
    register("visualdl", visualdl,
             description="VisualDL record file in output_dir/visualdl (pip install 'semsegpaddle[visualdl]')",
             options={"flush_secs": FLUSH_HELP})
    register("tensorboard", tensorboard,
             description="TensorBoard event files in output_dir/tensorboard (pip install 'semsegpaddle[tensorboard]')",
             options={"flush_secs": FLUSH_HELP})
    register("mlflow", mlflow,
             description="MLflow run; a local store in output_dir/mlruns unless tracking_uri is given "
                         "(pip install 'semsegpaddle[mlflow]')",
             options={"tracking_uri": "MLflow tracking URI (http://host:5000, sqlite:///path.db, file:///path); "
                                      "null: the file store output_dir/mlruns",
                      "experiment": "experiment name (created when missing)",
                      "run_name": "run name; null: the name of the run folder"})
