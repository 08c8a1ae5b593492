"""The training objective: registered losses applied to each model output, weighted and summed.

``loss.main`` lists the losses of the main logits and ``loss.aux`` those of every auxiliary pixel
output (the FCN auxiliary head, a decoder's pixel aux outputs); each entry is a registered loss
with a ``weight`` and its options. An auxiliary output whose decoder names its own loss (GINet's
semantic context) is scored by that loss alone. Each output's sum is then weighted by the
output's weight (``model.loss_weights``: 1 for the main output, the aux weights after it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import paddle

from semsegpaddle.core.plugin.build import build_component
from semsegpaddle.core.plugin.manager import get_registry
from semsegpaddle.core.config.schema import SCHEMA

LossFn = Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]


@dataclass
class WeightedLoss:
    """One configured loss: its name, weight and callable."""

    name: str
    weight: float
    function: LossFn


def build_loss_list(config: dict[str, Any], key: str, ignore_index: int,
                    overrides: Mapping[str, dict[str, Any]] | None = None) -> list[WeightedLoss]:
    """The losses configured at ``loss.<key>`` (``main`` or ``aux``), built for ``ignore_index``;
    ``overrides`` maps a section (``loss.main.0``) to options replacing its own."""
    extra = tuple(SCHEMA["loss"][key].extra)
    overrides = overrides or {}
    return [WeightedLoss(entry["name"], float(entry["weight"]),
                         build_component(config, f"loss.{key}.{index}", "loss", ignore_index, extra=extra,
                                         overrides=overrides.get(f"loss.{key}.{index}")))
            for index, entry in enumerate(config["loss"][key])]


class SegmentationLoss:
    """Σ_outputs output_weight · Σ_losses loss_weight · loss(output, label)."""

    def __init__(self, main: Sequence[WeightedLoss], aux: Sequence[WeightedLoss], output_weights: Sequence[float],
                 output_losses: Sequence[str | None], ignore_index: int) -> None:
        self.output_weights = tuple(output_weights)
        self.per_output: list[list[WeightedLoss]] = [list(main)]
        for name in output_losses[1:]:
            if name is None:
                self.per_output.append(list(aux))
            else:
                factory = get_registry("loss").get(name).factory
                self.per_output.append([WeightedLoss(name, 1.0, factory(ignore_index))])

    def __call__(self, outputs: Sequence[paddle.Tensor], label: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
        """The total loss and each output's (unweighted) loss, detached: read them (a host sync
        each) only when they are logged."""
        if len(outputs) != len(self.per_output):
            raise RuntimeError(f"the model returned {len(outputs)} outputs in training, its loss plan has "
                               f"{len(self.per_output)} (main + declared auxiliary outputs)")
        terms = []
        for output, losses in zip(outputs, self.per_output):
            terms.append(paddle.add_n([loss.weight * loss.function(output, label) for loss in losses]))
        total = paddle.add_n([w * t for w, t in zip(self.output_weights, terms)])
        return total, [t.detach() for t in terms]


def create_loss(config: dict[str, Any], model: Any, ignore_index: int,
                overrides: Mapping[str, dict[str, Any]] | None = None) -> SegmentationLoss:
    """The objective for ``model`` (its ``loss_weights`` and ``output_losses``) from the config.

    ``overrides`` replaces options of loss sections, by dotted key: the engine gives the class
    weights computed from the data for sections saying ``class_weights: auto``.
    """
    return SegmentationLoss(build_loss_list(config, "main", ignore_index, overrides),
                            build_loss_list(config, "aux", ignore_index, overrides),
                            model.loss_weights, model.output_losses, ignore_index)
