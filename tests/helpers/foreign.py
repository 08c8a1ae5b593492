"""An in-memory plugin whose backbone and head declare how an imaginary "other" framework names their
tensors, and helpers that make such foreign checkpoints: the test bed of whole-model import."""
from __future__ import annotations

import numpy as np
import paddle
from paddle import nn

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.config.loader import config_from_dict
from semsegpaddle.core.model.interfaces import Decoder
from tests.helpers.tiny import TinyBackbone, TwoSquares


#: how the imaginary "other" framework names the model's parts
OTHER = {"backbone.": "net.encoder.", "decoder.": "net.head.", "aux_head.": "net.aux."}


class TinyHead(Decoder):
    """A 1×1 classifier on the deepest level."""

    def __init__(self, feature_info, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2D(feature_info[-1].channels, num_classes, 1)

    def forward(self, features):
        return self.classifier(features[-1])


def backbone_names(keys, options):
    """Our backbone name -> the other framework's (every key under net.encoder.)."""
    prefix = OTHER["backbone."]
    return {k[len(prefix):]: k for k in keys if k.startswith(prefix)}


def head_names(keys, options):
    """Our decoder name -> the other framework's; its auxiliary head fills the model's aux head."""
    names = {k[len(OTHER["decoder."]):]: k for k in keys if k.startswith(OTHER["decoder."])}
    names.update({"aux_head." + k[len(OTHER["aux_head."]):]: k for k in keys if k.startswith(OTHER["aux_head."])})
    if not names:
        raise SemsegError("no net.head.* tensors: not a checkpoint of the other framework")
    return names


class ImportPlugin:
    @hookimpl
    def semseg_register_backbones(self, register):
        register("tiny_imp", TinyBackbone, options={"width": "channels"}, weight_sources={"other": backbone_names})

    @hookimpl
    def semseg_register_decoders(self, register):
        register("tiny_head", TinyHead, options={}, weight_sources={"other": head_names})

    @hookimpl
    def semseg_register_datasets(self, register):
        register("two_squares_imp", TwoSquares, options={"size": "side", "count": "samples"})


def import_config(aux: bool = True):
    return config_from_dict({"model": {"backbone": {"name": "tiny_imp"}, "decoder": {"name": "tiny_head"},
                                       "aux": {"level": 2 if aux else None, "channels": 8}},
                             "dataset": {"name": "two_squares_imp"}})


def randomised(model) -> dict[str, np.ndarray]:
    """The model's state with random values everywhere (BN statistics too, variances positive)."""
    rng = np.random.default_rng(0)
    state = {}
    for name, tensor in model.state_dict().items():
        if name in ("mean", "std"):  # the input normalisation: from the config, not from weights
            continue
        shape = tuple(tensor.shape)
        state[name] = (rng.uniform(0.5, 2.0, shape) if name.endswith("_variance") else rng.normal(0, 0.5, shape)).astype(np.float32)
    return state


def as_other(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in state.items():
        ours = next(p for p in OTHER if name.startswith(p))
        out[OTHER[ours] + name[len(ours):]] = value
    return out


def logits(model, seed: int = 1) -> np.ndarray:
    x = paddle.to_tensor(np.random.default_rng(seed).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32))
    model.eval()
    with paddle.no_grad():
        return model(x).numpy()
