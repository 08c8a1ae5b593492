"""Build and pip-install small plugin packages for tests that need a real installed distribution."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.cli import semseg

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "semseg-example-plugin"


def write_package(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Write a package source tree: ``modules`` maps module name → source, ``entry_points`` name → module."""
    source = root / dist
    package = dist.replace("-", "_")
    (source / package).mkdir(parents=True)
    (source / package / "__init__.py").write_text("")
    for name, code in modules.items():
        (source / package / f"{name}.py").write_text(textwrap.dedent(code))
    points = [f"{name} = {package}.{module}" for name, module in entry_points.items()]
    (source / "setup.py").write_text(
        f"from setuptools import setup\nsetup(name={dist!r}, version='1.0', packages=[{package!r}],\n"
        f"      entry_points={{'semsegpaddle': {points!r}}})\n")
    return source


def pip_install(target: Path, *sources: Path) -> Path:
    """Install ``sources`` (no dependencies) into the folder ``target``, outside the test environment."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *map(str, sources)], check=True, capture_output=True)
    return target


FLAKY_DATASET = '''
    """A dataset whose sample ``bad_index`` is broken in the way ``failure`` names."""
    import numpy as np
    from semsegpaddle import hookimpl
    from semsegpaddle.core.data.base import SegDataset, default_palette


    class Flaky(SegDataset):
        num_classes = 3
        class_names = ("background", "a", "b")

        def __init__(self, split: str, *, bad_index: int = 3, failure: str = "raise", count: int = 8) -> None:
            self.split, self.bad, self.failure, self.count = split, bad_index, failure, count
            self.palette = default_palette(3)

        def __len__(self):
            return self.count

        def __getitem__(self, index):
            rng = np.random.default_rng([index, self.split == "val"])
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            label = (image[..., 0] // 86).astype(np.int64)
            if index == self.bad and self.split == "train":
                if self.failure == "raise":
                    raise RuntimeError("corrupt record in shard 7")
                if self.failure == "label":
                    label[0, 0] = 9
                if self.failure == "float":
                    label = label.astype(np.float32) + 0.5
            return image, label

        def describe(self, index):
            return f"flaky/{self.split}/{index:04d}.png"


    @hookimpl
    def semseg_register_datasets(register):
        register("flaky", Flaky, options={"bad_index": "index of the broken sample",
                                          "failure": "raise, label or float", "count": "samples per split"})
'''


def train_then_eval(tmp_path: Path, dataset_args: list[str], *, crop: int = 32, iters: int = 2,
                    eval_batch: int = 1) -> dict:
    """`semseg train` then `semseg eval` of a tiny ResNet-18 DeepLabv3 on a dataset, through the
    real CLI in ``tmp_path``; asserts both succeed and returns the eval metrics (JSON)."""
    import json

    out = tmp_path / "run"
    args = ["model.backbone.name=resnet", "model.backbone.depth=18", "model.decoder.name=deeplabv3",
            "model.decoder.channels=16", *dataset_args, f"train.iters={iters}", f"train.crop_size=[{crop},{crop}]",
            "train.batch_size=2", f"eval.batch_size={eval_batch}", "runtime.progress=false", "runtime.threads=2",
            f"runtime.output_dir={out}"]
    trained = semseg(None, "train", *args, cwd=tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (out / "model_last.safetensors").is_file() and (out / "metrics.json").is_file()
    evaluated = semseg(None, "eval", *args, "--out", str(tmp_path / "m.json"), cwd=tmp_path, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    return json.loads((tmp_path / "m.json").read_text())


def missing_root_error(dataset: str, tmp_path: Path) -> list[str]:
    """The output lines of `semseg train` on ``dataset`` with a root that does not exist (exit 1 asserted)."""
    result = semseg(None, "train", f"dataset.name={dataset}", f"dataset.root={tmp_path / 'nowhere'}",
                    "train.iters=1", "runtime.progress=false", f"runtime.output_dir={tmp_path / 'run'}",
                    cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    return [line for line in result.stderr.splitlines() + result.stdout.splitlines() if line.strip()]


def missing_root_config_error(dataset: str, tmp_path: Path) -> str:
    """The ConfigError message of building ``dataset`` (train split) on a root that does not exist."""
    import pytest

    from semsegpaddle.core.plugin.build import build_component
    from semsegpaddle.core.config.loader import config_from_dict
    from semsegpaddle.core.common.errors import ConfigError

    config = config_from_dict({"dataset": {"name": dataset, "root": str(tmp_path / "nowhere")}})
    with pytest.raises(ConfigError) as info:
        build_component(config, "dataset", "dataset", "train", extra=("train_split", "val_split"))
    return str(info.value)
