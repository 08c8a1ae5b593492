"""What can make our CPU training step faster than Paddle's native dygraph path? A/B measurements.

A by-hand benchmark (not a test). Each candidate is timed against Paddle's native path, A (native)
and B (candidate) interleaved — A, B, A, B, ... after a warm-up — so a change of machine load hits
both; the speed-up is the median of the per-pair ratios A/B (> 1: the candidate is faster), printed
with their min–max as a stability measure. Candidates that need another process environment
(variables read before the first kernel runs) are timed in two long-lived worker processes, called
alternately, one at a time.

Op level (forward + backward of one convolution, upstream gradient fixed, gradients for input and
weight, as inside a network) on the shapes of ResNet-50-v1d at output stride 8 and DeepLabv3's ASPP
for a ``--size`` input, batch ``--batch``:

  matmul1x1   1×1 conv as ``paddle.matmul(W[Cout,Cin], x[N,Cin,HW])`` in NCHW (outputs and gradients
              checked against conv2d first)
  numpy1x1    1×1 conv through numpy's BLAS in a PyLayer (copies in and out of Paddle); both sides
              idle ``--settle`` s after each run, as numpy's spinning BLAS threads otherwise slow
              Paddle's next kernel (inside a model step nothing idles: see its model row)
  nhwc        conv2d + batch_norm + ReLU with data_format NHWC vs NCHW
  relu_       in-place ReLU after conv + BN
  onednn      FLAGS_use_mkldnn/FLAGS_use_onednn (env before import, and paddle.set_flags at run time);
              also which kernel runs (Paddle's own log at GLOG_v=6: the "API kernel key")
  threads     paddle.base.core.set_num_threads vs OMP_NUM_THREADS/MKL_NUM_THREADS in the environment
  mkl         MKL_DEBUG_CPU_TYPE=7 (AVX-512) and =5 (AVX2): Paddle's bundled MKL 2019 picks a slow
              generic code path on non-Intel CPUs unless told; only where the CPU has those flags

Model level (one training step of DeepLabv3 on ResNet-50-v1d OS8, 19 classes, forward, cross-entropy,
backward, SGD-momentum step, gradients cleared): ``hostsync`` (``float(loss)`` every step vs never),
``compiled`` (the forward as one static program, ``train.compile: on``, vs the dynamic forward; both
models built from the same seed, their losses compared),
``mkl`` in workers, and each op-level winner (geometric-mean speed-up ≥ ``--win``) that can be
applied to the model (matmul1x1, numpy1x1: every 1×1 stride-1 Conv2D patched in this script, not in
the package).

Rates: FLOPs = 2·MACs forward, ×3 forward + backward, as a fraction of numpy's float32 2048³
matmul rate sampled throughout this run (rows printed on the way use the median so far; the final
table uses the run's median).

    .venv/bin/python benchmarks/train_step_options.py                       # ~7 min on 2 cores
    .venv/bin/python benchmarks/train_step_options.py --only mkl --model-steps 2
    .venv/bin/python benchmarks/train_step_options.py --mkl-cpu-type 7 --only matmul1x1,numpy1x1,nhwc,relu_
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLASSES, IGNORE = 19, 255
ALL = ("onednn", "threads", "mkl", "matmul1x1", "numpy1x1", "nhwc", "relu_", "hostsync", "compiled")
RESULT = "@@RESULT "  # prefix of a worker's answer line (Paddle may print other lines)


# ------------------------------------------------------------------ shapes and FLOPs

@dataclass(frozen=True)
class ConvShape:
    """One convolution of the network: channels, kernel, dilation, output side (square), stride."""

    cin: int
    cout: int
    k: int
    hw: int
    dilation: int = 1
    stride: int = 1

    @property
    def name(self) -> str:
        """E.g. ``1x1 1024→256 @32²`` or ``3x3 512→512 d4 @32²``."""
        dil = f" d{self.dilation}" if self.dilation > 1 else ""
        stride = f" s{self.stride}" if self.stride > 1 else ""
        return f"{self.k}x{self.k} {self.cin}→{self.cout}{dil}{stride} @{self.hw}²"

    def macs(self, batch: int) -> int:
        """Multiply-accumulates of the forward pass."""
        return batch * self.cout * self.hw * self.hw * self.cin * self.k * self.k

    def train_flops(self, batch: int) -> float:
        """FLOPs of forward + backward: 3 × 2 × MACs."""
        return 6.0 * self.macs(batch)


def network_shapes(size: int) -> dict[str, ConvShape]:
    """The dominant convs of ResNet-50-v1d OS8 + DeepLabv3 (rates 12/24/36) at a ``size``² input."""
    s4, s8 = size // 4, size // 8
    shapes = [
        ConvShape(256, 64, 1, s4), ConvShape(64, 256, 1, s4),           # layer1 reduce / expand
        ConvShape(1024, 256, 1, s8), ConvShape(256, 1024, 1, s8),       # layer3 (6 blocks)
        ConvShape(2048, 512, 1, s8), ConvShape(512, 2048, 1, s8),       # layer4 (3 blocks)
        ConvShape(256, 256, 3, s8, 2), ConvShape(512, 512, 3, s8, 4),   # layer3 / layer4 3×3
        ConvShape(2048, 256, 3, s8, 12),                                # ASPP atrous branch (×3)
    ]
    return {shape.name: shape for shape in shapes}


def pick(shapes: dict[str, ConvShape], which: str) -> list[ConvShape]:
    """Subsets: ``1x1``, ``3x3``, ``two`` (the big 1×1 and the layer4 3×3), ``all``."""
    values = list(shapes.values())
    if which == "1x1":
        return [s for s in values if s.k == 1]
    if which == "3x3":
        return [s for s in values if s.k == 3]
    if which == "two":
        return [values[4], values[7]]
    return values


# ------------------------------------------------------------------ process set-up (shared by workers)

def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def mkl_types_supported() -> dict[str, str]:
    """MKL_DEBUG_CPU_TYPE values this CPU can run: 7 needs AVX-512 F/CD/BW/DQ/VL, 5 needs AVX2 + FMA."""
    flags = cpu_flags()
    types = {}
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        types["7"] = "AVX-512"
    if {"avx2", "fma"} <= flags:
        types["5"] = "AVX2"
    return types


def mkl_version() -> str:
    """The version of the MKL bundled with Paddle (``paddle/libs/libmklml_intel.so``) and the CPU type
    its dispatcher uses in this process (``mkl_serv_cpu_detect``, an internal symbol of MKL 2019:
    0 is its generic path, 5 AVX2, 7 AVX-512). Call it only after this process's first MKL call or
    after MKL_DEBUG_CPU_TYPE is final: it fixes the type."""
    import paddle

    lib = Path(paddle.__file__).parent / "libs" / "libmklml_intel.so"
    if not lib.exists():
        return "no libmklml_intel.so in paddle/libs"
    mkl = ctypes.CDLL(str(lib))
    buffer = ctypes.create_string_buffer(256)
    mkl.MKL_Get_Version_String(buffer, len(buffer))
    detected = mkl.mkl_serv_cpu_detect() if hasattr(mkl, "mkl_serv_cpu_detect") else "unknown"
    return f"{buffer.value.decode().strip()}; dispatch CPU type {detected}"


def import_paddle(threads: int, thread_mode: str) -> Any:
    """Import Paddle quietly and set its threads (``api``: set_num_threads; ``env``: leave them to the
    environment's OMP_NUM_THREADS / MKL_NUM_THREADS)."""
    import warnings

    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    import paddle

    if thread_mode == "api":
        paddle.base.core.set_num_threads(threads)
    return paddle


# ------------------------------------------------------------------ op-level variants

class OpBench:
    """Tensors of one conv shape and its forward + backward variants (all on the same weights)."""

    def __init__(self, shape: ConvShape, batch: int, seed: int = 0) -> None:
        import paddle

        rng = np.random.default_rng(seed)
        side_in = shape.hw * shape.stride
        x = rng.standard_normal((batch, shape.cin, side_in, side_in), dtype=np.float32)
        w = rng.standard_normal((shape.cout, shape.cin, shape.k, shape.k), dtype=np.float32)
        w *= math.sqrt(2.0 / (shape.cin * shape.k * shape.k))
        g = rng.standard_normal((batch, shape.cout, shape.hw, shape.hw), dtype=np.float32)
        self.shape, self.batch = shape, batch
        self.x = paddle.to_tensor(x, stop_gradient=False)
        self.w = paddle.to_tensor(w, stop_gradient=False)
        self.g = paddle.to_tensor(g)
        self.x_nhwc = paddle.to_tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), stop_gradient=False)
        self.g_nhwc = paddle.to_tensor(np.ascontiguousarray(g.transpose(0, 2, 3, 1)))
        self.gamma = paddle.ones([shape.cout])
        self.gamma.stop_gradient = False
        self.beta = paddle.zeros([shape.cout])
        self.beta.stop_gradient = False
        self.mean, self.var = paddle.zeros([shape.cout]), paddle.ones([shape.cout])

    # --- the forward functions
    def conv(self, x: Any = None, fmt: str = "NCHW") -> Any:
        """Paddle's conv2d."""
        import paddle.nn.functional as F

        s = self.shape
        return F.conv2d(self.x if x is None else x, self.w, stride=s.stride, padding=s.dilation * (s.k - 1) // 2,
                        dilation=s.dilation, data_format=fmt)

    def matmul1x1(self) -> Any:
        """The 1×1 conv as one batched matmul in NCHW, no transposes (strided: slice first)."""
        import paddle

        s, x = self.shape, self.x
        if s.stride > 1:
            x = x[:, :, ::s.stride, ::s.stride]
        n, c, h, w = x.shape
        out = paddle.matmul(self.w.reshape([s.cout, s.cin]), x.reshape([n, c, h * w]))
        return out.reshape([n, s.cout, h, w])

    def numpy1x1(self) -> Any:
        """The 1×1 (stride 1) conv through numpy's BLAS inside a PyLayer."""
        return numpy_conv1x1()(self.x, self.w)

    def conv_bn(self, fmt: str) -> Any:
        """conv2d then batch_norm (training statistics) in layout ``fmt``."""
        import paddle.nn.functional as F

        y = self.conv(self.x_nhwc if fmt == "NHWC" else self.x, fmt)
        return F.batch_norm(y, self.mean, self.var, self.gamma, self.beta, training=True, data_format=fmt)

    def forward(self, variant: str) -> Any:
        """The output of ``variant`` (conv, matmul1x1, numpy1x1, cbr_nchw, cbr_nhwc, cbr_inplace)."""
        import paddle.nn.functional as F

        if variant in ("cbr_nchw", "cbr_nhwc"):
            return F.relu(self.conv_bn("NHWC" if variant == "cbr_nhwc" else "NCHW"))
        if variant == "cbr_inplace":
            return F.relu_(self.conv_bn("NCHW"))
        return getattr(self, variant)()

    def run(self, variant: str) -> float:
        """Seconds of one forward + backward of ``variant`` (gradients cleared before)."""
        for tensor in (self.x, self.w, self.x_nhwc, self.gamma, self.beta):
            tensor.clear_gradient(set_to_zero=False)
        tic = time.perf_counter()
        out = self.forward(variant)
        out.backward(self.g_nhwc if variant == "cbr_nhwc" else self.g)
        return time.perf_counter() - tic

    def grads(self, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output (NCHW), dX and dW of ``variant`` as numpy arrays."""
        self.run(variant)
        out = self.forward(variant).numpy()
        x = self.x_nhwc if variant == "cbr_nhwc" else self.x
        dx = x.grad.numpy()
        if variant == "cbr_nhwc":
            out, dx = out.transpose(0, 3, 1, 2), dx.transpose(0, 3, 1, 2)
        return out, dx, self.w.grad.numpy()


_NUMPY_CONV: Any = None


def numpy_conv1x1() -> Any:
    """A PyLayer computing a stride-1 1×1 conv and its gradients with numpy's matmul (built once)."""
    global _NUMPY_CONV
    if _NUMPY_CONV is not None:
        return _NUMPY_CONV.apply
    import paddle
    from paddle.autograd import PyLayer

    class NumpyConv1x1(PyLayer):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            n, c, h, wd = x.shape
            xn, wn = x.numpy().reshape(n, c, h * wd), w.numpy().reshape(w.shape[0], c)
            ctx.save_for_backward(x, w)
            ctx.arrays = (xn, wn)
            return paddle.to_tensor(np.matmul(wn, xn).reshape(n, -1, h, wd))

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            xn, wn = ctx.arrays
            n, c, hw = xn.shape
            gn = grad.numpy().reshape(n, -1, hw)
            dx = np.matmul(wn.T, gn).reshape(n, c, *grad.shape[2:])
            dw = sum(gn[i] @ xn[i].T for i in range(n)).reshape(wn.shape[0], c, 1, 1)
            return paddle.to_tensor(dx), paddle.to_tensor(dw)

    _NUMPY_CONV = NumpyConv1x1
    return NumpyConv1x1.apply


def max_abs_diffs(bench: OpBench, a: str, b: str) -> tuple[float, float, float]:
    """max |a − b| of output, dX, dW between two variants."""
    return tuple(float(np.abs(u - v).max()) for u, v in zip(bench.grads(a), bench.grads(b)))  # type: ignore


# ------------------------------------------------------------------ model level

def model_config() -> Any:
    """DeepLabv3 on ResNet-50-v1d OS8 configured as PaddleSeg's Cityscapes config (benchmarks/compare_paddleseg.py);
    MKL's code path left to this script (``create_model`` would otherwise choose it)."""
    import semsegpaddle as ss

    return ss.load_config(None, [
        "model.backbone.name=resnet", "model.backbone.depth=50", "model.backbone.stem=deep_avgdown",
        "model.backbone.output_stride=8", "model.backbone.pretrained=null", "model.decoder.name=deeplabv3",
        "model.decoder.channels=256", "model.decoder.atrous_rates=[12, 24, 36]", "model.decoder.in_level=-1",
        "model.decoder.conv_bias=true", "model.aux.level=null", "train.lr=0.001",
        "runtime.mkl_code_path=default",  # the script sets MKL_DEBUG_CPU_TYPE per worker itself
    ])


class ModelBench:
    """Our model, loss and optimizer (the engine's builders) with one fixed random batch."""

    def __init__(self, size: int, batch: int, seed: int = 0, compiled: bool = False) -> None:
        import paddle

        import semsegpaddle as ss
        from semsegpaddle.core.engine.compiled import CompilePlan, training_forward
        from semsegpaddle.core.engine.optim import build_optimizer
        from semsegpaddle.core.model.losses import create_loss

        config = model_config()
        paddle.seed(seed)
        self.model = ss.create_model(config, num_classes=CLASSES)
        self.model.train()
        self.forward = training_forward(self.model, CompilePlan(compiled, "benchmark"))
        self.optimizer, _ = build_optimizer(self.model, config)
        self.criterion = create_loss(config, self.model, IGNORE)
        rng = np.random.default_rng(seed)
        self.x = paddle.to_tensor(rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
        self.y = paddle.to_tensor(rng.integers(0, CLASSES, (batch, size, size)).astype(np.int64))
        self.macs = conv_macs(self.model, size) * batch
        self.last_loss = float("nan")
        self.steps = 0

    def run(self, sync: bool = True) -> float:
        """Seconds of one training step; ``sync`` reads the loss on the host (as the engine does)."""
        import paddle

        paddle.seed(self.steps)  # the same dropout masks in both benches of an A/B pair
        self.steps += 1
        tic = time.perf_counter()
        loss, _ = self.criterion(self.forward(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        if sync:
            self.last_loss = float(loss)
        return time.perf_counter() - tic


def conv_macs(model: Any, size: int) -> int:
    """Forward multiply-accumulates of every Conv2D of ``model`` for one ``size``² image."""
    import paddle

    total = 0

    def count(layer: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        w = layer.weight.shape
        total += int(np.prod(output.shape)) * w[1] * w[2] * w[3]

    hooks = [m.register_forward_post_hook(count) for m in model.sublayers() if isinstance(m, paddle.nn.Conv2D)]
    model.eval()
    with paddle.no_grad():
        model(paddle.zeros([1, 3, size, size]))
    model.train()
    for hook in hooks:
        hook.remove()
    return total


#: switched by the A/B loop; read by the patched 1×1 convolutions (None: Paddle's conv2d)
PATCH: dict[str, str | None] = {"mode": None}


def patch_1x1(model: Any) -> int:
    """Give every 1×1, stride-1, unpadded, ungrouped NCHW Conv2D a forward that, while
    ``PATCH["mode"]`` is ``matmul1x1`` or ``numpy1x1``, computes it as a batched paddle.matmul or
    through numpy (same parameters); returns how many were patched. Patching twice is harmless."""
    import paddle

    patched = 0
    for layer in model.sublayers():
        if not isinstance(layer, paddle.nn.Conv2D):
            continue
        w = layer.weight.shape
        if (w[2], w[3]) != (1, 1) or layer._stride != [1, 1] or layer._groups != 1 or \
                any(p != 0 for p in np.ravel(layer._padding)) or layer._data_format != "NCHW":
            continue
        native = getattr(layer, "_native_forward", layer.forward)
        layer._native_forward = native

        def forward(x: Any, layer: Any = layer, native: Callable[..., Any] = native) -> Any:
            if PATCH["mode"] is None:
                return native(x)
            n, c, h, wd = x.shape
            cout = layer.weight.shape[0]
            if PATCH["mode"] == "numpy1x1":
                out = numpy_conv1x1()(x, layer.weight)
            else:
                out = paddle.matmul(layer.weight.reshape([cout, c]), x.reshape([n, c, h * wd]))
                out = out.reshape([n, cout, h, wd])
            return out if layer.bias is None else out + layer.bias.reshape([1, cout, 1, 1])

        layer.forward = forward
        patched += 1
    return patched


# ------------------------------------------------------------------ worker processes

def worker_main(args: argparse.Namespace) -> None:
    """Answer timing requests on stdin, one JSON line each, until EOF."""
    import_paddle(args.threads, args.thread_mode)
    benches: dict[str, OpBench] = {}
    model: ModelBench | None = None
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {}
        if request["kind"] == "op":
            shape = ConvShape(**request["shape"])
            bench = benches.setdefault(shape.name, OpBench(shape, request["batch"]))
            answer["t"] = bench.run(request["variant"])
        elif request["kind"] == "model":
            if model is None:
                model = ModelBench(request["size"], request["batch"])
            answer["t"] = model.run()
            answer["loss"] = model.last_loss
        elif request["kind"] == "info":
            answer = {"mkl": mkl_version(), "env": {k: os.environ.get(k) for k in request["keys"]}}
        time.sleep(request.get("settle", 0.0))  # let this process's spinning OpenMP threads go idle
        print(RESULT + json.dumps(answer), flush=True)


class Worker:
    """A child process of this script in worker mode, with extra environment variables."""

    def __init__(self, label: str, env: dict[str, str], args: argparse.Namespace, thread_mode: str = "api") -> None:
        self.label = label
        full_env = {**os.environ, **env}
        for key in [k for k, v in env.items() if v is None]:
            full_env.pop(key, None)
        # the log lives as long as the worker; close() removes it
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            "w+", prefix="train-step-options-worker-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--thread-mode", thread_mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=full_env, bufsize=1)
        self.settle = args.settle

    def call(self, **request: Any) -> dict[str, Any]:
        """Send one request, wait for its answer."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({**request, "settle": self.settle}) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        self.log.seek(0)
        raise RuntimeError(f"worker {self.label} died:\n{self.log.read()[-3000:]}")

    def close(self) -> None:
        """End the worker (EOF on its stdin) and wait for it."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        os.unlink(self.log.name)


# ------------------------------------------------------------------ A/B loop and results

class Sgemm:
    """numpy's float32 n³ matmul rate, sampled throughout the run (GFLOP/s)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a, self.b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        self.a @ self.b
        self.rates: list[float] = []

    def sample(self, count: int = 2, settle: float = 0.0) -> None:
        """Time ``count`` more matmuls."""
        for _ in range(count):
            tic = time.perf_counter()
            self.a @ self.b
            self.rates.append(2 * self.n**3 / (time.perf_counter() - tic) / 1e9)
        time.sleep(settle)

    @property
    def rate(self) -> float:
        """Median rate so far."""
        return statistics.median(self.rates)


@dataclass
class Row:
    """One A/B comparison."""

    candidate: str
    case: str
    a_label: str
    b_label: str
    a: list[float]
    b: list[float]
    flops: float = 0.0
    note: str = ""
    ratios: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.ratios = [x / y for x, y in zip(self.a, self.b)]

    @property
    def speedup(self) -> float:
        """Median of the per-pair ratios A/B."""
        return statistics.median(self.ratios)

    def cells(self, sgemm: float) -> list[str]:
        """Table cells: case, A/B medians, speed-up [min–max], GFLOP/s (% of sgemm) of A and B."""
        ma, mb = statistics.median(self.a), statistics.median(self.b)

        def rate(t: float) -> str:
            if not self.flops:
                return "–"
            g = self.flops / t / 1e9
            return f"{g:.0f} ({100 * g / sgemm:.0f} %)"

        return [self.candidate, self.case, f"{self.a_label} {fmt_t(ma)}", f"{self.b_label} {fmt_t(mb)}",
                f"{self.speedup:.2f} [{min(self.ratios):.2f}–{max(self.ratios):.2f}]", rate(ma), rate(mb), self.note]


def fmt_t(seconds: float) -> str:
    """ms below 10 s, else s."""
    return f"{seconds * 1e3:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def ab(run_a: Callable[[], float], run_b: Callable[[], float], warmup: int,
       reps: int) -> tuple[list[float], list[float]]:
    """Interleave A, B, A, B, ...: ``warmup`` pairs dropped, ``reps`` pairs kept."""
    a, b = [], []
    for i in range(warmup + reps):
        ta, tb = run_a(), run_b()
        if i >= warmup:
            a.append(ta)
            b.append(tb)
    return a, b


class Report:
    """Collects rows, prints each as it comes and a table at the end."""

    HEADER = ("candidate", "case", "A (native) median", "B median", "speed-up A/B [min–max]",
              "A GFLOP/s (% sgemm)", "B GFLOP/s (% sgemm)", "note")

    def __init__(self, sgemm: Sgemm) -> None:
        self.sgemm, self.rows, self.notes = sgemm, [], []  # type: ignore[var-annotated]

    def add(self, row: Row) -> Row:
        """Record and print one row."""
        self.rows.append(row)
        print("  " + " | ".join(row.cells(self.sgemm.rate)), flush=True)
        return row

    def note(self, text: str) -> None:
        """Record and print a finding that is not a timing."""
        self.notes.append(text)
        print("  * " + text, flush=True)

    def table(self) -> str:
        """All rows as a markdown table, then the notes."""
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(row.cells(self.sgemm.rate)) + " |" for row in self.rows]
        return "\n".join(lines + [""] + [f"- {n}" for n in self.notes])


def geomean(values: list[float]) -> float:
    """Geometric mean."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


# ------------------------------------------------------------------ candidates

def op_rows(report: Report, candidate: str, shapes: list[ConvShape], a: Callable[[ConvShape], float],
            b: Callable[[ConvShape], float], labels: tuple[str, str], args: argparse.Namespace,
            note: Callable[[ConvShape], str] = lambda s: "") -> list[Row]:
    """A/B each shape; returns the rows."""
    rows = []
    for shape in shapes:
        ta, tb = ab(lambda s=shape: a(s), lambda s=shape: b(s), args.warmup, args.reps)
        rows.append(report.add(Row(candidate, shape.name, *labels, ta, tb, shape.train_flops(args.batch), note(shape))))
        report.sgemm.sample(1, args.settle)
    return rows


def in_process_ops(report: Report, candidate: str, shapes: list[ConvShape], variants: tuple[str, str],
                   args: argparse.Namespace, labels: tuple[str, str] | None = None, settle: float = 0.0) -> list[Row]:
    """A/B two OpBench variants in this process, after checking that they agree; ``settle`` seconds of
    idling after every run (for variants whose thread pool keeps spinning after it returns)."""
    benches = {s.name: OpBench(s, args.batch) for s in shapes}

    def timed(shape: ConvShape, variant: str) -> float:
        seconds = benches[shape.name].run(variant)
        time.sleep(settle)
        return seconds

    def agreement(shape: ConvShape) -> str:
        out, dx, dw = max_abs_diffs(benches[shape.name], *variants)
        return f"max|Δ| out {out:.1e} dX {dx:.1e} dW {dw:.1e}"

    notes = {s.name: agreement(s) for s in shapes}
    return op_rows(report, candidate, shapes, lambda s: timed(s, variants[0]), lambda s: timed(s, variants[1]),
                   labels or variants, args, lambda s: notes[s.name])


def worker_ops(report: Report, candidate: str, shapes: list[ConvShape], workers: tuple[Worker, Worker],
               args: argparse.Namespace) -> list[Row]:
    """A/B the plain conv in two worker processes."""
    def runner(worker: Worker) -> Callable[[ConvShape], float]:
        return lambda s: worker.call(kind="op", shape=s.__dict__, batch=args.batch, variant="conv")["t"]

    return op_rows(report, candidate, shapes, runner(workers[0]), runner(workers[1]),
                   (workers[0].label, workers[1].label), args)


def kernel_keys(env: dict[str, str], set_flags: bool = False) -> str:
    """The kernel keys Paddle logs (GLOG_v=6) for conv2d and conv2d_grad in a fresh process."""
    code = (
        "import warnings; warnings.filterwarnings('ignore')\n"
        "import paddle, paddle.nn.functional as F\n"
        + ("paddle.set_flags({'FLAGS_use_mkldnn': True, 'FLAGS_use_onednn': True})\n" if set_flags else "")
        + "x = paddle.randn([1, 8, 8, 8]); x.stop_gradient = False\n"
        "w = paddle.randn([8, 8, 3, 3]); w.stop_gradient = False\n"
        "F.conv2d(x, w, padding=1).sum().backward()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, env={**os.environ, **env, "GLOG_v": "6"},
                          capture_output=True, text=True, timeout=300)
    keys = []
    for line in proc.stderr.splitlines():
        for op in ("conv2d", "conv2d_grad"):
            marker = f"] {op} API kernel key: "
            if marker in line:
                keys.append(f"{op} {line.split(marker)[1].strip()}")
    return "; ".join(dict.fromkeys(keys)) or f"no kernel key logged (exit {proc.returncode})"


def run_onednn(report: Report, shapes: dict[str, ConvShape], args: argparse.Namespace) -> None:
    """FLAGS_use_mkldnn / FLAGS_use_onednn: env before import (workers), set_flags at run time, kernel keys."""
    import paddle

    onednn_env = {"FLAGS_use_mkldnn": "1", "FLAGS_use_onednn": "1"}
    report.note(f"kernel keys, native: {kernel_keys({})}")
    report.note(f"kernel keys, env FLAGS_use_mkldnn=1 FLAGS_use_onednn=1: {kernel_keys(onednn_env)}")
    report.note(f"kernel keys, paddle.set_flags(use_mkldnn/use_onednn=True): {kernel_keys({}, set_flags=True)}")
    workers = (Worker("native", {}, args), Worker("env-onednn", onednn_env, args))
    try:
        worker_ops(report, "onednn env", pick(shapes, "two"), workers, args)
    finally:
        for w in workers:
            w.close()
    benches = {s.name: OpBench(s, args.batch) for s in pick(shapes, "two")}

    def flagged(shape: ConvShape) -> float:
        paddle.set_flags({"FLAGS_use_mkldnn": True, "FLAGS_use_onednn": True})
        try:
            return benches[shape.name].run("conv")
        finally:
            paddle.set_flags({"FLAGS_use_mkldnn": False, "FLAGS_use_onednn": False})

    op_rows(report, "onednn set_flags", pick(shapes, "two"), lambda s: benches[s.name].run("conv"), flagged,
            ("native", "set_flags"), args)


def run_threads(report: Report, shapes: dict[str, ConvShape], args: argparse.Namespace) -> None:
    """set_num_threads at run time vs OMP_NUM_THREADS/MKL_NUM_THREADS in the environment."""
    n = str(args.threads)
    workers = (Worker("set_num_threads", {}, args),
               Worker("env OMP/MKL", {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}, args, thread_mode="env"))
    try:
        worker_ops(report, "threads", pick(shapes, "two"), workers, args)
    finally:
        for w in workers:
            w.close()


def run_mkl(report: Report, shapes: dict[str, ConvShape], args: argparse.Namespace) -> None:
    """MKL_DEBUG_CPU_TYPE: every op shape with the best type, the other type on two shapes; the model
    step with each."""
    supported = mkl_types_supported()
    if not supported:
        report.note("mkl: the CPU has neither AVX-512 (F/BW/DQ/VL) nor AVX2+FMA: nothing to force")
        return
    types = list(supported)
    for index, value in enumerate(types):
        workers = (Worker("native", {}, args),
                   Worker(f"MKL_DEBUG_CPU_TYPE={value}", {"MKL_DEBUG_CPU_TYPE": value}, args))
        try:
            if index == 0:
                report.note(f"mkl, native worker: {workers[0].call(kind='info', keys=[])['mkl']}")
            report.note(f"mkl, {workers[1].label} worker: {workers[1].call(kind='info', keys=[])['mkl']}")
            subset = pick(shapes, args.mkl_shapes if index == 0 else "two")
            worker_ops(report, f"mkl {supported[value]}", subset, workers, args)
            if "model" in args.levels:
                model_rows(report, f"mkl {supported[value]}", workers, args)
        finally:
            for w in workers:
                w.close()


def model_rows(report: Report, candidate: str, workers: tuple[Worker, Worker], args: argparse.Namespace) -> Row:
    """A/B the model step in two workers; the losses of their first steps must agree."""
    req = {"kind": "model", "size": args.size, "batch": args.batch}
    first = [w.call(**req) for w in workers]
    delta = abs(first[0]["loss"] - first[1]["loss"])
    ta, tb = ab(lambda: workers[0].call(**req)["t"], lambda: workers[1].call(**req)["t"],
                max(0, args.model_warmup - 1), args.model_steps)
    flops = 6.0 * macs_of_model(args)
    row = report.add(Row(candidate, f"model step {args.size}² b{args.batch}", workers[0].label, workers[1].label,
                         ta, tb, flops, f"first-step loss |Δ| {delta:.1e}"))
    report.sgemm.sample(1, args.settle)
    return row


_MACS: dict[tuple[int, int], int] = {}


def macs_of_model(args: argparse.Namespace) -> int:
    """Forward conv MACs of the model at ``--size``, batch ``--batch`` (built once, here)."""
    key = (args.size, args.batch)
    if key not in _MACS:
        import paddle

        import semsegpaddle as ss

        paddle.seed(0)
        _MACS[key] = conv_macs(ss.create_model(model_config(), num_classes=CLASSES), args.size) * args.batch
    return _MACS[key]


def run_in_process_model(report: Report, args: argparse.Namespace, winners: list[str]) -> None:
    """Model-level A/B in this process: host sync per step, and the 1×1 patches that won at op level."""
    bench = ModelBench(args.size, args.batch)
    flops = 6.0 * bench.macs
    case = f"model step {args.size}² b{args.batch}"
    for _ in range(args.model_warmup):
        bench.run()
    if "hostsync" in args.only:
        ta, tb = ab(lambda: bench.run(sync=True), lambda: bench.run(sync=False), 0, args.model_steps)
        report.add(Row("hostsync", case, "float(loss)", "no sync", ta, tb, flops))
        report.sgemm.sample(1, args.settle)
    if "compiled" in args.only:
        other = ModelBench(args.size, args.batch, compiled=True)
        for _ in range(args.model_warmup):
            other.run()
        ta, tb = ab(bench.run, other.run, 0, args.model_steps)
        same = "same losses" if bench.last_loss == other.last_loss else \
            f"losses differ: {bench.last_loss} vs {other.last_loss}"
        report.add(Row("compiled", case, "dynamic", "to_static", ta, tb, flops, same))
        report.sgemm.sample(1, args.settle)
    for mode in [w for w in winners if w in ("matmul1x1", "numpy1x1")]:
        count = patch_1x1(bench.model)

        def patched(mode: str = mode) -> float:
            PATCH["mode"] = mode
            try:
                return bench.run()
            finally:
                PATCH["mode"] = None

        ta, tb = ab(bench.run, patched, 1, args.model_steps)
        report.add(Row(mode, case, "conv2d", mode, ta, tb, flops, f"{count} Conv2D patched"))
        report.sgemm.sample(1, args.settle)


# ------------------------------------------------------------------ main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="input side the op shapes and the model step use")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="Paddle's CPU threads (set_num_threads)")
    p.add_argument("--reps", type=int, default=5, help="A/B pairs kept per op shape")
    p.add_argument("--warmup", type=int, default=1, help="A/B pairs dropped per op shape")
    p.add_argument("--model-steps", type=int, default=3, help="A/B pairs of model steps kept")
    p.add_argument("--model-warmup", type=int, default=1, help="model steps dropped before the A/B pairs")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated candidates among {','.join(ALL)}")
    p.add_argument("--levels", default="op,model", help="op, model or both")
    p.add_argument("--shapes", default="all", choices=("1x1", "3x3", "two", "all"),
                   help="shapes of the in-process candidates nhwc and relu_ (matmul/numpy1x1: always 1×1)")
    p.add_argument("--mkl-shapes", default="all", choices=("1x1", "3x3", "two", "all"))
    p.add_argument("--win", type=float, default=1.05, help="op-level geometric-mean speed-up that qualifies "
                   "a candidate for the model step")
    p.add_argument("--mkl-cpu-type", default=None, help="set MKL_DEBUG_CPU_TYPE in THIS process before its "
                   "first kernel (to measure the in-process candidates on top of it)")
    p.add_argument("--sgemm-n", type=int, default=2048)
    p.add_argument("--settle", type=float, default=0.25, help="seconds a process idles after each "
                   "measurement, so its spinning OpenMP threads leave the cores to the other side")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--thread-mode", default="api", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown candidates {sorted(unknown)}; choose among {', '.join(ALL)}")
    args.levels = [level.strip() for level in args.levels.split(",")]
    return args


def main() -> None:
    """Run the chosen candidates and print the table."""
    args = parse_args()
    if args.worker:
        worker_main(args)
        return
    if args.mkl_cpu_type:
        os.environ["MKL_DEBUG_CPU_TYPE"] = args.mkl_cpu_type  # before this process's first MKL call
    started = time.perf_counter()
    paddle = import_paddle(args.threads, "api")
    sgemm = Sgemm(args.sgemm_n)
    sgemm.sample(3, args.settle)
    report = Report(sgemm)
    shapes = network_shapes(args.size)
    print(f"paddle {paddle.__version__}, {args.threads} threads, size {args.size}², batch {args.batch}, "
          f"MKL_DEBUG_CPU_TYPE here: {os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset')} ({mkl_version()}), "
          f"load {os.getloadavg()}")
    print(f"numpy sgemm {args.sgemm_n}³: {sgemm.rate:.0f} GFLOP/s (first samples)")
    print("  " + " | ".join(Report.HEADER), flush=True)
    winners = []
    if "op" in args.levels:
        if "onednn" in args.only:
            run_onednn(report, shapes, args)
        if "threads" in args.only:
            run_threads(report, shapes, args)
        ones = pick(shapes, "1x1")
        for name, variant in (("matmul1x1", "matmul1x1"), ("numpy1x1", "numpy1x1")):
            if name in args.only:
                # numpy's OpenBLAS threads spin after each call and slow Paddle's next kernel: both
                # sides of numpy1x1 idle after each run so neither pays for the other's threads
                rows = in_process_ops(report, name, ones, ("conv", variant), args,
                                      settle=args.settle if name == "numpy1x1" else 0.0)
                if geomean([r.speedup for r in rows]) >= args.win:
                    winners.append(name)
        if "matmul1x1" in args.only:  # the strided form, checked only (ResNet-v1d has no strided 1×1)
            out, dx, dw = max_abs_diffs(OpBench(ConvShape(64, 32, 1, 8, stride=2), args.batch), "conv", "matmul1x1")
            report.note(f"matmul1x1 strided (x[:, :, ::2, ::2]) vs conv2d stride 2: max|Δ| out {out:.1e} "
                        f"dX {dx:.1e} dW {dw:.1e}")
        if "nhwc" in args.only:
            in_process_ops(report, "nhwc", pick(shapes, args.shapes), ("cbr_nchw", "cbr_nhwc"), args,
                           ("NCHW conv+BN+ReLU", "NHWC"))
        if "relu_" in args.only:
            in_process_ops(report, "relu_", pick(shapes, args.shapes), ("cbr_nchw", "cbr_inplace"), args,
                           ("relu", "relu_"))
    if "mkl" in args.only:
        run_mkl(report, shapes, args)
    if "model" in args.levels and ("hostsync" in args.only or "compiled" in args.only
                                   or set(winners) & {"matmul1x1", "numpy1x1"}):
        run_in_process_model(report, args, winners)
    sgemm.sample(3, args.settle)
    print(f"\nnumpy sgemm {args.sgemm_n}³ over the run: median {sgemm.rate:.0f} GFLOP/s "
          f"(min {min(sgemm.rates):.0f}, max {max(sgemm.rates):.0f}); op-level winners (geomean ≥ {args.win}): "
          f"{', '.join(winners) or 'none'}; {time.perf_counter() - started:.0f} s, load {os.getloadavg()}\n")
    print(report.table())


if __name__ == "__main__":
    main()
