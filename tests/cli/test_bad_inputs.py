"""A corpus of bad inputs: each gives exit code 1 or 2, one line naming the culprit, no traceback,
and leaves an existing run folder exactly as it was."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from semsegpaddle.core.plugin import manager as plugin_module

from tests.helpers.tiny import TinyPlugin
from tests.helpers.cli import invoke

TINY = ["model.backbone.name=tiny", "model.decoder.channels=16", "dataset.name=two_squares",
        "train.crop_size=[32,32]", "train.scale_range=[1.0,1.0]", "train.batch_size=2", "train.iters=2",
        "eval.batch_size=2", "runtime.progress=false", "runtime.threads=2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny in-memory plugins, a finished run folder and a few files to misuse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugin_module.reset_plugins(plugin_module.new_state(plugins=[(TinyPlugin(), "tiny-test")]))
    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    result = invoke("train", *TINY, f"runtime.output_dir={run}")
    assert result.exit_code == 0, result.output
    files = root / "files"
    files.mkdir()
    (files / "trian.yaml").write_text("trian:\n  iters: 3\n")
    (files / "dup.yaml").write_text("train:\n  iters: 3\n  iters: 4\n")
    (files / "latin1.yaml").write_bytes("train:\n  iters: 3  # d\xe9j\xe0 vu\n".encode("latin-1"))
    (files / "broken.yaml").write_text("train: {iters: 3\n")
    (files / "list.yaml").write_text("- 1\n- 2\n")
    (files / "loop_a.yaml").write_text("_base_: loop_b.yaml\n")
    (files / "loop_b.yaml").write_text("_base_: loop_a.yaml\n")
    (files / "orphan.yaml").write_text("_base_: nowhere.yaml\n")
    (files / "notes.txt").write_text("not an image and not weights")
    (files / "fake.png").write_text("not a png")
    (files / "fake.safetensors").write_text("not safetensors")
    best = run / "model_best.safetensors"
    (files / "torn.safetensors").write_bytes(best.read_bytes()[:500])
    state = load_file(str(best))
    key = next(iter(state))
    poisoned = dict(state)
    poisoned[key] = np.full_like(state[key], np.nan)
    save_file(poisoned, str(files / "nan.safetensors"), metadata={"format": "semsegpaddle-model"})
    smaller = {k: v[..., :1] if v.ndim == 4 else v for k, v in state.items()}
    save_file(smaller, str(files / "other_model.safetensors"), metadata={"format": "semsegpaddle-model"})
    yield {"run": run, "files": files, "root": root}
    plugin_module.reset_plugins(None)


def R(*args):  # noqa: N802 - reads as a table below
    return list(args)


#: (id, argv with {run}/{files} placeholders, text the error line must contain, allowed exit codes)
CASES = [
    # config files
    ("unknown-top-level-key", R("config", "{files}/trian.yaml"), "trian", (1,)),
    ("duplicate-yaml-key", R("config", "{files}/dup.yaml"), "iters", (1,)),
    ("non-utf8-config", R("config", "{files}/latin1.yaml"), "latin1.yaml", (1,)),
    ("invalid-yaml", R("config", "{files}/broken.yaml"), "broken.yaml", (1,)),
    ("top-level-list", R("config", "{files}/list.yaml"), "list.yaml", (1,)),
    ("base-cycle", R("config", "{files}/loop_a.yaml"), "loop_a.yaml", (1,)),
    ("base-missing", R("config", "{files}/orphan.yaml"), "nowhere.yaml", (1,)),
    ("config-not-found", R("config", "{files}/missing.yaml"), "missing.yaml", (1,)),
    ("two-configs", R("config", "a.yaml", "b.yaml"), "a.yaml", (1, 2)),
    # overrides
    ("misspelled-key", R("config", "train.iter=5"), "iters", (1,)),
    ("synonym-key", R("config", "train.learning_rate=0.1"), "lr", (1,)),
    ("wrong-type", R("config", "train.iters=abc"), "train.iters", (1,)),
    ("negative-lr", R("config", "train.lr=-1"), "train.lr", (1,)),
    ("infinite-lr", R("config", "train.lr=.inf"), "train.lr", (1,)),
    ("nan-momentum", R("config", "train.momentum=.nan"), "train.momentum", (1,)),
    ("negative-seed", R("config", "runtime.seed=-1"), "runtime.seed", (1,)),
    ("negative-threads", R("config", "runtime.threads=-2"), "runtime.threads", (1,)),
    ("short-crop", R("config", "train.crop_size=[64]"), "train.crop_size", (1,)),
    ("inverted-scale-range", R("config", "train.scale_range=[2.0,1.0]"), "train.scale_range", (1,)),
    ("unknown-optimizer", R("config", "train.optimizer=adam"), "adamw", (1,)),
    ("empty-override-key", R("config", "=5"), "=5", (1, 2)),
    ("unknown-section", R("config", "trainer.iters=5"), "trainer", (1,)),
    ("unknown-backbone", R("config", "model.backbone.name=resnt"), "resnet", (1,)),
    ("unknown-backbone-option", R("config", "model.backbone.deep=50"), "model.backbone.deep", (1,)),
    ("bad-backbone-option-value", R("train", "model.backbone.name=resnet", "model.backbone.depth=51",
                                    *TINY[1:], "runtime.output_dir={run}", "--overwrite"), "depth", (1,)),
    ("unknown-decoder", R("config", "model.decoder.name=deeplab"), "deeplabv3", (1,)),
    ("unknown-dataset", R("config", "dataset.name=cityscape"), "dataset.name", (1,)),
    ("aux-level-out-of-range", R("train", *TINY, "model.aux.level=9", "runtime.output_dir={run}", "--overwrite"),
     "model.aux.level", (1,)),
    # the run folder
    ("fresh-run-into-existing-run", R("train", *TINY, "runtime.output_dir={run}"), "--resume", (1,)),
    ("resume-and-overwrite", R("train", *TINY, "runtime.output_dir={run}", "--resume", "--overwrite"),
     "--resume", (1, 2)),
    ("resume-with-other-optimizer", R("train", *TINY, "train.iters=4", "train.optimizer=adamw",
                                      "runtime.output_dir={run}", "--resume"), "optimizer", (1,)),
    ("resume-empty-folder", R("train", *TINY, "runtime.output_dir={root}/empty", "--resume"), "cannot resume", (1,)),
    ("output-dir-is-a-file", R("train", *TINY, "runtime.output_dir={files}/notes.txt"), "notes.txt", (1,)),
    ("negative-threads-option", R("train", *TINY, "runtime.output_dir={run}", "--threads", "-1"), "threads", (1, 2)),
    ("missing-pretrained", R("train", *TINY[1:], "model.backbone.name=resnet", "model.backbone.depth=18",
                             "model.backbone.pretrained={files}/absent.safetensors", "runtime.output_dir={run}",
                             "--overwrite"), "absent.safetensors", (1,)),
    # weights
    ("eval-missing-weights", R("eval", *TINY, "runtime.output_dir={run}", "--weights", "{files}/absent.safetensors"),
     "absent.safetensors", (1, 2)),
    ("eval-text-as-weights", R("eval", *TINY, "runtime.output_dir={run}", "--weights", "{files}/fake.safetensors"),
     "fake.safetensors", (1,)),
    ("eval-torn-weights", R("eval", *TINY, "runtime.output_dir={run}", "--weights", "{files}/torn.safetensors"),
     "torn.safetensors", (1,)),
    ("eval-nan-weights", R("eval", *TINY, "runtime.output_dir={run}", "--weights", "{files}/nan.safetensors"),
     "nan.safetensors", (1,)),
    ("eval-other-model", R("eval", *TINY, "runtime.output_dir={run}", "--weights", "{files}/other_model.safetensors"),
     "other_model.safetensors", (1,)),
    ("eval-unknown-split", R("eval", *TINY, "runtime.output_dir={run}", "--split", "tset"), "tset", (1,)),
    # predict and export
    ("predict-missing-image", R("predict", "{files}/absent.png", "--weights", "{run}/model_best.safetensors",
                                "--output", "{root}/masks"), "absent.png", (1, 2)),
    ("predict-unreadable-image", R("predict", "{files}/fake.png", "--weights", "{run}/model_best.safetensors",
                                   "--output", "{root}/masks"), "fake.png", (1,)),
    ("predict-output-is-a-file", R("predict", "{files}/fake.png", "--weights", "{run}/model_best.safetensors",
                                   "--output", "{files}/notes.txt"), "notes.txt", (1, 2)),
    ("predict-nan-weights", R("predict", "{files}/fake.png", "--weights", "{files}/nan.safetensors",
                              "--output", "{root}/masks"), "nan.safetensors", (1,)),
    ("export-text-as-weights", R("export", *TINY, "--weights", "{files}/fake.safetensors", "--output",
                                 "{root}/exported"), "fake.safetensors", (1,)),
    ("export-output-is-a-file", R("export", *TINY, "--weights", "{run}/model_best.safetensors", "--output",
                                  "{files}/notes.txt"), "notes.txt", (1, 2)),
    # other commands
    ("list-unknown-kind", R("list", "backbones"), "backbones", (2,)),
    ("convert-unknown-backbone", R("convert-weights", "resnt", "{files}/notes.txt", "{root}/w.safetensors"),
     "resnt", (1,)),
    ("convert-unknown-option", R("convert-weights", "resnet", "{files}/notes.txt", "{root}/w.safetensors",
                                 "-o", "deepth=50"), "deepth", (1,)),
    ("convert-missing-source", R("convert-weights", "resnet", "{files}/absent.pth", "{root}/w.safetensors"),
     "absent.pth", (2,)),
]


def folder_state(path):
    """Bytes and modification time of every file of the run (``.lock`` records who trained last)."""
    return {p.relative_to(path).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("name, argv, culprit, codes", CASES, ids=[case[0] for case in CASES])
def test_bad_input(world, name, argv, culprit, codes):
    paths = {k: str(v) for k, v in world.items()}
    args = [a.format(**paths) for a in argv]
    before = folder_state(world["run"])
    result = invoke(*args)
    assert result.exit_code in codes, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}"
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert culprit.format(**paths) in errors[0], errors[0]
    assert folder_state(world["run"]) == before, "the run folder changed"
    for stray in ("masks", "exported", "w.safetensors", "empty"):
        target = world["root"] / stray
        assert not target.exists() or not any(target.iterdir()) if target.is_dir() else not target.exists(), stray


def test_the_corpus_is_large():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)
