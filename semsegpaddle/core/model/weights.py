"""Import ImageNet weights: read timm/torchvision checkpoints, convert names, load into backbones.

A backbone plugin may register ``convert_weights=fn`` where ``fn(state, options)`` maps a
reference state dict (name -> numpy array) to the backbone's own parameter names. The generic
part every converter needs — torch BatchNorm buffer names, dropping ``num_batches_tracked`` — is
:func:`torch_to_paddle_names`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from semsegpaddle.core.common.errors import SemsegError

_BN_RENAMES = {"running_mean": "_mean", "running_var": "_variance"}


@dataclass
class LoadReport:
    """What happened when a state dict was matched against a model."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[str] = field(default_factory=list)  # same name, other shape

    @property
    def ok(self) -> bool:
        """True when every model parameter was loaded and nothing was left over or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """A short multi-line text naming the problems (at most 10 keys per list)."""
        lines = [f"loaded {len(self.loaded)} tensors"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
                lines.append(f"{label} ({len(keys)}): {shown}")
        return "\n".join(lines)


def torch_to_paddle_names(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename torch BatchNorm buffers to Paddle's and drop ``num_batches_tracked``."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        head, _, leaf = key.rpartition(".")
        leaf = _BN_RENAMES.get(leaf, leaf)
        out[f"{head}.{leaf}" if head else leaf] = value
    return out


def drop_prefixes(state: Mapping[str, np.ndarray], prefixes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Remove every key starting with one of ``prefixes`` (e.g. a classifier's ``fc.``)."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A timm/torchvision (or any) weights file as numpy arrays, read by
    :func:`semsegpaddle.core.model.weight_files.read_weights`: ``.safetensors``, ``.pdparams`` and torch
    ``.pth``/``.pt``/``.bin``, without running pickle code and without importing torch or paddle."""
    from semsegpaddle.core.model.weight_files import read_weights

    if str(path).endswith(".safetensors"):
        from safetensors.numpy import load_file

        if not os.path.isfile(path):
            raise SemsegError(f"weights file not found: {path}")
        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise SemsegError(f"{path}: not a readable safetensors file ({exc})") from None
    return read_weights(path)


def match_state(model: Any, state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Pair ``state`` with ``model.state_dict()`` by name and shape; return what fits and a report."""
    own = model.state_dict()
    report = LoadReport()
    usable: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(np.shape(value)):
            report.mismatched.append(f"{key} {tuple(np.shape(value))} vs {tuple(own[key].shape)}")
        else:
            usable[key] = value
            report.loaded.append(key)
    report.missing = [k for k in own if k not in state]
    return usable, report


def convert_state(component: Any, state: Mapping[str, np.ndarray], options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Convert a reference state dict with the backbone component's registered converter."""
    converter = component.extras.get("convert_weights")
    if converter is None:
        raise SemsegError(f"backbone '{component.name}' cannot import foreign weights "
                          f"(its plugin registers no convert_weights)")
    return converter(dict(state), dict(options))


def load_into(model: Any, state: Mapping[str, np.ndarray], *, strict: bool = True, source: str = "") -> LoadReport:
    """Load ``state`` into ``model``; with ``strict`` any missing/unexpected/mismatched key raises."""
    usable, report = match_state(model, state)
    if strict and not report.ok:
        raise SemsegError(f"{source or 'weights'} do not fit the model: " + report.summary().replace("\n", "; "))
    own = model.state_dict()
    with warnings.catch_warnings():  # Paddle warns once per tensor left out; the report names them
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(
            {k: np.asarray(v, dtype=str(own[k].dtype).replace("paddle.", "")) for k, v in usable.items()}
        )
    return report


def _looks_native(model: Any, state: Mapping[str, np.ndarray]) -> bool:
    own = model.state_dict()
    return sum(k in own for k in state) >= 0.9 * max(len(own), 1)


#: input bands of the images ImageNet weights were trained on
RGB_BANDS = 3


def adapt_input_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """An RGB first-conv kernel (O×3×kh×kw) made to take ``in_channels`` bands, as timm does:
    one band gets the sum over R, G, B; more bands repeat R, G, B cyclically (cut to
    ``in_channels``) scaled by 3 / ``in_channels``, so a constant input gives the same response."""
    weight = np.asarray(weight, dtype=np.float32)
    if in_channels == RGB_BANDS:
        return weight
    if in_channels == 1:
        return weight.sum(axis=1, keepdims=True)
    repeats = -(-in_channels // RGB_BANDS)
    return np.tile(weight, (1, repeats, 1, 1))[:, :in_channels] * (RGB_BANDS / in_channels)


def adapt_input_convs(model: Any, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` with every RGB conv kernel adapted (:func:`adapt_input_conv`) where ``model``'s
    tensor of that name takes another number of bands and is otherwise the same shape: the first
    conv of a backbone built for ``model.in_channels`` ≠ 3."""
    own = model.state_dict()
    adapted = dict(state)
    for key, value in state.items():
        target = tuple(own[key].shape) if key in own else None
        shape = tuple(np.shape(value))
        if (target is not None and len(shape) == 4 and len(target) == 4 and shape[1] == RGB_BANDS
                and target[1] != RGB_BANDS and shape[0] == target[0] and shape[2:] == target[2:]):
            adapted[key] = adapt_input_conv(value, target[1])
    return adapted


def load_backbone_pretrained(backbone: Any, name: str, path: str, options: Mapping[str, Any]) -> LoadReport:
    """Load ``path`` into ``backbone``: our own converted file as is, a timm/torchvision one converted.

    Every backbone parameter must be found; leftovers (e.g. a classifier) are reported, not fatal.
    A backbone built for other than 3 input bands gets its RGB first conv adapted
    (:func:`adapt_input_conv`).
    """
    from semsegpaddle.core.plugin.manager import get_registry

    state = read_checkpoint(path)
    if not _looks_native(backbone, state):
        state = convert_state(get_registry("backbone").get(name), state, options)
    state = adapt_input_convs(backbone, state)
    usable, report = match_state(backbone, state)
    if report.missing or report.mismatched:
        raise SemsegError(f"{path}: weights do not fit backbone '{name}' with these options: "
                          + report.summary().replace("\n", "; "))
    load_into(backbone, usable, strict=False)
    return report
