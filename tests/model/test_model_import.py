"""Importing a whole foreign model through its components' declared names (weight_sources)."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.assembly import build_model
from semsegpaddle.core.model.model_import import import_weights
from tests.helpers.foreign import as_other, import_config, logits, randomised


def test_a_foreign_checkpoint_loads_by_declared_names_and_gives_the_same_logits(import_plugins):
    config = import_config()
    reference = build_model(config, 3, pretrained=False)
    state = randomised(reference)
    reference.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    ours_names = set(build_model(config, 3, pretrained=False).state_dict())
    assert ours_names - set(state) == {"mean", "std"}  # the input normalisation comes from the config
    foreign = {**as_other(state), "net.optimizer.momentum": np.zeros(3, np.float32)}
    ours = build_model(config, 3, pretrained=False)
    report = import_weights(ours, foreign, config)
    assert report.source == "other"
    assert sorted(report.loaded) == sorted(ours_names - {"mean", "std"})
    assert report.unused == ["net.optimizer.momentum"]
    np.testing.assert_array_equal(logits(ours), logits(reference))

def test_our_own_names_are_loaded_as_native(import_plugins):
    config = import_config()
    model = build_model(config, 3, pretrained=False)
    state = randomised(model)
    report = import_weights(build_model(config, 3, pretrained=False), state, config)
    assert report.source == "native" and not report.unused and sorted(report.loaded) == sorted(state)


def test_another_class_count_reinitialises_only_the_classifiers_for_fine_tuning(import_plugins):
    config = import_config()
    source = as_other(randomised(build_model(config, 5, pretrained=False)))
    model = build_model(config, 3, pretrained=False)
    fresh = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    report = import_weights(model, source, config, allow_class_change=True)
    assert sorted(report.reinitialised) == ["aux_head.classifier.bias", "aux_head.classifier.weight",
                                            "decoder.classifier.bias", "decoder.classifier.weight"]
    after = model.state_dict()
    np.testing.assert_array_equal(after["decoder.classifier.weight"].numpy(), fresh["decoder.classifier.weight"])
    np.testing.assert_array_equal(after["backbone.stem.weight"].numpy(), source["net.encoder.stem.weight"])
    assert "re-initialised 4" in report.summary()


def test_another_class_count_is_refused_where_the_classes_must_match(import_plugins):
    config = import_config()
    source = as_other(randomised(build_model(config, 5, pretrained=False)))
    with pytest.raises(SemsegError, match=r"m\.pdparams: other weights do not fit.*shape mismatch 4"):
        import_weights(build_model(config, 3, pretrained=False), source, config, origin="m.pdparams",
                       allow_class_change=False)


def test_missing_tensors_are_named(import_plugins):
    config = import_config()
    source = as_other(randomised(build_model(config, 3, pretrained=False)))
    del source["net.encoder.stages.1.weight"]
    with pytest.raises(SemsegError, match=r"missing 1 \(backbone\.stages\.1\.weight\)"):
        import_weights(build_model(config, 3, pretrained=False), source, config)


def test_a_file_of_no_known_format_is_refused_with_the_reason(import_plugins):
    config = import_config()
    with pytest.raises(SemsegError, match="no net.head.\\* tensors"):
        import_weights(build_model(config, 3, pretrained=False), {"conv.weight": np.zeros((1,), np.float32)}, config)


def test_torch_batchnorm_names_are_normalised(import_plugins):
    config = import_config()
    state = randomised(build_model(config, 3, pretrained=False))
    torch_style = {}
    for key, value in as_other(state).items():
        key = key.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        torch_style[key] = value
    torch_style["net.encoder.bn.num_batches_tracked"] = np.zeros((), np.int64)
    assert any(k.endswith("running_var") for k in torch_style)
    model = build_model(config, 3, pretrained=False)
    report = import_weights(model, torch_style, config)
    assert report.source == "other" and report.unused == []  # the step counter is no model tensor
    np.testing.assert_array_equal(model.state_dict()["aux_head.conv.1._variance"].numpy(),
                                  torch_style["net.aux.conv.1.running_var"])
