"""INT8 inference through Paddle's own tools: static post-training quantization + oneDNN int8.

The route (``semseg export --int8`` goes through onnxruntime instead; this measures the
Paddle-native alternative on the same images):

1. the trained model of ``--run`` (built and loaded by ``semsegpaddle.api``) is saved with
   ``paddle.jit.save`` in the old program format (``model.pdmodel``);
2. ``paddle.static.quantization.PostTrainingQuantization`` quantizes its convolutions with each
   of ``--algos`` (``abs_max``, ``avg``, ``KL``, ...), ONNX-style quantize/dequantize pairs, calibrated on
   exactly the images ``semseg export --int8`` calibrates on (``quantize.int8_settings``: 32 images
   of the training split);
3. Paddle Inference runs the float32 program and each int8 one with oneDNN (int8 kernels switched on
   for the latter), ``--threads`` threads.

For each algorithm it prints the pixel agreement and mIoU of the int8 masks against the float32
masks on the held-back validation images of ``semseg export --int8`` (``quantize.compare_models``,
so the figures compare with that export's), the mIoU of both against those images' labels (with
the embedded dataset's 64 val images, the whole validation split), and seconds per batch of
``--batch`` random images at ``--size``² (float32 and int8 called in turn after a warm-up, median
of ``--repeat`` calls).

    .venv/bin/python benchmarks/int8_paddle.py --run /tmp/r50run --json /tmp/int8_paddle.json

Why the old program format: ``FLAGS_enable_pir_api=0`` is set before paddle is imported. With the
newer PIR format, saving a model quantized by dygraph PTQ (``paddle.quantization.PTQ``) fails with
``ValueError: (InvalidArgument) Each value of attribute 'shape' is expected to be no less than 0``,
and the weights of dygraph PTQ, once saved, gave all-background int8 output; static PTQ needs the
``.pdmodel`` program. The package's ``inference_friendly_ops`` export context fails in the old
format, so the model is saved plainly.
"""
from __future__ import annotations

import os

os.environ["FLAGS_enable_pir_api"] = "0"  # before paddle is imported: static PTQ reads .pdmodel programs

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from backends import interleaved  # noqa: E402

MODEL_FILE, PARAMS_FILE = "model.pdmodel", "model.pdiparams"
QUANTIZED_OP_TYPES = ["conv2d", "depthwise_conv2d"]


def export_fp32(run: Path, folder: Path) -> tuple[dict[str, Any], int]:
    """Save the run's best model as an old-format program in ``folder``; its config and class count."""
    import paddle
    from paddle.static import InputSpec

    import semsegpaddle.api as ss

    config = ss.load_config(str(run / "config.yaml"), ["runtime.progress=false"])
    weights = run / "model_best.safetensors"
    num_classes = ss.checkpoint_labels(config, weights)["num_classes"]
    model = ss.load_model(config, weights, num_classes)
    paddle.jit.save(model, str(folder / "model"), input_spec=[InputSpec([None, 3, None, None], "float32", "x")])
    return config, num_classes


def quantize(fp32_dir: Path, int8_dir: Path, algo: str, calibration: Sequence[np.ndarray]) -> None:
    """Static post-training quantization of the convolutions of ``fp32_dir``'s program into ``int8_dir``."""
    import paddle
    from paddle.static.quantization import PostTrainingQuantization

    paddle.enable_static()
    try:
        ptq = PostTrainingQuantization(
            executor=paddle.static.Executor(paddle.CPUPlace()), model_dir=str(fp32_dir), model_filename=MODEL_FILE,
            params_filename=PARAMS_FILE, data_loader=lambda: iter([{"x": batch} for batch in calibration]),
            batch_nums=len(calibration), algo=algo, quantizable_op_type=QUANTIZED_OP_TYPES, onnx_format=True,
            is_full_quantize=False)
        ptq.quantize()
        ptq.save_quantized_model(str(int8_dir), model_filename=MODEL_FILE, params_filename=PARAMS_FILE)
    finally:
        paddle.disable_static()


def predictor(folder: Path, threads: int, int8: bool,
              optimized_dir: Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a float32 batch to logits: ``folder``'s program in Paddle Inference + oneDNN
    (int8 kernels when ``int8``); the optimized program is also saved in ``optimized_dir`` when given."""
    from paddle import inference

    config = inference.Config(str(folder / MODEL_FILE), str(folder / PARAMS_FILE))
    config.disable_gpu()
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(threads)
    (getattr(config, "enable_onednn", None) or config.enable_mkldnn)()
    if int8:
        (getattr(config, "enable_onednn_int8", None) or config.enable_mkldnn_int8)()
    if optimized_dir is not None and hasattr(config, "enable_save_optim_model"):
        config.set_optim_cache_dir(str(optimized_dir))
        config.enable_save_optim_model(True)
    runner = inference.create_predictor(config)
    feed = runner.get_input_handle(runner.get_input_names()[0])
    fetch = runner.get_output_handle(runner.get_output_names()[0])

    def run(batch: np.ndarray) -> np.ndarray:
        feed.reshape(batch.shape)
        feed.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        runner.run()
        return fetch.copy_to_cpu()

    return run


def int8_onednn_ops(optimized_dir: Path) -> int | None:
    """Operators of the optimized program saved in ``optimized_dir`` that run as oneDNN int8
    (``mkldnn_data_type`` int8); None when no program was saved."""
    import paddle

    files = sorted(optimized_dir.glob("*.pdmodel"))
    if not files:
        return None
    paddle.enable_static()
    try:
        program = paddle.static.Program.parse_from_string(files[0].read_bytes())
    finally:
        paddle.disable_static()
    return sum(1 for block in program.blocks for op in block.ops
               if op.has_attr("mkldnn_data_type") and op.attr("mkldnn_data_type") == "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="/tmp/r50run", help="a run folder with config.yaml and model_best.safetensors")
    parser.add_argument("--algos", default="abs_max,avg,KL", help="comma-separated PostTrainingQuantization algos")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "semseg_bench_int8_paddle"))
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    from semsegpaddle.core.common.mkl_path import choose_mkl_code_path
    from semsegpaddle.core.common.runtime import available_cores
    from semsegpaddle.core.inference import quantize as onnx_quantize

    choose_mkl_code_path("auto")
    threads = args.threads or available_cores()
    work = Path(args.work)
    fp32_dir = work / "fp32"
    fp32_dir.mkdir(parents=True, exist_ok=True)
    config, num_classes = export_fp32(Path(args.run), fp32_dir)
    settings = onnx_quantize.int8_settings(config)
    fp32 = predictor(fp32_dir, threads, int8=False)
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, 3, args.size, args.size)).astype(np.float32)
    print(f"{settings.source}; {threads} threads", flush=True)
    rows = []
    for algo in args.algos.split(","):
        int8_dir, optimized_dir = work / f"int8_{algo}", work / f"int8_{algo}_optimized"
        for folder in (int8_dir, optimized_dir):  # nothing left from an earlier run is read back
            shutil.rmtree(folder, ignore_errors=True)
        quantize(fp32_dir, int8_dir, algo, settings.calibration)
        int8 = predictor(int8_dir, threads, int8=True, optimized_dir=optimized_dir)
        report = onnx_quantize.compare_models(fp32, int8, settings.held_back, num_classes,
                                              labels=settings.held_back_labels)
        miou, fp32_miou = report.labels_miou_int8, report.labels_miou_fp32
        seconds = interleaved({"fp32": lambda: fp32(x), "int8": lambda: int8(x)}, args.repeat)
        rows.append({"algo": algo, "agreement": report.agreement, "miou_vs_fp32": report.miou_vs_fp32,
                     "held_back_images": report.held_back_images, "miou": miou, "fp32_miou": fp32_miou,
                     "fp32_s": seconds["fp32"], "int8_s": seconds["int8"],
                     "int8_onednn_ops": int8_onednn_ops(optimized_dir)})
    print(f"\n| algo | pixel agreement | mIoU vs fp32 masks | val mIoU (change vs fp32) | fp32 s ({args.size}², "
          f"batch {args.batch}) | int8 s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['algo']} | {row['agreement']:.2%} | {row['miou_vs_fp32']:.2%} | {100 * row['miou']:.2f} "
              f"({100 * (row['miou'] - fp32_miou):+.2f}) | {row['fp32_s']:.3f} | {row['int8_s']:.3f} |")
    print("\noneDNN int8 operators: " + ", ".join(f"{row['algo']} {row['int8_onednn_ops']}" for row in rows))
    if args.json_out:
        result = {"threads": threads, "size": args.size, "batch": args.batch, "repeat": args.repeat,
                  "fp32_miou": fp32_miou, "source": settings.source, "rows": rows}
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
