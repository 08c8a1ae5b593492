"""The query options of ``POST /predict``, checked against the limits the server sets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.inference.segmenter import InferenceMode

__all__ = ["PredictQuery", "parse_query", "OPTIONS", "SCALE_RANGE"]

#: every query option /predict takes
OPTIONS = ("format", "mode", "scales", "flip", "alpha", "encoding", "include_mask")
FORMATS = ("png", "overlay", "json")
ENCODINGS = ("jpeg", "png")
#: scales a request may ask for
SCALE_RANGE = (0.25, 2.0)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class PredictQuery:
    """A request's checked options: the answer's format and the inference mode."""

    format: str
    mode: InferenceMode
    alpha: float
    encoding: str
    include_mask: bool


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SemsegError(f"{name}={text[:40]!r} is invalid: expected 1/0 (true/false)")


def _scales(text: str, max_views: int) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SemsegError(f"scales={text[:60]!r} is invalid: expected numbers separated by commas, e.g. 0.75,1,1.25") from None
    low, high = SCALE_RANGE
    if not scales or len(scales) > max_views or not all(low <= s <= high for s in scales):
        raise SemsegError(f"scales={text[:60]!r} is invalid: expected 1 to {max_views} numbers from {low:g} to {high:g}")
    return scales


def parse_query(params: Any, default: InferenceMode, crop_size: tuple[int, int] | None,
                stride: tuple[int, int] | None, max_views: int) -> PredictQuery:
    """The options of a query (a multi-dict with ``getlist``); unknown or repeated options and bad
    values are a one-line SemsegError. Options left out keep the server config's inference mode."""
    keys = list(params.keys())
    unknown = sorted({k for k in keys if k not in OPTIONS})
    if unknown:
        raise SemsegError(f"unknown query option {unknown[0][:40]!r}; expected some of {', '.join(OPTIONS)}")
    repeated = sorted({k for k in keys if len(params.getlist(k)) > 1})
    if repeated:
        raise SemsegError(f"query option {repeated[0]!r} is given more than once")
    given: Mapping[str, str] = {k: params[k] for k in keys}
    answer = given.get("format", "png")
    if answer not in FORMATS:
        raise SemsegError(f"format={answer[:40]!r} is invalid: expected one of {', '.join(FORMATS)}")
    encoding = given.get("encoding", "jpeg")
    if encoding not in ENCODINGS:
        raise SemsegError(f"encoding={encoding[:40]!r} is invalid: expected jpeg or png (format=overlay)")
    try:
        alpha = float(given.get("alpha", "0.5"))
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise SemsegError(f"alpha={given['alpha'][:40]!r} is invalid: expected a number from 0 (image only) to 1 (mask only)")
    mode_name = given.get("mode", default.mode)
    if mode_name not in ("whole", "slide"):
        raise SemsegError(f"mode={mode_name[:40]!r} is invalid: expected whole or slide")
    scales = _scales(given["scales"], max_views) if "scales" in given else default.scales
    flip = _flag("flip", given["flip"]) if "flip" in given else default.flip
    if len(scales) * (2 if flip else 1) > max_views:
        raise SemsegError(f"scales and flip ask for {len(scales) * (2 if flip else 1)} views; the server allows "
                          f"at most {max_views}")
    if mode_name == "slide" and crop_size is None:
        raise SemsegError("mode=slide needs eval.crop_size in the server's config (the window size)")
    mode = (InferenceMode(mode_name, crop_size if mode_name == "slide" else None,
                          stride if mode_name == "slide" else None, scales, flip)
            if (mode_name, scales, flip) != (default.mode, default.scales, default.flip) else default)
    include = _flag("include_mask", given["include_mask"]) if "include_mask" in given else False
    return PredictQuery(answer, mode, alpha, encoding, include)
