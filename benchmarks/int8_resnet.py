"""INT8 on a trained ResNet-50: where the accuracy goes, and what each remedy buys.

The export's int8 recipe (``semseg export --int8``) keeps the quick-start HRNet model within 0.2 mIoU
of float32, but refuses a DeepLabv3 on ResNet-50 (plain stem, output stride 8) trained on the
embedded dataset. This script measures why, on that model (trained into ``--run`` first when the
folder has no checkpoint, ~12 min on 2 cores):

    .venv/bin/python benchmarks/int8_resnet.py --run /tmp/r50run --results benchmarks/RESULTS.md

Every variant is calibrated on the same ``--calib-images`` train images and scored like the export
scores: pixel agreement and mIoU against the float32 masks on the held-back val images, plus its
own mIoU against the labels of the whole val split, and seconds per batch at ``--size``² in
onnxruntime (fp32 and int8 taking turns). Variants:

- the export's choices (minmax), then entropy, percentile (onnxruntime's 99.999) and percentile
  99.9 calibration;
- the export's model with onnxruntime's graph optimisations off: quantization simulated in float32
  (no int8 kernel runs), which tells rounding of the 8-bit grid apart from the int8 kernels;
- 16-bit activations (uint16; weights stay int8);
- empirical bias correction: each quantized convolution's bias shifted, one convolution after the
  other in graph order, so its per-channel mean output on the calibration images equals float32's;
- the ``--fallback`` most sensitive convolutions kept in float32, sensitivity being the pixel
  agreement when that convolution alone is quantized (one model per convolution).

With ``--results``, the tables replace the part of that file between this script's two marker
comments (appended the first time).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from backends import interleaved  # noqa: E402
from int8 import session, write_results  # noqa: E402

BEGIN, END = "<!-- benchmarks/int8_resnet.py: begin -->", "<!-- benchmarks/int8_resnet.py: end -->"
#: the run trained when ``--run`` has no checkpoint: the quick start's recipe on ResNet-50
TRAIN_OVERRIDES = ["model.backbone.name=resnet", "model.backbone.depth=50", "model.backbone.output_stride=8",
                   "model.decoder.in_level=-1", "model.decoder.channels=128"]


def trained_run(run: Path) -> Path:
    """``run``, trained by ``semseg train`` with :data:`TRAIN_OVERRIDES` when it has no best checkpoint."""
    if not (run / "model_best.safetensors").is_file():
        semseg = HERE.parent / ".venv" / "bin" / "semseg"
        subprocess.run([str(semseg) if semseg.is_file() else "semseg", "train", *TRAIN_OVERRIDES,
                        f"runtime.output_dir={run}", "runtime.progress=false"], check=True)
    return run


def unoptimised_runner(path: Path, threads: int = 0) -> Any:
    """An onnxruntime session of ``path`` with every graph optimisation off: Q/DQ pairs stay float32
    arithmetic, and every tensor keeps its name (no fusion)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def unoptimised_session(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running ``path`` on a batch through :func:`unoptimised_runner`."""
    runner = unoptimised_runner(path, threads)
    name = runner.get_inputs()[0].name
    return lambda x: runner.run(None, {name: x})[0]


def channel_means(model: Any, tensors: list[str], images: Sequence[np.ndarray], work: Path) -> list[np.ndarray]:
    """Per-channel means of the float tensors ``tensors`` of the ONNX ``model`` over ``images``."""
    import onnx
    from onnx import helper

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    present = {output.name for output in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in tensors if t not in present)
    path = work / "probe.onnx"
    onnx.save(probe, str(path))
    runner = unoptimised_runner(path)
    name = runner.get_inputs()[0].name
    sums = [0.0] * len(tensors)
    for batch in images:
        for index, value in enumerate(runner.run(tensors, {name: batch})):
            sums[index] = sums[index] + value.mean(axis=(0, 2, 3))
    return [total / len(images) for total in sums]


def bias_corrected(int8_path: Path, prepared_path: Path, images: Sequence[np.ndarray], out: Path, work: Path) -> int:
    """Write ``out``: ``int8_path`` with each quantized convolution's int32 bias shifted, in graph
    order, so that its per-channel mean output on ``images`` equals the float32 model's; returns
    the number of convolutions corrected."""
    import onnx
    from onnx import numpy_helper

    quantized, reference = onnx.load(str(int8_path)), onnx.load(str(prepared_path))
    initializers = {init.name: init for init in quantized.graph.initializer}
    producers = {output: node for node in quantized.graph.node for output in node.output}
    float_nodes = {node.name: node for node in reference.graph.node}
    convs = [node for node in quantized.graph.node if node.op_type == "Conv" and len(node.input) > 2
             and getattr(producers.get(node.input[2]), "op_type", "") == "DequantizeLinear"
             and node.name in float_nodes]
    # the quantizer drops a Relu after a convolution (the uint8 range clamps) and gives the
    # convolution the Relu's output name: compare with the float convolution's own output
    targets = channel_means(reference, [float_nodes[c.name].output[0] for c in convs], images, work)
    for index, conv in enumerate(convs):
        got = channel_means(quantized, [conv.output[0]], images, work)[0]
        dequantize = producers[conv.input[2]]
        bias, scale = initializers[dequantize.input[0]], numpy_helper.to_array(initializers[dequantize.input[1]])
        values = numpy_helper.to_array(bias).astype(np.int64) - np.round((got - targets[index]) / scale).astype(np.int64)
        bias.CopyFrom(numpy_helper.from_array(values.astype(np.int32), bias.name))
    onnx.save(quantized, str(out))
    return len(convs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(Path(tempfile.gettempdir()) / "semseg_r50run"))
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--fallback", default="4,8,16", help="numbers of most sensitive convolutions kept fp32")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "semseg_bench_int8_resnet"))
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--results", default=None, help="a markdown file whose section to (re)write")
    args = parser.parse_args()

    import semsegpaddle as ss
    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
    from semsegpaddle.core.common.runtime import available_cores
    from semsegpaddle.core.inference import quantize

    choose_mkl_code_path("auto")
    threads = args.threads or available_cores()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = trained_run(Path(args.run))
    config = ss.load_config(str(run / "config.yaml"), [f"runtime.threads={threads}", "runtime.progress=false"])
    fp32_dir = work / "fp32"
    ss.export(config, fp32_dir, run / "model_best.safetensors", onnx=True)
    prepared = work / "prepared.onnx"
    quantize.prepare_for_quantization(fp32_dir / "model.onnx", prepared, work)
    settings = quantize.int8_settings(config, args.calib_images)
    classes = len(json.loads((fp32_dir / "export_info.json").read_text())["class_names"])
    fp32 = session(prepared, threads)
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, 3, args.size, args.size)).astype(np.float32)
    for cache in work.glob("calibration_*.json"):
        cache.unlink()

    def make(name: str, **options: Any) -> Path:
        method = options.pop("method", "minmax")
        settings.method = method
        path = work / f"{name}.onnx"
        quantize.quantize_model(fp32_dir / "model.onnx", path, settings, work,
                                calibration_cache=work / f"calibration_{method}.json", **options)
        return path

    rows: list[dict[str, Any]] = []

    def score(label: str, model: Callable, path: Path | None, timed: Callable | None = None) -> float:
        report = quantize.compare_models(fp32, model, settings.held_back, classes, labels=settings.held_back_labels)
        miou, fp32_miou = report.labels_miou_int8, report.labels_miou_fp32
        timed = timed or model
        seconds = interleaved({"fp32": lambda: fp32(x), "int8": lambda: timed(x)}, args.repeat)
        rows.append({"variant": label, "agreement": report.agreement, "miou_vs_fp32": report.miou_vs_fp32,
                     "miou": miou, "fp32_miou": fp32_miou, "fp32_s": seconds["fp32"], "int8_s": seconds["int8"]})
        print(f"| {label} | {report.agreement:.2%} | {report.miou_vs_fp32:.2%} | {100 * miou:.2f} "
              f"({100 * (miou - fp32_miou):+.2f}) | {seconds['fp32']:.3f} | {seconds['int8']:.3f} |", flush=True)
        return report.agreement

    print(f"{settings.source}")
    print("| variant | pixel agreement | mIoU vs fp32 masks | val mIoU (vs fp32) | fp32 s | int8 s |")
    print("|---|---|---|---|---|---|")
    default = make("minmax")
    score("export default: minmax", session(default, threads), default)
    for label, name, options in (("entropy calibration", "entropy", {"method": "entropy"}),
                                 ("percentile calibration (99.999)", "percentile", {"method": "percentile"}),
                                 ("percentile calibration (99.9)", "percentile_999",
                                  {"method": "percentile", "extra_options": {"CalibPercentile": 99.9}})):
        if name == "percentile_999":
            (work / "calibration_percentile.json").unlink(missing_ok=True)
        path = make(name, **options)
        score(label, session(path, threads), path)
    score("export default, simulated (graph optimisations off: no int8 kernel)",
          unoptimised_session(default, threads), default)
    path = make("uint16", activations="uint16")
    score("uint16 activations (int8 weights)", session(path, threads), path)
    corrected = work / "bias_corrected.onnx"
    count = bias_corrected(default, prepared, settings.calibration, corrected, work)
    score(f"export default + bias correction ({count} convolutions)", session(corrected, threads), corrected)

    import onnx

    prepared_model = onnx.load(str(prepared))
    classifier = set(quantize._classifier_nodes(prepared_model))
    convs = [node.name for node in prepared_model.graph.node if node.op_type == "Conv" and node.name not in classifier]
    sensitivity = []
    for index, name in enumerate(convs):
        path = make("single", only_nodes=[name])
        single = session(path, threads)
        report = quantize.compare_models(fp32, single, settings.held_back, classes)
        sensitivity.append((report.agreement, name))
        print(f"  sensitivity {index + 1}/{len(convs)} {name}: {report.agreement:.4%}", flush=True)
    sensitivity.sort()
    for count in (int(c) for c in args.fallback.split(",") if c):
        keep = [name for _, name in sensitivity[:count]]
        path = make(f"fallback_{count}", keep_nodes=keep)
        score(f"the {count} most sensitive of {len(convs)} convolutions kept fp32", session(path, threads), path)

    result = {"fp32_miou": rows[0]["fp32_miou"], "rows": rows, "sensitivity": sensitivity, "source": settings.source,
              "threads": threads, "size": args.size, "batch": args.batch}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    if args.results:
        write_results(Path(args.results), markdown(result), " ".join(["python", *sys.argv]), threads, (BEGIN, END),
                      "INT8 on a trained ResNet-50 (`benchmarks/int8_resnet.py`)")


def markdown(result: dict[str, Any]) -> list[str]:
    """The table of ``result`` as markdown lines."""
    source = result["source"]
    lines = [f"DeepLabv3 on ResNet-50 (plain stem, OS8) trained on the embedded dataset, float32 val mIoU "
             f"{100 * result['fp32_miou']:.2f}; calibrated on {source['calibration_images']} "
             f"{source['calibration_split']} images, agreement on {source['held_back_images']} held-back "
             f"{source['held_back_split']} images; time at {result['size']}², batch {result['batch']}, onnxruntime, "
             f"{result['threads']} threads:", "",
             "| variant | pixel agreement with fp32 | mIoU vs fp32 masks | val mIoU (change vs fp32) | fp32 s | int8 s |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {row['agreement']:.2%} | {row['miou_vs_fp32']:.2%} | "
                     f"{100 * row['miou']:.2f} ({100 * (row['miou'] - row['fp32_miou']):+.2f}) | "
                     f"{row['fp32_s']:.3f} | {row['int8_s']:.3f} |")
    worst = ", ".join(f"{name} {agreement:.2%}" for agreement, name in result["sensitivity"][:5])
    lines += ["", f"Most sensitive convolutions (agreement when quantized alone): {worst}."]
    return lines


if __name__ == "__main__":
    main()
