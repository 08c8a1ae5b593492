"""What software trained a run: Python, Paddle (with its build), semsegpaddle and every plugin.

Recorded once per training session in the run folder's ``versions.json``, so a resumed run that
changed Paddle or a plugin on the way shows it.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata
from typing import Any


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def paddle_build() -> dict[str, Any]:
    """Paddle's version, commit and the CUDA / cuDNN it was built with (None on CPU builds)."""
    import paddle

    version = paddle.version
    cuda = version.cuda() if callable(getattr(version, "cuda", None)) else None
    cudnn = version.cudnn() if callable(getattr(version, "cudnn", None)) else None
    return {"version": paddle.__version__, "commit": getattr(version, "commit", None),
            "cuda": None if cuda in (None, "False") else cuda, "cudnn": None if cudnn in (None, "False") else cudnn,
            "distribution": next((d for d in ("paddlepaddle-gpu", "paddlepaddle") if _installed(d)), None)}


def plugin_versions() -> dict[str, dict[str, str]]:
    """Every loaded plugin: the distribution that installed it and its version ('-' if in memory)."""
    from semsegpaddle.core.plugin.manager import load_plugins

    state = load_plugins()
    out = {}
    for name, _ in sorted(state.manager.list_name_plugin(), key=lambda item: str(item[0])):
        dist, version = state.distribution_of(name)
        out[str(name)] = {"distribution": dist, "version": version}
    return out


def session_record(start_step: int, world_size: int, device: str) -> dict[str, Any]:
    """The versions record of a training session starting at ``start_step``."""
    from semsegpaddle.core.common.version import __version__

    return {
        "start_step": start_step,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "semsegpaddle": __version__,
        "paddle": paddle_build(),
        "numpy": _installed("numpy"),
        "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
        "plugins": plugin_versions(),
        "device": device,
        "world_size": world_size,
    }
