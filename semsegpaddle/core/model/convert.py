"""Convert a timm/torchvision ImageNet checkpoint into a backbone's own weights file (safetensors)."""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
from safetensors.numpy import save_file

from semsegpaddle.core.common.atomic import atomic_path
from semsegpaddle.core.common.errors import SemsegError, did_you_mean
from semsegpaddle.core.model.assembly import create_backbone
from semsegpaddle.core.model.weights import LoadReport, convert_state, match_state, read_checkpoint
from semsegpaddle.core.plugin.manager import get_registry


def convert_weights_file(name: str, source: str, destination: str, options: Mapping[str, Any] | None = None,
                         *, allow_missing: bool = False) -> LoadReport:
    """Convert a timm/torchvision checkpoint to backbone ``name``'s parameters and save .safetensors.

    The backbone is built with ``options`` to check every name and shape; the output is written
    atomically and records the backbone name and options in its metadata.
    """
    options = dict(options or {})
    component = get_registry("backbone").get(name)
    valid = [o.name for o in component.options]
    for key in options:
        if key not in valid:
            raise SemsegError(f"unknown option '{key}' for backbone '{name}'{did_you_mean(key, valid)}; "
                              f"valid options: {', '.join(valid) or 'none'}")
    backbone = create_backbone(name, **options)
    converted = convert_state(component, read_checkpoint(source), options)
    usable, report = match_state(backbone, converted)
    if report.mismatched or (report.missing and not allow_missing):
        raise SemsegError(f"{source}: cannot convert to backbone '{name}': " + report.summary().replace("\n", "; "))
    metadata = {"format": "semsegpaddle-backbone", "backbone": name, "options": json.dumps(options),
                "source": str(source)}
    with atomic_path(destination) as tmp:
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in usable.items()}, str(tmp),
                  metadata=metadata)
    return report
