"""``semseg serve`` from start to exit: check what can be checked, load the model once per worker,
serve until SIGTERM, drain, return."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from semsegpaddle.core.serve.options import ServeOptions, read_token

__all__ = ["serve"]


def serve(config: dict[str, Any], weights: str | Path | None, options: ServeOptions, *, backend: str = "dynamic",
          model_dir: str | Path | None = None, config_name: str = "") -> None:
    """Serve the checkpoint ``weights`` (or, for another backend, the export ``model_dir``) in the
    config's inference mode, under ``options``; returns after a graceful shutdown."""
    from semsegpaddle.core.engine.restore import check_backend_options

    check_backend_options(backend, model_dir, weights)
    read_token(options.token_file)  # a bad token file stops here, before any model is loaded
    if not options.loopback and options.token_file is None:
        print(f"Warning: serving on {options.host} without --token-file: anyone who can reach this address "
              f"can use the model", file=sys.stderr)
    if options.workers == 1:
        _serve_here(config, weights, options, backend, model_dir, config_name)
        return
    from semsegpaddle.core.serve.runner import run_workers

    _check_weights(config, weights, backend, model_dir)
    spec = {"config": dict(config), "weights": None if weights is None else str(weights), "backend": backend,
            "model_dir": None if model_dir is None else str(model_dir), "config_name": config_name}
    print(f"serving {config_name} ({backend}) on http://{options.host}:{options.port} in {options.workers} "
          f"worker processes", file=sys.stderr)
    run_workers(spec, options)


def _serve_here(config: dict[str, Any], weights: Any, options: ServeOptions, backend: str, model_dir: Any,
                config_name: str) -> None:
    from semsegpaddle.core.serve.app import create_app
    from semsegpaddle.core.serve.model import load_served_model
    from semsegpaddle.core.serve.runner import run_app

    model = load_served_model(config, weights, backend=backend, model_dir=model_dir, config_name=config_name)
    print(f"serving {config_name} ({backend}, {len(model.class_names)} classes, {model.default_mode.describe()}) "
          f"on http://{options.host}:{options.port}", file=sys.stderr)
    run_app(create_app(model, options), options)


def _check_weights(config: dict[str, Any], weights: Any, backend: str, model_dir: Any) -> None:
    """What the workers will load exists and says its classes (a cheap check in the parent, so a
    bad path is one error here, not a failure in every worker)."""
    if backend == "dynamic" and model_dir is None:
        from semsegpaddle.core.engine.restore import checkpoint_labels

        checkpoint_labels(config, weights)
    else:
        from semsegpaddle.core.inference.backends import read_export_info

        read_export_info(Path(model_dir))
