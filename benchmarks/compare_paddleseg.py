"""semsegpaddle against PaddleSeg 2.8 on the same architectures, in one process run.

Models: PSPNet and DeepLabv3 on ResNet-50-v1d at output stride 8, 19 classes, no auxiliary heads,
both sides configured as PaddleSeg's Cityscapes configs (parameter counts are checked equal before
anything is timed). Measured, with the two sides interleaved step by step so a change of load hits
both:

1. training step (forward, cross-entropy, backward, SGD-momentum step, gradients cleared), batch 2,
   at each ``--sizes``: ours at the core count, PaddleSeg at the core count and at Paddle's default
   of one thread;
2. inference (batch 2, each ``--infer-sizes``): both dynamic models at the core count; ours exported
   by ``export_model`` and run by ``PaddleInferenceBackend`` with and without oneDNN; PaddleSeg's
   model saved by ``paddle.jit.save`` and run the same way (a failure is recorded, not raised);
3. achieved GFLOP/s (multiply-accumulates of Conv2D/Linear layers × 2; a training step counted as
   3 × its forward) and its fraction of numpy's float32 matmul rate (2048³) measured in this run;
4. peak resident memory of each side, each in a fresh subprocess (``--child``);
5. the loader stall ratio of our pipeline: N training steps fed by ``train_loader`` from
   Cityscapes-size PNG files ÷ the same N steps over the same batches held in memory.

Results are printed and written to ``--out`` (benchmarks/RESULTS.md), re-written after each phase.
PaddleSeg is a benchmark-only install, never a dependency of the package:

    .venv/bin/pip install --target /tmp/pseg28 --no-deps paddleseg==2.8.0 six scipy scikit-learn joblib \\
        threadpoolctl cloudpickle narwhals
    .venv/bin/python benchmarks/compare_paddleseg.py --paddleseg /tmp/pseg28   # full recipe: ~1 h on 2 cores
    .venv/bin/python benchmarks/compare_paddleseg.py --paddleseg /tmp/pseg28 --sizes 128 --infer-sizes 128 \\
        --steps 1 --warmup 1 --stall-crop 64 128 --stall-steps 1 --stall-images 2 --out /tmp/RESULTS_small.md
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
#: as the user's environment set it: paddle sets OMP_NUM_THREADS=1 at import when it is unset
OMP_BEFORE_PADDLE = os.environ.get("OMP_NUM_THREADS")
CLASSES, IGNORE = 19, 255
INSTALL = ("pip install --target /tmp/pseg28 --no-deps paddleseg==2.8.0 six scipy scikit-learn joblib "
           "threadpoolctl cloudpickle narwhals")
MODELS = ("pspnet", "deeplabv3")
#: our backbone: ResNet-50-v1d (deep stem, average-pool shortcut) at output stride 8 = PaddleSeg's ResNet50_vd
OUR_BACKBONE = {"name": "resnet", "depth": 50, "stem": "deep_avgdown", "output_stride": 8}
#: our heads configured as PaddleSeg's (tests/plugins/test_decoder_pspnet.py, tests/plugins/test_decoder_deeplab.py);
#: DeepLabv3's rates are those of PaddleSeg's Cityscapes OS8 config (its rate 1 is our 1×1 branch)
OUR_DECODERS = {
    "pspnet": {"name": "pspnet", "bins": [1, 2, 3, 6], "channels": 1024, "conv_bias": True},
    "deeplabv3": {"name": "deeplabv3", "channels": 256, "atrous_rates": [12, 24, 36], "conv_bias": True},
}
PADDLESEG_CALLS = {
    "pspnet": "PSPNet(19, ResNet50_vd(output_stride=8), backbone_indices=(2, 3), pp_out_channels=1024, "
              "bin_sizes=(1, 2, 3, 6), enable_auxiliary_loss=False, align_corners=False)",
    "deeplabv3": "DeepLabV3(19, ResNet50_vd(output_stride=8), backbone_indices=(3,), aspp_ratios=(1, 12, 24, 36), "
                 "aspp_out_channels=256, align_corners=False)",
}
#: the learning rate of both sides' optimizer (SGD momentum 0.9, L2 decay 4e-5): small, so a few
#: steps from random weights on random labels never diverge; the time does not depend on it
LR = 1e-3
#: the normalisation our model applies inside (the engine's default, ImageNet's); PaddleSeg's batch gets it
#: applied beforehand, as its loader's Normalize would (kept here so a PaddleSeg process imports nothing of ours)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
GOALS = {"infer_sgemm": 0.80, "infer_ratio": 0.25, "train_ratio": 1.0, "shipped_ratio": 0.65, "rss_ratio": 1.0,
         "stall": 1.05}


# ------------------------------------------------------------------ environment

def import_paddleseg(path: Path | None) -> str:
    """Import PaddleSeg (from ``path`` if given) and return its version; exit with the install line if absent."""
    if path is not None:
        sys.path.insert(0, str(path))
    warnings.filterwarnings("ignore", message="No ccache found")
    try:
        import paddleseg
    except ImportError as exc:
        raise SystemExit(f"PaddleSeg 2.8 is not importable ({exc}); install it into a folder with\n    {INSTALL}\n"
                         f"and pass --paddleseg /tmp/pseg28") from None
    return str(paddleseg.__version__)


def memory_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def blas_description() -> str:
    """numpy's BLAS and its thread count (through threadpoolctl when importable)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy's BLAS (threadpoolctl not importable: threads unknown)"
    blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    blas = [pool for pool in blas if "numpy" in pool.get("filepath", "")] or blas  # not scipy's or paddle's
    described = [f"{pool['internal_api']} {pool.get('version')} ({pool.get('architecture')} kernels, "
                 f"{pool['num_threads']} thread{'s' if pool['num_threads'] != 1 else ''})" for pool in blas]
    return ", ".join(described) or "numpy's BLAS (not found)"


def machine_info(paddleseg_version: str, threads: int) -> dict[str, Any]:
    """CPU model, cores, memory, versions and threads of this run."""
    import paddle

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    total = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                 if line.startswith("MemTotal"))
    return {"cpu": cpu, "avx512": "avx512f" in flags.split(), "cores": threads, "memory_gb": round(total / 2**20, 1),
            "python": platform.python_version(), "paddle": paddle.__version__, "paddleseg": paddleseg_version,
            "numpy": np.__version__, "blas": blas_description(),
            "omp_num_threads": OMP_BEFORE_PADDLE or "unset (paddle sets 1 at import)", "load_start": os.getloadavg()}


class Sgemm:
    """numpy's float32 n³ matmul rate in GFLOP/s (its own BLAS threads), sampled throughout the run:
    at the start, once per round of every timed phase, at the end."""

    def __init__(self, n: int = 2048) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a, self.b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        self.a @ self.b  # warm-up: the BLAS threads start
        self.rates: list[float] = []

    def sample(self, count: int = 1) -> None:
        """Time ``count`` more matmuls."""
        for _ in range(count):
            tic = time.perf_counter()
            self.a @ self.b
            self.rates.append(2 * self.n**3 / (time.perf_counter() - tic) / 1e9)


def set_threads(count: int) -> None:
    """Paddle's CPU kernel threads from now on (dynamic graph)."""
    import paddle

    paddle.base.core.set_num_threads(count)


# ------------------------------------------------------------------ models

def our_config(name: str, train: dict[str, Any] | None = None) -> Any:
    """Our validated config for model ``name`` (no auxiliary head), with optional ``train`` keys."""
    import semsegpaddle as ss

    return ss.config_from_dict({"model": {"backbone": dict(OUR_BACKBONE), "decoder": dict(OUR_DECODERS[name])},
                                "train": {"lr": LR, **(train or {})}})


def our_model(name: str) -> Any:
    """Our model ``name`` through the public API, random weights (seed 0)."""
    import paddle

    import semsegpaddle as ss

    paddle.seed(0)
    return ss.create_model(our_config(name), num_classes=CLASSES)


def paddleseg_model(name: str) -> Any:
    """PaddleSeg 2.8's model ``name`` (see PADDLESEG_CALLS), random weights (seed 0)."""
    import paddle
    from paddleseg.models import DeepLabV3, PSPNet
    from paddleseg.models.backbones import ResNet50_vd

    paddle.seed(0)
    backbone = ResNet50_vd(output_stride=8)
    if name == "pspnet":
        return PSPNet(CLASSES, backbone, backbone_indices=(2, 3), pp_out_channels=1024, bin_sizes=(1, 2, 3, 6),
                      enable_auxiliary_loss=False, align_corners=False)
    return DeepLabV3(CLASSES, backbone, backbone_indices=(3,), aspp_ratios=(1, 12, 24, 36), aspp_out_channels=256,
                     align_corners=False)


def build(side: str, name: str) -> Any:
    """The model of ``side`` (``ours`` or ``paddleseg``)."""
    return our_model(name) if side == "ours" else paddleseg_model(name)


def count_parameters(layer: Any) -> int:
    """sum(numel) over ``parameters()``, BatchNorm mean/variance included (Paddle lists them there)."""
    return int(sum(int(p.numel()) for p in layer.parameters()))


def forward_macs(model: Any, size: int, normalise: bool) -> int:
    """Multiply-accumulates of every Conv2D and Linear layer in one forward of a 1×3×size×size image.

    Counted from each layer's output shape and weight (Cout·H·W · Cin/groups·kh·kw); pooling,
    normalisation, activations, resizing and the loss are not counted.
    """
    import paddle

    total = 0

    def count(layer: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        weight = layer.weight.shape
        per_output = weight[1] * weight[2] * weight[3] if isinstance(layer, paddle.nn.Conv2D) else weight[0]
        total += int(np.prod(output.shape)) * int(per_output)

    hooks = [layer.register_forward_post_hook(count) for layer in model.sublayers()
             if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        x = paddle.zeros([1, 3, size, size]) if normalise else paddle.full([1, 3, size, size], 128.0)
        with paddle.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        if was_training:
            model.train()
    return total


# ------------------------------------------------------------------ one training step per side

def make_batch(batch: int, size: int, seed: int = 0) -> dict[str, Any]:
    """Random RGB images (0–255 for ours, normalised for PaddleSeg, whose loader normalises) and
    labels of 19 classes with an ignored band; paddle tensors."""
    import paddle

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (MEAN, STD))
    labels = rng.integers(0, CLASSES, (batch, size, size)).astype(np.int64)
    labels[:, : max(1, size // 16)] = IGNORE
    return {"ours": paddle.to_tensor(images), "paddleseg": paddle.to_tensor((images - mean) / std),
            "labels": paddle.to_tensor(labels), "numpy_ours": images, "numpy_paddleseg": (images - mean) / std}


class OurStep:
    """Our training step as the engine runs it: ``StepRunner`` with ``create_loss`` and ``build_optimizer``."""

    def __init__(self, name: str, model: Any) -> None:
        from semsegpaddle.core.engine.amp import AmpPlan
        from semsegpaddle.core.engine.optim import build_optimizer
        from semsegpaddle.core.engine.step import StepRunner
        from semsegpaddle.core.model.losses import create_loss

        config = our_config(name)
        self.optimizer, _ = build_optimizer(model, config)
        self.runner = StepRunner(model, create_loss(config, model, IGNORE), self.optimizer, AmpPlan(), accumulate=1,
                                 seed=0, rank=0, world_size=1)
        self.model, self.count = model, 0

    def __call__(self, batch: dict[str, Any]) -> float:
        """One step on ``batch``; returns the loss."""
        self.model.train()
        self.count += 1
        return self.runner.run(self.count, batch["ours"], batch["labels"], "benchmark").loss


class PaddleSegStep:
    """A plain step for PaddleSeg's model: its logits, paddle's cross-entropy (PaddleSeg's own
    CrossEntropyLoss fails on int64 labels under paddle 3.3), SGD momentum as its configs set it."""

    def __init__(self, model: Any, iters: int = 1000) -> None:
        import paddle

        schedule = paddle.optimizer.lr.PolynomialDecay(LR, iters, end_lr=0.0, power=0.9)
        self.optimizer = paddle.optimizer.Momentum(learning_rate=schedule, momentum=0.9, weight_decay=4e-5,
                                                   parameters=model.parameters())
        self.model = model

    def __call__(self, batch: dict[str, Any]) -> float:
        """One step on ``batch``; returns the loss."""
        import paddle.nn.functional as F

        self.model.train()
        logits = self.model(batch["paddleseg"])[0]
        loss = F.cross_entropy(logits, batch["labels"], axis=1, ignore_index=IGNORE)
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(loss)


@dataclass
class Case:
    """A timed callable run at a thread count; ``times`` after warm-up, ``error`` if it failed."""

    label: str
    side: str
    threads: int
    run: Callable[[], Any]
    times: list[float] = field(default_factory=list)
    error: str = ""


def interleave(cases: list[Case], warmup: int, steps: int, sgemm: Sgemm) -> None:
    """Run every case ``warmup + steps`` times, the cases in turn (order rotated every round), and
    one sgemm sample per timed round; a case that raises is recorded and dropped."""
    for round_ in range(warmup + steps):
        if round_ >= warmup:
            sgemm.sample()
        shift = round_ % len(cases)
        for case in cases[shift:] + cases[:shift]:
            if case.error:
                continue
            set_threads(case.threads)
            tic = time.perf_counter()
            try:
                case.run()
            except Exception as exc:  # a failing case is a result, not the end of the benchmark
                case.error = first_line(exc)
                print(f"  {case.label}: failed: {case.error}", flush=True)
                continue
            seconds = time.perf_counter() - tic
            if round_ >= warmup:
                case.times.append(seconds)
            print(f"  round {round_ + 1}/{warmup + steps} {case.label}: {seconds:.2f} s", flush=True)


def first_line(exc: BaseException) -> str:
    """The line of an exception that says what went wrong (Paddle's carry C++ stacks; for an error
    our package raised from Paddle's, Paddle's)."""
    exc = exc.__cause__ or exc
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("---", "C++ Traceback", "Error Message Summary", "[Hint"))]
    useful = [line for line in lines if "Error" in line or line.startswith("(")]
    text = f"{type(exc).__name__}: {(useful or lines or [''])[0]}"
    return text if len(text) <= 240 else text[:237] + "..."


def median(times: list[float]) -> float:
    """Median of ``times`` (NaN if empty)."""
    return statistics.median(times) if times else float("nan")


def measure_train(name: str, models: dict[str, Any], sizes: list[int], args: argparse.Namespace,
                  threads: int, sgemm: Sgemm) -> list[dict[str, Any]]:
    """Seconds per training step at each size: ours at ``threads``, PaddleSeg at ``threads`` and at 1."""
    steps = {"ours": OurStep(name, models["ours"]), "paddleseg": PaddleSegStep(models["paddleseg"])}
    rows = []
    for size in sizes:
        print(f"[train] {name} {size}², batch {args.batch}", flush=True)
        batch = make_batch(args.batch, size)
        ours, theirs = (functools.partial(steps[side], batch) for side in ("ours", "paddleseg"))
        cases = [Case(f"semsegpaddle ({threads} threads)", "ours", threads, ours),
                 Case(f"PaddleSeg ({threads} threads)", "paddleseg", threads, theirs)]
        if threads != 1:
            cases.append(Case("PaddleSeg (1 thread, its default)", "paddleseg", 1, theirs))
        interleave(cases, args.warmup, args.steps, sgemm)
        for case in cases:
            rows.append({"model": name, "size": size, "label": case.label, "side": case.side, "threads": case.threads,
                         "seconds": median(case.times), "times": case.times, "error": case.error})
    return rows


# ------------------------------------------------------------------ inference

def export_ours(model: Any, folder: Path) -> None:
    """Our model exported by the package's own ``export_model`` (checked at 64×64)."""
    from semsegpaddle.core.data.base import default_palette
    from semsegpaddle.core.inference.export import export_model

    export_model(model, folder, [f"class{i}" for i in range(CLASSES)], default_palette(CLASSES),
                 check_sizes=((64, 64),))


def export_paddleseg(model: Any, folder: Path) -> None:
    """PaddleSeg's model saved by ``paddle.jit.save`` (dynamic N×3×H×W), plus the ``export_info.json``
    our ``PaddleInferenceBackend`` reads, so both exports run through the same backend."""
    import paddle
    from paddle.static import InputSpec

    from semsegpaddle.core.data.base import default_palette

    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(model, str(folder / "model"), input_spec=[InputSpec([None, 3, None, None], "float32", "x")])
    info = {"class_names": [f"class{i}" for i in range(CLASSES)], "palette": default_palette(CLASSES).tolist()}
    (folder / "export_info.json").write_text(json.dumps(info))


def dynamic_paddleseg(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """PaddleSeg's dynamic model as a numpy → numpy logits function (as our DynamicBackend does)."""
    import paddle

    def run(batch: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            return model(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))[0].numpy()

    return run


def inference_backends(name: str, models: dict[str, Any], folder: Path, threads: int
                       ) -> tuple[list[tuple[str, str, str, Any]], list[dict[str, Any]]]:
    """(label, side, kind, callable) per inference case, and the cases that could not even be set up."""
    from semsegpaddle.core.inference.backends import (
        DynamicBackend,
        PaddleInferenceBackend,
    )

    for model in models.values():
        model.eval()
    backends: list[tuple[str, str, str, Any]] = [
        ("semsegpaddle dynamic", "ours", "dynamic", DynamicBackend(models["ours"])),
        ("PaddleSeg dynamic", "paddleseg", "dynamic", dynamic_paddleseg(models["paddleseg"]))]
    failed = []
    exports = {"ours": (export_ours, "semsegpaddle export_model"),
               "paddleseg": (export_paddleseg, "PaddleSeg jit.save")}
    for side, (export, how) in exports.items():
        target = folder / f"{name}-{side}"
        try:
            export(models[side], target)
        except Exception as exc:
            failed.append({"label": f"{how} export", "side": side, "error": first_line(exc)})
            continue
        for onednn in (True, False):
            label = f"{how} → Paddle Inference{' + oneDNN' if onednn else ', no oneDNN'}"
            try:
                backends.append((label, side, "onednn" if onednn else "plain",
                                 PaddleInferenceBackend(target, threads=threads, device="cpu", onednn=onednn)))
            except Exception as exc:
                failed.append({"label": label, "side": side, "error": first_line(exc)})
    return backends, failed


def measure_inference(name: str, models: dict[str, Any], sizes: list[int], args: argparse.Namespace,
                      threads: int, folder: Path, sgemm: Sgemm) -> list[dict[str, Any]]:
    """Seconds per batch of every inference case at each size, all at ``threads``."""
    backends, failed = inference_backends(name, models, folder, threads)
    rows = [{"model": name, "size": size, "kind": "setup", "seconds": float("nan"), "times": [], **f}
            for f in failed for size in sizes]
    for size in sizes:
        print(f"[inference] {name} {size}², batch {args.batch}", flush=True)
        batch = make_batch(args.batch, size)
        cases, kinds = [], {}
        for label, side, kind, backend in backends:
            data = batch[f"numpy_{side}"]

            def run(backend: Any = backend, data: np.ndarray = data, expected: tuple[int, ...] = (
                    args.batch, CLASSES, size, size)) -> None:
                out = backend(data)
                if out.shape != expected:
                    raise RuntimeError(f"output of shape {out.shape}, expected {expected}")

            cases.append(Case(label, side, threads, run))
            kinds[label] = kind
        interleave(cases, args.warmup, args.steps, sgemm)
        rows += [{"model": name, "size": size, "label": c.label, "side": c.side, "kind": kinds[c.label],
                  "threads": threads, "seconds": median(c.times), "times": c.times, "error": c.error} for c in cases]
    return rows


# ------------------------------------------------------------------ peak memory, one side per process

def child_main(args: argparse.Namespace) -> None:
    """``--child SIDE:MODEL:PHASE:SIZE``: build one side's model, run ``--rss-steps`` training steps
    (or eval forwards) at SIZE on a batch of ``--batch``, print RSS figures as one JSON line."""
    side, name, phase, size = args.child.split(":")
    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path

    choose_mkl_code_path(args.mkl)  # before this process's first MKL call
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    # the side's own modules are imported before the first figure; nothing of ours in PaddleSeg's process
    if side == "paddleseg":
        import_paddleseg(args.paddleseg)
        modules = ["paddleseg.models"]
    else:
        modules = ["semsegpaddle.api", "semsegpaddle.core.engine.step", "semsegpaddle.core.model.losses"]
    for module in modules:
        importlib.import_module(module)
    import paddle

    paddle.set_device("cpu")
    set_threads(args.threads)
    imports = memory_mb("VmRSS")
    model = build(side, name)
    batch = make_batch(args.batch, int(size))
    loaded = memory_mb("VmRSS")
    if phase in ("shipped", "shipped-infer"):  # timed, as the side runs out of the box (threads, MKL path: parent)
        if phase == "shipped":
            step = OurStep(name, model) if side == "ours" else PaddleSegStep(model)
        else:
            model.eval()
            forward = model if side == "ours" else (lambda x: model(x)[0])

            def step(batch: dict[str, Any]) -> None:
                with paddle.no_grad():
                    forward(batch[side]).numpy()
        times = []
        for round_ in range(args.warmup + args.steps):
            tic = time.perf_counter()
            step(batch)
            if round_ >= args.warmup:
                times.append(time.perf_counter() - tic)
        print(json.dumps({"seconds": median(times), "times": times,
                          "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE")}))
        return
    if phase == "train":
        step = OurStep(name, model) if side == "ours" else PaddleSegStep(model)
        for _ in range(args.rss_steps):
            step(batch)
    else:
        model.eval()
        with paddle.no_grad():
            for _ in range(args.rss_steps):
                out = model(batch[side])
                (out if side == "ours" else out[0]).numpy()
    print(json.dumps({"imports_mb": imports, "loaded_mb": loaded, "peak_mb": memory_mb("VmHWM")}))


def measure_rss(name: str, args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Peak RSS of each side, training at each ``--sizes`` and inferring at each ``--infer-sizes``."""
    rows = []
    plan = [("train", size) for size in args.sizes] + [("infer", size) for size in args.infer_sizes]
    for phase, size in plan:
        for side in ("ours", "paddleseg"):
            command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{side}:{name}:{phase}:{size}",
                       "--batch", str(args.batch), "--rss-steps", str(args.rss_steps), "--threads", str(threads)]
            if args.paddleseg:
                command += ["--paddleseg", str(args.paddleseg)]
            print(f"[memory] {side} {name} {phase} {size}²", flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            row = {"model": name, "phase": phase, "size": size, "side": side}
            try:
                row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
                row["error"] = f"exit {done.returncode}: {tail[0][:200]}"
            rows.append(row)
    return rows


# ------------------------------------------------------------------ each side as it ships

def measure_shipped(name: str, args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Training-step seconds of each side out of the box, each in a fresh process, the sides alternating:
    semsegpaddle with its defaults (all cores, ``runtime.mkl_code_path: auto``), PaddleSeg with its own
    (one thread, MKL's default code path: MKL_DEBUG_CPU_TYPE removed from its environment); then
    PaddleSeg's dynamic inference with MKL's default path at the core count (the inference goal's base)."""
    rows = []
    plan = [("shipped", size, side) for size in args.sizes for side in ("ours", "paddleseg")]
    plan += [("shipped-infer", size, "paddleseg") for size in args.infer_sizes]  # its dynamic inference
    for kind, size, side in plan:
        env = dict(os.environ)
        env.pop("MKL_DEBUG_CPU_TYPE", None)
        side_threads, mkl = (threads, "auto") if side == "ours" else (1, "default")
        if kind == "shipped-infer":
            side_threads = threads  # the inference goal compares at equal threads
        command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{side}:{name}:{kind}:{size}",
                   "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--threads", str(side_threads), "--mkl", mkl]
        if args.paddleseg:
            command += ["--paddleseg", str(args.paddleseg)]
        print(f"[as shipped] {kind} {side} {name} {size}², {side_threads} thread(s), MKL path {mkl}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        row = {"model": name, "size": size, "side": side, "threads": side_threads, "kind": kind}
        try:
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        except (IndexError, json.JSONDecodeError):
            tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
            row["error"] = f"exit {done.returncode}: {tail[0][:200]}"
        rows.append(row)
    return rows


# ------------------------------------------------------------------ loader stall (our pipeline)

def measure_stall(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Seconds of N training steps fed by ``train_loader`` ÷ the same N steps over the same batches
    held in memory, for each ``--stall-workers``; the in-memory run before and after, averaged."""
    sys.path.insert(0, str(HERE))
    from pipeline import (
        write_dataset,  # the synthetic Cityscapes-size files of benchmarks/pipeline.py
    )

    from semsegpaddle.core.data.datasets import train_loader
    from semsegpaddle.core.data.file_dataset import FileDataset
    from semsegpaddle.core.engine.progress import timed

    name, total = args.stall_model, args.warmup + args.stall_steps

    def config(workers: int) -> Any:
        return our_config(name, {"crop_size": list(args.stall_crop), "scale_range": [0.5, 2.0], "flip": True,
                                 "photometric": True, "batch_size": args.batch, "num_workers": workers,
                                 "iters": total})

    set_threads(threads)
    step = OurStep(name, our_model(name))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"[stall] writing {args.stall_images} synthetic 1024×2048 PNG images", flush=True)
        pairs = write_dataset(Path(tmp), args.stall_images, "png")
        dataset = FileDataset(pairs, num_classes=CLASSES, ignore_index=IGNORE)
        held = [{"ours": images, "labels": labels} for images, labels in train_loader(dataset, config(0), start=0)]

        def in_memory() -> float:
            for batch in held[:args.warmup]:
                step(batch)
            tic = time.perf_counter()
            for batch in held[args.warmup:]:
                step(batch)
            return time.perf_counter() - tic

        def from_loader(workers: int) -> tuple[float, float]:
            loader = train_loader(dataset, config(workers), start=0)
            waited, tic = 0.0, 0.0
            try:
                for index, (wait, (images, labels)) in enumerate(timed(loader)):
                    if index == args.warmup:  # worker start-up and the first batches excluded
                        tic = time.perf_counter() - wait
                    if index >= args.warmup:
                        waited += wait
                    step({"ours": images, "labels": labels})
                return time.perf_counter() - tic, waited
            finally:
                loader.close()

        for workers in args.stall_workers:
            print(f"[stall] {name}, crop {args.stall_crop[0]}×{args.stall_crop[1]}, {workers} workers", flush=True)
            before = in_memory()
            fed, waited = from_loader(workers)
            after = in_memory()
            memory = (before + after) / 2
            rows.append({"workers": workers, "steps": args.stall_steps, "memory_s": memory,
                         "memory_runs": [before, after],
                         "loader_s": fed, "waited_s": waited, "ratio": fed / memory})
            print(f"  in memory {memory:.2f} s, from the loader {fed:.2f} s (waited {waited:.2f} s): "
                  f"{fed / memory:.3f}", flush=True)
    return rows


# ------------------------------------------------------------------ RESULTS.md

def fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    """A number for a table cell ('—' for NaN/None)."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}{suffix}"


def met(ok: bool | None) -> str:
    """The goal column."""
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


@dataclass
class Results:
    """Everything measured so far; :meth:`markdown` renders RESULTS.md."""

    args: argparse.Namespace
    command: str
    machine: dict[str, Any]
    sgemm: Sgemm
    #: the machine's float32 limit (machine_limit.measure_limit: numpy sgemm, widest kernels)
    limit: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)
    infer: list[dict[str, Any]] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)
    stall: list[dict[str, Any]] = field(default_factory=list)
    shipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    @property
    def sgemm_rate(self) -> float:
        """Median numpy sgemm GFLOP/s of this run."""
        return median(self.sgemm.rates)

    def flops(self, model: str, side: str, size: int) -> float:
        """Forward FLOPs (2 × MACs) of one batch of ``--batch`` images at ``size``."""
        macs = self.models.get(model, {}).get("macs", {}).get(side, {}).get(size)
        return float("nan") if macs is None else 2.0 * macs * self.args.batch

    @property
    def limit_rate(self) -> float:
        """The machine's float32 limit in GFLOP/s (the sampled sgemm median if it was not measured)."""
        return float(self.limit.get("gflops") or self.sgemm_rate)

    def rate(self, row: dict[str, Any], factor: float) -> tuple[float, float]:
        """(GFLOP/s, fraction of the machine's limit) of a timed row whose work is ``factor`` forwards."""
        gflops = factor * self.flops(row["model"], row["side"], row["size"]) / row["seconds"] / 1e9
        return gflops, gflops / self.limit_rate

    def _find(self, rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)

    def markdown(self) -> str:
        """The whole RESULTS.md."""
        parts = [self._header(), self._models_table(), self._train_table(), self._shipped_table(), self._infer_table(),
                 self._rss_table(), self._stall_table(), self._goals_table(), self._notes()]
        if self.errors:
            parts.append("## Errors\n\n" + "\n".join(f"- {e}" for e in self.errors) + "\n")
        return "\n".join(p for p in parts if p)

    def _header(self) -> str:
        m, a, rates = self.machine, self.args, self.sgemm.rates or [float("nan")]
        return (f"# semsegpaddle against PaddleSeg 2.8 (`benchmarks/compare_paddleseg.py`)\n\n"
                f"Written by the script; started {self.started}, last updated "
                f"{datetime.datetime.now().isoformat(timespec='seconds')}.\n\n"
                f"- command: `{self.command}`\n"
                f"- machine: {m['cpu']}{' (AVX-512)' if m['avx512'] else ''}, {m['cores']} cores available, "
                f"{m['memory_gb']} GB; Python {m['python']}, paddlepaddle {m['paddle']}, PaddleSeg {m['paddleseg']}, "
                f"numpy {m['numpy']}; OMP_NUM_THREADS {m['omp_num_threads']}\n"
                f"- MKL code path of this process (both sides): MKL_DEBUG_CPU_TYPE={m.get('mkl') or 'unset'} "
                f"(`--mkl {a.mkl}`; semsegpaddle's `runtime.mkl_code_path: auto` sets it on non-Intel CPUs)\n"
                f"- load average (1, 5, 15 min) at the start {fmt_load(m['load_start'])}, "
                f"now {fmt_load(os.getloadavg())}\n"
                f"- threads: semsegpaddle {m['cores']} (the engine's `runtime.threads: 0`); PaddleSeg {m['cores']} "
                f"and 1 "
                f"(Paddle's default, which PaddleSeg's train.py keeps); inference, all cases {m['cores']}\n"
                f"- batch {a.batch}; timings are medians of {a.steps} runs after {a.warmup} warm-up run(s), the cases "
                f"interleaved run by run\n"
                f"- the machine's float32 limit: {fmt(self.limit_rate, 1)} GFLOP/s, the best of numpy's float32 "
                f"{self.limit.get('n', '?')}³ matmuls in a child process with {self._unpinned()} "
                f"({self.limit.get('kernels', 'kernels not reported')}); every % of limit below is of it\n"
                f"- load indicator: numpy sgemm in this process (float32 2048³; {m['blas']}): median "
                f"{fmt(self.sgemm_rate, 1)} GFLOP/s (min {fmt(min(rates), 1)}, max {fmt(max(rates), 1)}) of "
                f"{len(rates)} samples taken at the start, once per timed round of the training and inference "
                f"phases, and at the end\n")

    def _unpinned(self) -> str:
        unpinned = self.limit.get("unpinned")
        if unpinned:
            return f"{' and '.join(unpinned)} removed (set here, they pin OpenBLAS to narrower kernels)"
        return "the environment as it is (no OpenBLAS pinning variable set)"

    def _models_table(self) -> str:
        if not self.models:
            return ""
        sizes = sorted({s for m in self.models.values() for s in m.get("macs", {}).get("ours", {})})
        head = "| model | parameters, semsegpaddle | parameters, PaddleSeg | difference | " + " | ".join(
            f"GMAC {s}² (ours / PaddleSeg)" for s in sizes) + " |"
        lines = ["## Models\n", head, "|" + "---|" * (4 + len(sizes))]
        for name, m in self.models.items():
            p = m["params"]
            macs = [f"{m['macs']['ours'].get(s, float('nan')) / 1e9:.1f} / "
                    f"{m['macs']['paddleseg'].get(s, float('nan')) / 1e9:.1f}" for s in sizes]
            lines.append(f"| {name} | {p['ours']:,} | {p['paddleseg']:,} | {p['ours'] - p['paddleseg']:+,} | "
                         + " | ".join(macs) + " |")
        lines.append("\nParameters counted as `sum(p.numel() for p in model.parameters())` on both sides (Paddle "
                     "lists BatchNorm mean and variance there). GMAC: multiply-accumulates of Conv2D/Linear layers "
                     "in one forward of one image.")
        return "\n".join(lines) + "\n"

    def _train_table(self) -> str:
        if not self.train:
            return ""
        threads = self.machine["cores"]
        lines = ["## Training step\n",
                 (f"Forward + cross-entropy + backward + SGD-momentum step + clear_grad, batch {self.args.batch}; "
                  "seconds per step. GFLOP/s counts a step as 3 forwards.\n"),
                 ("| model | size | semsegpaddle | PaddleSeg, same threads | PaddleSeg, 1 thread | ours ÷ PaddleSeg, "
                  "same threads | ours ÷ PaddleSeg, its default | GFLOP/s ours (% of limit) | GFLOP/s PaddleSeg "
                  "(% of limit) |"), "|---|---|---|---|---|---|---|---|---|"]
        for (name, size) in dict.fromkeys((r["model"], r["size"]) for r in self.train):
            ours = self._find(self.train, model=name, size=size, side="ours")
            same = self._find(self.train, model=name, size=size, side="paddleseg", threads=threads)
            one = self._find(self.train, model=name, size=size, side="paddleseg", threads=1) if threads != 1 else same
            g_ours, f_ours = self.rate(ours, 3)
            g_same, f_same = self.rate(same, 3)
            lines.append(f"| {name} | {size}² | {fmt(ours['seconds'])} | {fmt(same['seconds'])} | "
                         f"{fmt(one['seconds']) if one else '—'} | {fmt(ours['seconds'] / same['seconds'])}× | "
                         f"{fmt(ours['seconds'] / one['seconds']) if one else '—'}× | {fmt(g_ours, 1)} "
                         f"({fmt(100 * f_ours, 0)} %) | {fmt(g_same, 1)} ({fmt(100 * f_same, 0)} %) |")
        errors = [f"- {r['model']} {r['size']}², {r['label']}: {r['error']}" for r in self.train if r["error"]]
        return "\n".join(lines + ([""] + errors if errors else [])) + "\n"

    def _shipped_train(self, ours: dict[str, Any]) -> tuple[dict[str, Any] | None, float]:
        """PaddleSeg's as-shipped training row matching ``ours``, and ours ÷ it (NaN if either failed)."""
        theirs = self._find(self.shipped, model=ours["model"], size=ours["size"], side="paddleseg", kind="shipped")
        ok = theirs is not None and "seconds" in theirs and "seconds" in ours
        return theirs, ours["seconds"] / theirs["seconds"] if ok else float("nan")

    def _shipped_infer(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, float]:
        """Our oneDNN inference row matching PaddleSeg's as-shipped dynamic ``row``, and ours ÷ it."""
        fast = self._find(self.infer, model=row["model"], size=row["size"], side="ours", kind="onednn")
        ok = fast is not None and not fast.get("error") and "seconds" in row
        return (fast if ok else None), fast["seconds"] / row["seconds"] if ok else float("nan")

    def _shipped_table(self) -> str:
        if not self.shipped:
            return ""
        lines = ["## Training step, each side as it ships\n",
                 ("Each side in a fresh process with its defaults, the sides alternating: semsegpaddle on every core "
                  "with `runtime.mkl_code_path: auto`; PaddleSeg on one thread (Paddle's default, which its train.py "
                  "keeps) with MKL's own code path (MKL_DEBUG_CPU_TYPE removed). Seconds per step, median of "
                  f"{self.args.steps} after {self.args.warmup} warm-up.\n"),
                 "| model | size | semsegpaddle | PaddleSeg | ours ÷ PaddleSeg |", "|---|---|---|---|---|"]
        for ours in (r for r in self.shipped if r["side"] == "ours"):
            theirs, ratio = self._shipped_train(ours)
            lines.append(f"| {ours['model']} | {ours['size']}² | {shipped_cell(ours)} | {shipped_cell(theirs)} | "
                         f"{fmt(ratio)}× |")
        infer = [r for r in self.shipped if r.get("kind") == "shipped-infer"]
        if infer:
            lines += ["", (f"PaddleSeg's dynamic inference as it ships (MKL's own code path, {self.machine['cores']} "
                           "threads, batch as above), against our fast backend of the inference table:"), "",
                      "| model | size | PaddleSeg dynamic | ours, Paddle Inference + oneDNN | ours ÷ PaddleSeg |",
                      "|---|---|---|---|---|"]
            for row in infer:
                fast, ratio = self._shipped_infer(row)
                theirs = fmt(row["seconds"]) if "seconds" in row else row.get("error")
                lines.append(f"| {row['model']} | {row['size']}² | {theirs} | {fmt(fast['seconds']) if fast else '—'} "
                             f"| {fmt(ratio) if fast else '—'}× |")
        return "\n".join(lines) + "\n"

    def _infer_table(self) -> str:
        if not self.infer:
            return ""
        lines = ["## Inference\n",
                 (f"Batch {self.args.batch}, every case at {self.machine['cores']} threads; seconds per batch (numpy "
                  "in, numpy logits out).\n"),
                 "| model | size | case | seconds | ÷ PaddleSeg dynamic | GFLOP/s | % of limit |",
                 "|---|---|---|---|---|---|---|"]
        for row in self.infer:
            if row.get("kind") == "setup":
                continue
            base = self._find(self.infer, model=row["model"], size=row["size"], side="paddleseg", kind="dynamic")
            gflops, fraction = self.rate(row, 1)
            ratio = row["seconds"] / base["seconds"] if base else float("nan")
            seconds = fmt(row["seconds"]) if not row["error"] else "failed (below)"
            lines.append(f"| {row['model']} | {row['size']}² | {row['label']} | {seconds} | {fmt(ratio)}× | "
                         f"{fmt(gflops, 1)} | {fmt(100 * fraction, 0)} |")
        failed = {(r["model"], r["label"]): r["error"] for r in self.infer if r["error"]}
        lines += ([""] + [f"- {model}, {label}: failed: {error}" for (model, label), error in failed.items()]
                  if failed else [])
        return "\n".join(lines) + "\n"

    def _rss_table(self) -> str:
        if not self.rss:
            return ""
        lines = ["## Peak memory\n",
                 (f"Each side in a fresh process: imports, model, then {self.args.rss_steps} training steps (or eval "
                  f"forwards) on a batch of {self.args.batch}. MB of resident memory: after the imports, after "
                  "building the model, and the peak (VmHWM).\n"),
                 ("| model | phase | size | semsegpaddle imports / model / peak | PaddleSeg imports / model / peak | "
                  "peak ours ÷ PaddleSeg | above imports, ours ÷ PaddleSeg |"), "|---|---|---|---|---|---|---|"]
        for ours in (r for r in self.rss if r["side"] == "ours"):
            theirs = self._find(self.rss, model=ours["model"], phase=ours["phase"], size=ours["size"], side="paddleseg")
            lines.append(f"| {ours['model']} | {ours['phase']} | {ours['size']}² | {rss_cell(ours)} | "
                         f"{rss_cell(theirs)} | {fmt(rss_ratio(ours, theirs, False))}× | "
                         f"{fmt(rss_ratio(ours, theirs, True))}× |")
        return "\n".join(lines) + "\n"

    def _stall_table(self) -> str:
        if not self.stall:
            return ""
        a = self.args
        lines = ["## Loader stall (semsegpaddle)\n",
                 (f"{a.stall_model} (as above), {a.stall_steps} training steps after {a.warmup} warm-up, "
                  f"batch {a.batch}, "
                  f"fed by `train_loader` from {a.stall_images} synthetic 1024×2048 PNG images (+ PNG labels, "
                  f"benchmarks/pipeline.py's `write_dataset`) with the Cityscapes recipe's augmentation (scale 0.5–2, "
                  f"crop {a.stall_crop[0]}×{a.stall_crop[1]}, flip, photometric), against the same steps over the same "
                  "batches already in memory (run before and after, averaged).\n"),
                 ("" if list(a.stall_crop) == [512, 1024] else
                  f"The Cityscapes recipe crops 512×1024; at {a.stall_crop[0]}×{a.stall_crop[1]} a step costs "
                  f"{512 * 1024 / (a.stall_crop[0] * a.stall_crop[1]):.0f}× less while the loader's cost, mostly "
                  "decoding the 1024×2048 files, stays about the same: the ratio is an upper bound for the real "
                  "recipe.\n"),
                 ("| workers | in memory, s (before / after) | from the loader, s | waited for batches, s | "
                  "stall ratio |"),
                 "|---|---|---|---|---|"]
        for r in self.stall:
            before, after = r["memory_runs"]
            lines.append(f"| {r['workers']} | {fmt(r['memory_s'])} ({fmt(before)} / {fmt(after)}) | "
                         f"{fmt(r['loader_s'])} | {fmt(r['waited_s'])} | {fmt(r['ratio'], 3)} |")
        lines.append("\nThe three runs follow each other, so a change of load between them shows as a difference "
                     "between the in-memory runs: trust the ratio only when they agree.")
        return "\n".join(lines) + "\n"

    def goals(self) -> list[tuple[str, str, bool | None]]:
        """(goal, figure, met) for every goal that this run measured (met is None if a figure is missing)."""
        out: list[tuple[str, str, bool | None]] = []

        def add(goal: str, value: float, limit: float, percent: bool = False) -> None:
            figure = f"{fmt(100 * value, 0)} %" if percent else f"{fmt(value, 3 if goal.startswith('loader') else 2)}×"
            ok = None if math.isnan(value) else (value >= limit if percent else value <= limit)
            out.append((goal, figure, ok))

        for row in (r for r in self.infer if r.get("side") == "ours" and r.get("kind") == "onednn"):
            base = self._find(self.infer, model=row["model"], size=row["size"], side="paddleseg", kind="dynamic")
            where = f"{row['model']} {row['size']}²"
            add(f"fast backend ≥ {GOALS['infer_sgemm']:.0%} of the machine's limit, {where}", self.rate(row, 1)[1],
                GOALS["infer_sgemm"], percent=True)
            add(f"fast backend ≤ {GOALS['infer_ratio']}× PaddleSeg dynamic at equal threads, {where}",
                row["seconds"] / base["seconds"] if base else float("nan"), GOALS["infer_ratio"])
        for ours in (r for r in self.train if r["side"] == "ours"):
            same = self._find(self.train, model=ours["model"], size=ours["size"], side="paddleseg",
                              threads=self.machine["cores"])
            add(f"train step ≤ {GOALS['train_ratio']}× PaddleSeg at equal threads, {ours['model']} {ours['size']}²",
                ours["seconds"] / same["seconds"] if same else float("nan"), GOALS["train_ratio"])
        for row in (r for r in self.shipped if r.get("kind") == "shipped-infer" and "seconds" in r):
            add(f"fast backend ≤ {GOALS['infer_ratio']}× PaddleSeg dynamic as it ships, equal threads, "
                f"{row['model']} {row['size']}²", self._shipped_infer(row)[1], GOALS["infer_ratio"])
        for ours in (r for r in self.shipped if r["side"] == "ours"):
            add(f"train step ≤ {GOALS['shipped_ratio']}× PaddleSeg as its users run it, {ours['model']} "
                f"{ours['size']}²", self._shipped_train(ours)[1], GOALS["shipped_ratio"])
        for ours in (r for r in self.rss if r["side"] == "ours"):
            theirs = self._find(self.rss, model=ours["model"], phase=ours["phase"], size=ours["size"], side="paddleseg")
            add(f"peak memory ≤ {GOALS['rss_ratio']}× PaddleSeg, {ours['model']} {ours['phase']} {ours['size']}²",
                rss_ratio(ours, theirs, False), GOALS["rss_ratio"])
        if self.stall:
            best = min(self.stall, key=lambda r: r["ratio"])
            tried = ", ".join(str(r["workers"]) for r in self.stall)
            add(f"loader stall ≤ {GOALS['stall']} ({best['workers']} workers, the best of {tried})", best["ratio"],
                GOALS["stall"])
        return out

    def _goals_table(self) -> str:
        goals = self.goals()
        if not goals:
            return ""
        lines = ["## Goals\n", "| goal | measured | |", "|---|---|---|"]
        lines += [f"| {goal} | {figure} | {met(ok)} |" for goal, figure, ok in goals]
        note = ("\nThe inference goals are stated for PSPNet and DeepLabv3 at 512²; rows at other sizes are this "
                "run's settings.") if any(s != 512 for s in self.args.infer_sizes) else ""
        return "\n".join(lines) + "\n" + note + "\n"

    def _notes(self) -> str:
        calls = "\n".join(f"  - {name}: `{PADDLESEG_CALLS[name]}`; ours: backbone `{OUR_BACKBONE}`, decoder "
                          f"`{OUR_DECODERS[name]}`" for name in self.args.models)
        return f"""## How it is measured

- Models, 19 classes, no auxiliary heads, random weights (seed 0):
{calls}
  (DeepLabv3's ASPP rates are those of PaddleSeg's Cityscapes OS8 config; its multi-grid [1, 2, 4] in layer4 is
  left out on both sides.) Two differences change neither parameters nor MACs: our ResNet follows timm in
  dilating a dilated stage's first 3×3 conv at the previous stage's rate (layer3: 1, layer4: 2; PaddleSeg: 2 and
  4) and in a 2×2 stride-1 average pool on that block's shortcut.
- Inputs: ours take 0–255 RGB and normalise inside the model (one subtraction and division per batch, counted in
  its time); PaddleSeg's take the normalised batch its data loader produces. Same random images and labels
  (19 classes, an ignored band), the same batch every step.
- Our training step is the engine's: `StepRunner.run` (seeding, the loss from `create_loss` — our
  cross-entropy — backward, the non-finite-loss check, `optimizer.step`, `clear_grad`) with the optimizer of
  `build_optimizer` (SGD momentum 0.9, L2 decay 4e-5, poly schedule). PaddleSeg's: its model's logits,
  `paddle.nn.functional.cross_entropy(logits, label, axis=1, ignore_index=255)` (its own CrossEntropyLoss fails
  on int64 labels under paddle 3.3), `loss.backward()`, `paddle.optimizer.Momentum` (0.9, weight decay 4e-5,
  poly schedule), `step`, `clear_grad`, `float(loss)`. Learning rate {LR} on both sides.
- Threads are switched with `paddle.base.core.set_num_threads` before each timed run; numpy's sgemm uses its own
  BLAS threads. Paddle Inference runs with `set_cpu_math_library_num_threads` = the core count.
- FLOPs: 2 × the multiply-accumulates of every Conv2D and Linear layer (forward hooks: output elements × input
  channels per group × kernel area); pooling, BatchNorm, activations, resizing and the loss are not counted
  (`paddle.flops` fails on paddle 3.3). A training step is counted as 3 forwards (forward, and a backward of
  about twice its work). These are nominal FLOPs: a kernel that skips work — oneDNN's, for taps of a widely
  dilated 3×3 conv that fall wholly into the padding of a small map (ASPP rates 12–36 on a 16×16 map at 128²),
  or a Winograd algorithm — can exceed 100 % of the limit.
- On a GPU every figure here moves: the CPU-specific parts are MKL's code path (`MKL_DEBUG_CPU_TYPE`), oneDNN
  (Paddle Inference's CPU kernels and bf16) and VNNI (INT8 through onnxruntime); on a GPU, cuDNN and TensorRT take
  their place, the limit is the GPU's tensor-core rate, and the input pipeline rather than the step is the usual
  bottleneck.
- PaddleSeg's model is saved with `paddle.jit.save` as is (logits; PaddleSeg's own export adds an argmax) and run
  by our `PaddleInferenceBackend`, so both exports run under the same Paddle Inference settings.
- Peak memory: `--child` processes, one per side, model, phase and size; Paddle's CPU allocator keeps memory it
  freed, so VmHWM is the high-water mark of the whole run of that process.
"""


def fmt_load(load: tuple[float, ...]) -> str:
    """A load-average triple."""
    return ", ".join(f"{v:.2f}" for v in load)


def shipped_cell(row: dict[str, Any] | None) -> str:
    """'seconds (MKL type)' of an as-shipped training row, or its error."""
    if row is None:
        return "—"
    if "seconds" not in row:
        return row.get("error", "—")
    return f"{fmt(row['seconds'])} (MKL type {row.get('mkl_debug_cpu_type') or 'default'})"


def rss_cell(row: dict[str, Any] | None) -> str:
    """'imports / model / peak' MB, or the error."""
    if row is None:
        return "—"
    if "error" in row:
        return f"failed: {row['error']}"
    return f"{row['imports_mb']:.0f} / {row['loaded_mb']:.0f} / {row['peak_mb']:.0f}"


def rss_ratio(ours: dict[str, Any], theirs: dict[str, Any] | None, above_imports: bool) -> float:
    """Peak ours ÷ peak PaddleSeg (optionally each less its imports' RSS); NaN if either failed."""
    if theirs is None or "peak_mb" not in ours or "peak_mb" not in theirs:
        return float("nan")
    if above_imports:
        return (ours["peak_mb"] - ours["imports_mb"]) / (theirs["peak_mb"] - theirs["imports_mb"])
    return ours["peak_mb"] / theirs["peak_mb"]


# ------------------------------------------------------------------ main

def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--paddleseg", type=Path, help="folder holding a PaddleSeg 2.8 install (pip --target); "
                                                       "default: import it from the environment")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="training input sides")
    parser.add_argument("--infer-sizes", type=int, nargs="+", default=[512], help="inference input sides")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed runs per case (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per case first")
    parser.add_argument("--threads", type=int, default=0, help="the 'core count' threads (0: the available cores)")
    parser.add_argument("--max-param-diff", type=int, default=0,
                        help="stop if the two sides' parameter counts differ by more than this")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-stall", action="store_true")
    parser.add_argument("--rss-steps", type=int, default=2, help="training steps (or forwards) per memory process")
    parser.add_argument("--stall-model", choices=MODELS, default="deeplabv3")
    parser.add_argument("--stall-crop", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    parser.add_argument("--stall-steps", type=int, default=5)
    parser.add_argument("--stall-images", type=int, default=8, help="synthetic 1024×2048 image/label pairs")
    parser.add_argument("--stall-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--mkl", choices=["auto", "default"], default="auto",
                        help="MKL code path of this process, for both sides (the engine's runtime.mkl_code_path; "
                             "auto = MKL's AVX2/AVX-512 path on non-Intel CPUs)")
    parser.add_argument("--skip-shipped", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def phase(results: Results, label: str, fn: Callable[[], Any]) -> Any:
    """Run one phase; a failure is recorded in the results (and its traceback printed), not raised."""
    try:
        return fn()
    except Exception as exc:
        traceback.print_exc()
        results.errors.append(f"{label}: {first_line(exc)}")
        return None
    finally:
        write_results(results)


def write_results(results: Results) -> None:
    """Write RESULTS.md (after every phase, so an interrupted run keeps what it measured)."""
    results.args.out.parent.mkdir(parents=True, exist_ok=True)
    results.args.out.write_text(results.markdown(), encoding="utf-8")


def compare_models(results: Results, name: str, threads: int, folder: Path) -> None:
    """Every in-process measurement of model ``name``: parameters, MACs, training, inference."""
    args = results.args
    models = {"ours": our_model(name), "paddleseg": paddleseg_model(name)}
    params = {side: count_parameters(model) for side, model in models.items()}
    difference = params["ours"] - params["paddleseg"]
    print(f"[{name}] parameters: semsegpaddle {params['ours']:,}, PaddleSeg {params['paddleseg']:,} "
          f"(difference {difference:+,})", flush=True)
    if abs(difference) > args.max_param_diff:
        raise SystemExit(f"{name}: parameter counts differ by {difference:+,} (semsegpaddle {params['ours']:,}, "
                         f"PaddleSeg {params['paddleseg']:,}), more than --max-param-diff {args.max_param_diff}: "
                         "the two models are not the same architecture")
    set_threads(threads)
    sizes = sorted(set(args.sizes) | set(args.infer_sizes))
    macs = {side: {s: forward_macs(model, s, side == "paddleseg") for s in sizes} for side, model in models.items()}
    results.models[name] = {"params": params, "macs": macs}
    write_results(results)
    if not args.skip_train:
        results.train += phase(results, f"{name} training", lambda: measure_train(
            name, models, args.sizes, args, threads, results.sgemm)) or []
    if not args.skip_infer:
        results.infer += phase(results, f"{name} inference", lambda: measure_inference(
            name, models, args.infer_sizes, args, threads, folder, results.sgemm)) or []


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path

    mkl = choose_mkl_code_path(args.mkl)  # as the engine does, before the first MKL call: both sides get it
    version = import_paddleseg(args.paddleseg)
    import paddle

    from semsegpaddle.core.common.runtime import quiet_paddle
    from semsegpaddle.core.common.runtime import set_threads as set_core_threads

    quiet_paddle()
    paddle.set_device("cpu")
    threads = set_core_threads(args.threads)
    args.threads = threads
    sgemm = Sgemm()
    sgemm.sample(5)
    results = Results(args, shlex.join([Path(sys.executable).name, *sys.argv]), machine_info(version, threads), sgemm)
    results.machine["mkl"] = mkl
    from machine_limit import measure_limit  # beside this script

    results.limit = measure_limit()
    print(f"{results.machine['cpu']}, {threads} threads, paddle {paddle.__version__}, PaddleSeg {version}; "
          f"numpy sgemm {results.sgemm_rate:.1f} GFLOP/s; limit {results.limit_rate:.1f} GFLOP/s "
          f"({results.limit['kernels']})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            compare_models(results, name, threads, Path(tmp))
    if not args.skip_shipped:
        for name in args.models:
            results.shipped += phase(results, f"{name} as shipped",
                                     functools.partial(measure_shipped, name, args, threads)) or []
    if not args.skip_rss:
        for name in args.models:
            results.rss += phase(results, f"{name} memory", functools.partial(measure_rss, name, args, threads)) or []
    if not args.skip_stall:
        results.stall += phase(results, "loader stall", lambda: measure_stall(args, threads)) or []
    sgemm.sample(5)
    write_results(results)
    print("\n" + results.markdown())
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
