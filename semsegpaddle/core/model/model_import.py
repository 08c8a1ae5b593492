"""Load a whole trained model from another framework's checkpoint (PaddleSeg, torchvision, ...).

A backbone or decoder plugin declares, per source format, how that source names its tensors:
``register(..., weight_sources={"paddleseg": names_fn})`` with ``names_fn(keys, options)`` returning
``{our local name: source key}`` (a decoder's map may also fill the model's FCN auxiliary head
through names starting with ``aux_head.``). This module picks the format whose maps fill the model,
checks every shape, re-initialises the classifier when the source predicts another number of classes
(the fine-tuning path), and reports every source tensor it did not use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.weights import RGB_BANDS, adapt_input_conv, load_into, torch_to_paddle_names
from semsegpaddle.core.plugin.build import component_options
from semsegpaddle.core.plugin.manager import get_registry

#: the part of the model each component's names live under (the decoder's ``aux_head.`` names excepted)
PREFIXES = {"backbone": "backbone.", "decoder": "decoder."}
AUX_HEAD = "aux_head."


@dataclass
class ImportReport:
    """What importing a foreign checkpoint did."""

    source: str  # the format that matched ("native" for our own names)
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)  # classifier tensors of another class count
    adapted: list[str] = field(default_factory=list)  # RGB input kernels made to take model.in_channels bands
    unused: list[str] = field(default_factory=list)  # source tensors nothing consumed
    bands: int = RGB_BANDS  # the model's input bands

    def summary(self) -> str:
        """One line: format, tensors loaded, re-initialised and left unused (first few named)."""
        parts = [f"{self.source} weights: loaded {len(self.loaded)} tensors"]
        if self.adapted:
            parts.append(f"adapted the RGB input conv to {self.bands} bands ({', '.join(self.adapted)})")
        if self.reinitialised:
            parts.append(f"re-initialised {len(self.reinitialised)} of another class count "
                         f"({', '.join(self.reinitialised[:4])}): fine-tune them")
        if self.unused:
            shown = ", ".join(self.unused[:5]) + (" ..." if len(self.unused) > 5 else "")
            parts.append(f"{len(self.unused)} source tensors unused ({shown})")
        return "; ".join(parts)


def _sources(kind: str, name: str) -> Mapping[str, Callable[..., dict[str, str]]]:
    return get_registry(kind).get(name).extras.get("weight_sources") or {}


def _mapping(config: dict[str, Any], keys: list[str], source: str) -> dict[str, str]:
    """{model name: source key} from the backbone's and decoder's names functions for ``source``."""
    from semsegpaddle.core.config.schema import SCHEMA

    model_cfg = config["model"]
    mapping: dict[str, str] = {}
    for kind in ("backbone", "decoder"):
        section = model_cfg[kind]
        extra = SCHEMA["model"][kind].extra
        names = _sources(kind, section["name"])[source](keys, component_options(section, extra))
        for local, key in names.items():
            target = local if kind == "decoder" and local.startswith(AUX_HEAD) else PREFIXES[kind] + local
            mapping[target] = key
    return mapping


def detect_source(config: dict[str, Any], state: Mapping[str, np.ndarray], own: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The format whose names fill the most of the model's tensors: ``native`` (our own names), or
    one that both the backbone and the decoder declare; ``native`` wins a tie. Raises when none
    fills any tensor."""
    backbone, decoder = config["model"]["backbone"]["name"], config["model"]["decoder"]["name"]
    formats = sorted(set(_sources("backbone", backbone)) & set(_sources("decoder", decoder)))
    keys = sorted(state)
    candidates = [("native", {k: k for k in own if k in state})]
    problems = []
    for source in formats:
        try:
            candidates.append((source, _mapping(config, keys, source)))
        except SemsegError as exc:
            problems.append(f"{source}: {exc}")
    scored = [(sum(1 for k, v in mapping.items() if k in own and v in state), -index, source, mapping)
              for index, (source, mapping) in enumerate(candidates)]
    covered, _, source, mapping = max(scored)
    if covered < len(own) and problems:  # a format that knew the file refused it: its reason matters most
        raise SemsegError("; ".join(problems))
    if covered == 0:
        tried = "; ".join(problems) or f"formats tried: {', '.join(formats) or 'none declared'}"
        raise SemsegError(f"the weights match neither this model's names nor a format that backbone "
                          f"'{backbone}' and decoder '{decoder}' both import ({tried})")
    return source, mapping


def _is_input_conv(name: str, own_shape: tuple[int, ...], source_shape: tuple[int, ...], bands: int) -> bool:
    """A backbone's RGB input kernel where the model takes ``bands`` ≠ 3: the same O×·×kh×kw shape
    but for the input axis."""
    return (bands != RGB_BANDS and name.startswith(PREFIXES["backbone"]) and len(own_shape) == 4
            and len(source_shape) == 4 and source_shape[1] == RGB_BANDS and own_shape[1] == bands
            and own_shape[0] == source_shape[0] and own_shape[2:] == source_shape[2:])


def _is_class_axis(own_shape: tuple[int, ...], source_shape: tuple[int, ...], num_classes: int) -> bool:
    """A classifier tensor: same shape but for the first axis, which is the model's class count."""
    return (len(own_shape) == len(source_shape) and own_shape[0] == num_classes
            and own_shape[1:] == source_shape[1:] and own_shape[0] != source_shape[0])


def import_weights(model: Any, state: Mapping[str, np.ndarray], config: dict[str, Any], *,
                   origin: str = "weights", allow_class_change: bool = True) -> ImportReport:
    """Load ``state`` (our names, or a format the model's components declare) into ``model``.

    Every model tensor must be filled with its own shape, except the classifier's when the source
    has another number of classes and ``allow_class_change``: those keep their fresh initialisation
    and are listed in the report. A model built for ``model.in_channels`` ≠ 3 takes the source's RGB
    input conv adapted to its bands (:func:`~semsegpaddle.core.model.weights.adapt_input_conv`, as
    timm does). Source tensors no model tensor took are reported, not fatal.
    """
    state = torch_to_paddle_names(state) if any(k.endswith(("running_mean", "running_var")) for k in state) else dict(state)
    # the model's own buffers (the input normalisation) come from the config, not from weights
    own = {k: v for k, v in model.state_dict().items() if k.startswith((*PREFIXES.values(), AUX_HEAD))}
    source, mapping = detect_source(config, state, own)
    report = ImportReport(source, bands=int(getattr(model, "in_channels", RGB_BANDS)))
    usable: dict[str, np.ndarray] = {}
    missing, mismatched = [], []
    for name, tensor in own.items():
        key = mapping.get(name)
        if key is None or key not in state:
            missing.append(name)
            continue
        want, have = tuple(tensor.shape), tuple(np.shape(state[key]))
        if want == have:
            usable[name] = state[key]
            report.loaded.append(name)
        elif _is_input_conv(name, want, have, report.bands):
            usable[name] = adapt_input_conv(state[key], report.bands)
            report.adapted.append(name)
            report.loaded.append(name)
        elif allow_class_change and _is_class_axis(want, have, getattr(model, "num_classes", -1)):
            report.reinitialised.append(name)
        else:
            mismatched.append(f"{name} {want} vs {key} {have}")
    if missing or mismatched:
        detail = "; ".join(filter(None, [
            f"missing {len(missing)} ({', '.join(missing[:5])})" if missing else "",
            f"shape mismatch {len(mismatched)} ({', '.join(mismatched[:3])})" if mismatched else ""]))
        raise SemsegError(f"{origin}: {source} weights do not fit this model's options: {detail}")
    consumed = {mapping[name] for name in report.loaded + report.reinitialised}
    report.unused = sorted(k for k in state if k not in consumed)
    load_into(model, usable, strict=False)
    return report
