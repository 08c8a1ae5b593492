"""The configured objective: losses per output, their weights, and outputs scored by a named loss."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from semsegpaddle.core.config.loader import config_from_dict, load_config
from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.model.losses import create_loss
from semsegpaddle.core.plugin.manager import get_registry


class FakeModel:
    def __init__(self, loss_weights, output_losses):
        self.loss_weights, self.output_losses = loss_weights, output_losses


def loss_of(name, output, label, **options):
    return float(get_registry("loss").get(name).factory(255, **options)(output, label))


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (2, 8, 8))
    label[0, :2] = 255
    outputs = [paddle.to_tensor(rng.normal(size=(2, 4, 8, 8)).astype("float32")) for _ in range(2)]
    context = paddle.to_tensor(rng.normal(size=(2, 4)).astype("float32"))
    return outputs, context, paddle.to_tensor(label)


def test_losses_are_weighted_per_loss_and_per_output(batch):
    (main, aux), context, label = batch
    config = load_config(None, ["loss.main=[{name: cross_entropy}, {name: dice, weight: 0.5}]",
                                "loss.aux=[{name: lovasz_softmax, weight: 2.0}]"])
    criterion = create_loss(config, FakeModel((1.0, 0.2, 0.4), (None, "semantic_context", None)), 255)
    total, terms = criterion([main, context, aux], label)
    expected_main = loss_of("cross_entropy", main, label) + 0.5 * loss_of("dice", main, label)
    expected_context = loss_of("semantic_context", context, label)
    expected_aux = 2.0 * loss_of("lovasz_softmax", aux, label)
    assert [float(t) for t in terms] == pytest.approx([expected_main, expected_context, expected_aux], rel=1e-5)
    assert float(total) == pytest.approx(expected_main + 0.2 * expected_context + 0.4 * expected_aux, rel=1e-5)


def test_default_objective_is_cross_entropy_everywhere(batch):
    (main, aux), _, label = batch
    criterion = create_loss(load_config(), FakeModel((1.0, 0.4), (None, None)), 255)
    total, _ = criterion([main, aux], label)
    ce = loss_of("cross_entropy", main, label) + 0.4 * loss_of("cross_entropy", aux, label)
    assert float(total) == pytest.approx(ce, rel=1e-5)


def test_loss_options_are_validated_like_components():
    with pytest.raises(ConfigError, match="loss.main.0.thresh.*expects float"):
        load_config(None, ["loss.main=[{name: ohem_cross_entropy, thresh: high}]"])
    with pytest.raises(ConfigError, match="unknown loss 'lovasz'"):
        load_config(None, ["loss.aux=[lovasz]"])
    config = load_config(None, ["loss.main=ohem_cross_entropy"])  # a bare name is a one-entry list
    assert config["loss"]["main"] == [{"name": "ohem_cross_entropy", "weight": 1.0, "thresh": 0.7,
                                       "min_kept": 100000, "class_weights": None,
                                       "class_weights_method": "inverse_frequency", "class_weights_max": 10.0,
                                       "class_weights_enet_c": 1.02}]


def test_a_model_with_more_outputs_than_planned_is_an_error(batch):
    (main, aux), _, label = batch
    criterion = create_loss(load_config(), FakeModel((1.0,), (None,)), 255)
    with pytest.raises(RuntimeError, match="returned 2 outputs"):
        criterion([main, aux], label)


def test_training_uses_the_configured_losses(tmp_path, tiny_plugins):
    from semsegpaddle.api import train

    from tests.helpers.tiny import TINY_CONFIG

    data = json.loads(json.dumps(TINY_CONFIG))
    data.update({"runtime": {**data["runtime"], "output_dir": str(tmp_path)},
                 "loss": {"main": [{"name": "ohem_cross_entropy", "thresh": 0.9, "min_kept": 64},
                                   {"name": "lovasz_softmax", "weight": 0.5}]}})
    data["model"]["aux"] = {"level": 2, "weight": 0.4}
    data["train"]["log_interval"] = 1
    result = train(config_from_dict(data))
    assert len(result.losses) == 4 and all(np.isfinite(result.losses))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert all(len(record["terms"]) == 2 for record in log)
