"""Fixtures of the serving tests: one small trained checkpoint for the whole folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import invoke
from tests.helpers.server import SMALL_RUN


@pytest.fixture(scope="session")
def served_run(tmp_path_factory) -> Path:
    """A training run of the small built-in model (the checkpoint every serving test serves)."""
    out = tmp_path_factory.mktemp("served") / "run"
    result = invoke("train", *SMALL_RUN, f"runtime.output_dir={out}")
    assert result.exit_code == 0, result.output
    return out
