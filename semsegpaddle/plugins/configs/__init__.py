"""semsegpaddle's packaged configs (the YAML files beside this module): registration.

Each ``<name>.yaml`` here is addressable by ``<name>`` (``semseg train NAME``, ``_base_: NAME``),
registered through the same hook as any plugin's configs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from semsegpaddle import hookimpl

CONFIG_DIR = Path(__file__).parent


@hookimpl
def semseg_register_configs(register: Callable[..., None]) -> None:
    """Register every YAML file of this folder under its file name without the suffix."""
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        register(path.stem, path)
