"""What the decoder heads share: picking a backbone level, validating simple option values, and
naming the tensors of foreign checkpoints (PaddleSeg, torchvision) for their ``weight_sources``.

Option errors are ValueErrors naming the option as ``option=value``, which the config layer turns
into a one-line message pointing at the key that set it. Weight-name errors are one-line
:class:`SemsegError`s. Nothing here imports paddle: registration modules use it.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Mapping, Sequence

from semsegpaddle.core.common.errors import SemsegError


def level_index(feature_info: Sequence, option: str, index: int) -> int:
    """``index`` into the backbone's levels (negative counts from the deepest), as a non-negative int."""
    count = len(feature_info)
    if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
        raise ValueError(f"{option}={index!r} is out of range: the backbone returns {count} levels "
                         f"(use 0..{count - 1}, or -1 for the deepest)")
    return index % count


def nearest_stride_level(feature_info: Sequence, stride: int) -> int:
    """The level whose stride is closest to ``stride`` (the shallower one on a tie)."""
    return min(range(len(feature_info)), key=lambda i: (abs(feature_info[i].stride - stride), i))


def check_positive(option: str, value: int) -> None:
    """``value`` must be an integer ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}={value!r} must be a positive integer")


def check_positive_list(option: str, values: Sequence[int]) -> list[int]:
    """``values`` must be a non-empty list of integers ≥ 1; returned as a list."""
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{option}={values!r} must be a non-empty list of positive integers")
    return values


def check_dropout(value: float) -> None:
    """A dropout probability must lie in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout={value!r} must lie in [0, 1)")


def check_choice(option: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{option}={value!r} must be one of {expected}")


def check_bool(option: str, value: Any) -> None:
    """``value`` must be true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"{option}={value!r} must be true or false")


# -------------------------------------------------------------------------------------------------
# foreign checkpoint names (weight sources)
# -------------------------------------------------------------------------------------------------

#: a BatchNorm's tensors as Paddle names them (the core renames torch's running statistics to these)
BATCHNORM_TENSORS = ("weight", "bias", "_mean", "_variance")


def conv_names(ours: str, source: str, bias: bool = True) -> dict[str, str]:
    """A conv at ``ours`` taken from the source's conv ``source`` (weight, and bias if ``bias``)."""
    names = {f"{ours}.weight": f"{source}.weight"}
    if bias:
        names[f"{ours}.bias"] = f"{source}.bias"
    return names


def conv_bn_names(ours: str, conv: str, norm: str, bias: bool) -> dict[str, str]:
    """Our conv-BN(-ReLU) block at ``ours`` (conv ``ours.0``, BatchNorm ``ours.1``) from the source's
    conv ``conv`` and BatchNorm ``norm``."""
    names = conv_names(f"{ours}.0", conv, bias)
    names.update({f"{ours}.1.{tensor}": f"{norm}.{tensor}" for tensor in BATCHNORM_TENSORS})
    return names


def aux_head_names(keys: Sequence[str], conv: str, norm: str, classifier: str) -> dict[str, str]:
    """The core's FCN auxiliary head (``aux_head.*``) from the source's auxiliary 3×3 conv, BatchNorm
    and 1×1 classifier; the conv's bias only when the source has one (``model.aux.conv_bias: true``).
    Empty when the checkpoint has no auxiliary head."""
    present = set(keys)
    if f"{conv}.weight" not in present:
        return {}
    names = conv_bn_names("aux_head.conv", conv, norm, bias=f"{conv}.bias" in present)
    names.update(conv_names("aux_head.classifier", classifier))
    return names


def paddleseg_aux_names(keys: Sequence[str], aux: str = "head.auxlayer") -> dict[str, str]:
    """The core's FCN auxiliary head from PaddleSeg's ``AuxLayer`` at ``aux`` (conv-BN-ReLU, then a
    1×1 conv); empty when the checkpoint has none."""
    return aux_head_names(keys, f"{aux}.conv_bn_relu._conv", f"{aux}.conv_bn_relu._batch_norm", f"{aux}.conv")


def torchvision_aux_names(keys: Sequence[str]) -> dict[str, str]:
    """The core's FCN auxiliary head from torchvision's ``aux_classifier`` (an FCNHead on layer3)."""
    return aux_head_names(keys, "aux_classifier.0", "aux_classifier.1", "aux_classifier.4")


def indexed_count(keys: Sequence[str], prefix: str) -> int:
    """How many consecutive children ``prefix0.``, ``prefix1.``, ... the keys hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for m in map(pattern.match, keys) if m}
    count = 0
    while count in found:
        count += 1
    return count


def with_defaults(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The factory's keyword defaults, overridden by the options a config wrote."""
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **{k: v for k, v in options.items() if k in defaults}}


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def require_options(source: str, options: Mapping[str, Any], **expected: Any) -> None:
    """Raise a one-line SemsegError unless every option in ``expected`` has that value: the options
    that change what the head computes, not its tensor shapes, so a wrong one would load silently."""
    wrong = [name for name, value in expected.items() if options.get(name) != value]
    if wrong:
        need = ", ".join(f"{name}: {_yaml(expected[name])}" for name in wrong)
        have = ", ".join(f"{name}: {_yaml(options.get(name))}" for name in wrong)
        raise SemsegError(f"{source} weights need decoder options {need} (the config gives {have})")


def checked_names(names: dict[str, str], keys: Sequence[str], source: str) -> dict[str, str]:
    """``names`` if every source tensor it takes is in ``keys``; else a one-line SemsegError."""
    present = set(keys)
    missing = [key for key in names.values() if key not in present]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SemsegError(f"these are not {source} weights for this decoder: no tensor '{missing[0]}'{more}")
    return names
