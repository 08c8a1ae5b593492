"""Helpers for parity tests against timm/torchvision references (test-only; needs torch + timm)."""
from __future__ import annotations

import numpy as np
import paddle

from semsegpaddle.core.model.weights import load_into


def torch_state_numpy(module) -> dict[str, np.ndarray]:
    """A torch module's state dict as numpy arrays."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def paddle_param_count(layer: paddle.nn.Layer) -> int:
    """Number of parameters (trainable or frozen), BatchNorm running statistics excluded.

    Paddle lists BatchNorm's ``_mean``/``_variance`` among ``named_parameters``; they are skipped.
    """
    return int(sum(np.prod(p.shape) for name, p in layer.named_parameters()
                   if not name.endswith(("._mean", "._variance"))))


def torch_param_count(module, exclude_prefixes: tuple[str, ...] = ()) -> int:
    """Number of parameters of a torch module, skipping names that start with ``exclude_prefixes``."""
    return int(sum(p.numel() for n, p in module.named_parameters() if not n.startswith(exclude_prefixes)))


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference| (the metric parity tests bound by 1e-4)."""
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(ours - reference).max()) / scale


def load_converted(ours: paddle.nn.Layer, converted: dict[str, np.ndarray]) -> None:
    """Load converted weights strictly: every parameter and buffer must be present and fit."""
    load_into(ours, converted, strict=True, source="converted reference weights")


def compare_features(ours_features, reference_features, tol: float = 1e-4) -> list[float]:
    """Relative error per level; asserts same count and shapes, and every error ≤ ``tol``."""
    assert len(ours_features) == len(reference_features), (len(ours_features), len(reference_features))
    errors = []
    for level, (a, b) in enumerate(zip(ours_features, reference_features)):
        a = a.numpy() if hasattr(a, "numpy") and not isinstance(a, np.ndarray) else a
        b = b.detach().numpy() if hasattr(b, "detach") else b
        assert a.shape == b.shape, f"level {level}: shape {a.shape} vs reference {b.shape}"
        errors.append(relative_error(a, b))
    assert max(errors) <= tol, f"relative errors per level {errors} exceed {tol}"
    return errors
