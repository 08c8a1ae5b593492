"""INT8 inference: throughput and accuracy of ``semseg export --int8`` against float32.

1. Speed (``--speed-models``, default DeepLabv3 and PSPNet on ResNet-50 at output stride 8, random
   weights, 19 classes; the models of ``backends.py``): at ``--size``² with batch ``--batch``, the
   float32 export in Paddle Inference + oneDNN, the same export's model.onnx in onnxruntime, and
   the int8 model the export writes (calibrated on ``--speed-calib`` random images: the weights
   are random, so only the time means anything), run in turn after a warm-up; medians of
   ``--repeat`` calls.
2. Accuracy on the quick start's model (HRNet-W18-small DeepLabv3 trained by ``semseg train`` on
   the embedded dataset into ``--run``; trained there first when absent): float32 mIoU on the
   validation split, then, for each quantization variant, the mIoU of the int8 model, its pixel
   agreement and mIoU against the float32 masks on the held-back validation images, and its time
   at ``--size``². The variants are the choices ``--int8`` makes (calibration method, uint8 vs int8
   activations, which operators are quantized, the classifier kept in float32) one at a time.

    .venv/bin/python benchmarks/int8.py                                  # both parts
    .venv/bin/python benchmarks/int8.py --skip-speed --run /tmp/qs_run   # accuracy only
    .venv/bin/python benchmarks/int8.py --results benchmarks/RESULTS.md  # also (re)write its INT8 section

With ``--results``, the tables replace the part of that file between the two ``int8.py`` marker
comments (appended the first time); the rest of the file is left as it is.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from backends import export_random_model, interleaved  # noqa: E402

#: (label, calibration method, activations, op types (None: all), keep the classifier in float32)
VARIANTS = [
    ("export default: minmax, uint8 activations, Conv/MatMul/Gemm/Relu, classifier fp32", "minmax", "uint8",
     ("Conv", "MatMul", "Gemm", "Relu"), True),
    ("entropy calibration", "entropy", "uint8", ("Conv", "MatMul", "Gemm", "Relu"), True),
    ("percentile calibration", "percentile", "uint8", ("Conv", "MatMul", "Gemm", "Relu"), True),
    ("int8 activations", "minmax", "int8", ("Conv", "MatMul", "Gemm", "Relu"), True),
    ("classifier quantized too", "minmax", "uint8", ("Conv", "MatMul", "Gemm", "Relu"), False),
    ("Relu left float32", "minmax", "uint8", ("Conv", "MatMul", "Gemm"), True),
    ("Add quantized too", "minmax", "uint8", ("Conv", "MatMul", "Gemm", "Relu", "Add"), True),
    ("every op type onnxruntime quantizes (Add, Mul, Gather, Concat, Resize...)", "minmax", "uint8", None, False),
]


BEGIN, END = "<!-- benchmarks/int8.py: begin -->", "<!-- benchmarks/int8.py: end -->"


def session(path: Path, threads: int) -> Any:
    """A function running the ONNX file ``path`` on a batch."""
    from semsegpaddle.core.inference.backends import onnx_session

    runner = onnx_session(path, threads)
    name = runner.get_inputs()[0].name
    return lambda x: runner.run(None, {name: x})[0]


def speed(models: list[str], size: int, batch: int, calib: int, repeat: int, threads: int, work: Path) -> list[dict]:
    """Part 1: seconds per batch of each backend and precision."""
    from semsegpaddle.core.inference.backends import PaddleInferenceBackend
    from semsegpaddle.core.inference.quantize import Int8Settings, quantize_model

    rows = []
    rng = np.random.default_rng(0)
    for name in models:
        folder = export_random_model(name, work)
        int8_path = folder / "model_int8.onnx"
        if not int8_path.is_file():
            calibration = [rng.uniform(0, 255, (1, 3, size, size)).astype(np.float32) for _ in range(calib)]
            quantize_model(folder / "model.onnx", int8_path, Int8Settings(calibration, []), folder)
        paddle_inference = PaddleInferenceBackend(folder, threads=threads)
        fp32, int8 = session(folder / "model.onnx", threads), session(int8_path, threads)
        x = rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
        seconds = interleaved({"paddle-inference fp32": lambda: paddle_inference(x), "onnxruntime fp32": lambda: fp32(x),
                               "onnxruntime int8": lambda: int8(x)}, repeat)
        rows.append({"model": name, "size": size, "batch": batch, **seconds})
        base = seconds["paddle-inference fp32"]
        print(f"| {name} R50 OS8 | {size}² | {batch} | {base:.3f} | {seconds['onnxruntime fp32']:.3f} | "
              f"{seconds['onnxruntime int8']:.3f} | {base / seconds['onnxruntime int8']:.2f}× | "
              f"{seconds['onnxruntime fp32'] / seconds['onnxruntime int8']:.2f}× |", flush=True)
    return rows


def quickstart_run(run: Path) -> Path:
    """The quick start's run folder, trained by ``semseg train`` when it has no best checkpoint."""
    if not (run / "model_best.safetensors").is_file():
        semseg = HERE.parent / ".venv" / "bin" / "semseg"
        command = [str(semseg) if semseg.is_file() else "semseg", "train", f"runtime.output_dir={run}",
                   "runtime.progress=false"]
        subprocess.run(command, check=True)
    return run


def accuracy(run: Path, size: int, batch: int, calib_images: int, repeat: int, threads: int, work: Path) -> list[dict]:
    """Part 2: each variant on the quick start's model."""
    import semsegpaddle as ss
    from semsegpaddle.core.inference import quantize

    weights = quickstart_run(run) / "model_best.safetensors"
    config = ss.load_config(str(run / "config.yaml"), [f"runtime.threads={threads}", "runtime.progress=false"])
    fp32_dir = work / "quickstart_fp32"
    ss.export(config, fp32_dir, weights, onnx=True)
    fp32_miou = ss.evaluate(config, backend="onnxruntime", model_dir=fp32_dir).miou
    settings = quantize.int8_settings(config, calib_images)
    fp32 = session(fp32_dir / "model.onnx", threads)
    x = np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
    classes = len(json.loads((fp32_dir / "export_info.json").read_text())["class_names"])
    print(f"float32 mIoU {fp32_miou:.4f} (val split); {settings.source}")
    rows = []
    for label, method, activations, op_types, keep in VARIANTS:
        folder = work / f"quickstart_{len(rows)}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(fp32_dir, folder)
        settings.method = method
        try:
            kept = quantize.quantize_model(folder / "model.onnx", folder / "model_int8.onnx", settings, folder,
                                           op_types=op_types, activations=activations, keep_classifier=keep)
        except Exception as exc:  # a variant that fails is a result too
            print(f"| {label} | failed: {str(exc)[:120]} | | | | |", flush=True)
            rows.append({"variant": label, "failed": str(exc)})
            continue
        info = json.loads((folder / "export_info.json").read_text())
        (folder / "export_info.json").write_text(json.dumps({**info, "precision": "int8"}))
        int8 = session(folder / "model_int8.onnx", threads)
        report = quantize.compare_models(fp32, int8, settings.held_back, classes, kept)
        miou = ss.evaluate(config, backend="onnxruntime", model_dir=folder).miou
        seconds = interleaved({"fp32": lambda: fp32(x), "int8": lambda: int8(x)}, repeat)
        row = {"variant": label, "miou": miou, "fp32_miou": fp32_miou, "agreement": report.agreement,
               "miou_vs_fp32": report.miou_vs_fp32, "fp32_s": seconds["fp32"], "int8_s": seconds["int8"]}
        rows.append(row)
        print(f"| {label} | {100 * miou:.2f} ({100 * (miou - fp32_miou):+.2f}) | {report.agreement:.2%} | "
              f"{report.miou_vs_fp32:.2%} | {seconds['fp32']:.3f} | {seconds['int8']:.3f} |", flush=True)
    return rows


def write_results(path: Path, lines: list[str], command: str, threads: int, markers: tuple[str, str] = (BEGIN, END),
                  title: str = "INT8 inference (`benchmarks/int8.py`)") -> None:
    """Replace the section of ``path`` between ``markers`` (appended when absent) by ``title`` and ``lines``."""
    begin, end = markers
    load = " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())
    section = [begin, f"## {title}", "",
               f"- measured {datetime.date.today()}, {platform.processor() or platform.machine()}, {threads} threads, "
               f"load average at the end {load} (other jobs shared the machine: compare within a table only)",
               f"- command: `{command}`", "", *lines, end]
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + "\n".join(section) + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed-models", default="deeplabv3,pspnet")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--speed-calib", type=int, default=4, help="random calibration images of the speed models")
    parser.add_argument("--calib-images", type=int, default=32, help="calibration images of the quick-start model")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--run", default=str(Path(tempfile.gettempdir()) / "semseg_quickstart"),
                        help="the quick start's run folder (trained there when absent)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "semseg_bench_backends"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--results", default=None, help="a markdown file whose INT8 section to (re)write")
    args = parser.parse_args()

    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
    from semsegpaddle.core.common.runtime import available_cores

    choose_mkl_code_path("auto")
    threads = args.threads or available_cores()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"threads": threads}
    if not args.skip_speed:
        print("| model | size | batch | Paddle Inference + oneDNN fp32 s | onnxruntime fp32 s | onnxruntime int8 s | "
              "int8 vs Paddle Inference | int8 vs onnxruntime fp32 |")
        print("|---|---|---|---|---|---|---|---|")
        result["speed"] = speed(args.speed_models.split(","), args.size, args.batch, args.speed_calib, args.repeat,
                                threads, work)
    if not args.skip_accuracy:
        print(f"| quick-start model, int8 variant | val mIoU (vs fp32) | pixel agreement | mIoU vs fp32 masks | "
              f"fp32 s ({args.size}², batch {args.batch}) | int8 s |")
        print("|---|---|---|---|---|---|")
        result["accuracy"] = accuracy(Path(args.run), args.size, args.batch, args.calib_images, args.repeat, threads,
                                      work)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    if args.results:
        write_results(Path(args.results), markdown(result, args.size, args.batch), " ".join(["python", *sys.argv]),
                      threads)


def markdown(result: dict[str, Any], size: int, batch: int) -> list[str]:
    """The tables of ``result`` as markdown lines."""
    lines = []
    if result.get("speed"):
        lines += [f"Throughput, random weights (only the time means anything), batch {batch} at {size}², seconds per "
                  f"batch (median of the runs, the three taking turns):", "",
                  "| model | Paddle Inference + oneDNN fp32 | onnxruntime fp32 | onnxruntime int8 | int8 ÷ Paddle "
                  "Inference | int8 ÷ onnxruntime fp32 |", "|---|---|---|---|---|---|"]
        for row in result["speed"]:
            base, fp32, int8 = row["paddle-inference fp32"], row["onnxruntime fp32"], row["onnxruntime int8"]
            lines.append(f"| {row['model']} R50 OS8 {row['size']}² | {base:.3f} | {fp32:.3f} | {int8:.3f} | "
                         f"{base / int8:.2f}× faster | {fp32 / int8:.2f}× faster |")
        lines.append("")
    if result.get("accuracy"):
        lines += [f"Accuracy, the quick-start model (`semseg train`, embedded dataset, val split); time at {size}², "
                  f"batch {batch}, onnxruntime:", "",
                  "| int8 variant | val mIoU (change vs fp32) | pixel agreement with fp32 | mIoU vs fp32 masks | "
                  "fp32 s | int8 s |", "|---|---|---|---|---|---|"]
        for row in result["accuracy"]:
            if "failed" in row:
                lines.append(f"| {row['variant']} | failed: {row['failed'][:100]} | | | | |")
                continue
            lines.append(f"| {row['variant']} | {100 * row['miou']:.2f} ({100 * (row['miou'] - row['fp32_miou']):+.2f}) "
                         f"| {row['agreement']:.2%} | {row['miou_vs_fp32']:.2%} | {row['fp32_s']:.3f} | "
                         f"{row['int8_s']:.3f} |")
    return lines


if __name__ == "__main__":
    main()
