"""The engine's own config keys: their types, defaults and meaning.

Component sections (``model.backbone``, ``model.decoder``, ``dataset``) hold ``name`` plus the
options that component declares; their valid keys come from the registry at validation time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal


@dataclass(frozen=True)
class Key:
    """One engine key: its type annotation, default, a one-line description and an optional
    value check (``check(value) -> bool``, with ``expect`` saying what passes)."""

    type: Any
    default: Any
    description: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""


def _positive(value: Any) -> bool:
    return value > 0


def _non_negative(value: Any) -> bool:
    return value >= 0


def _pair_of_positive(value: Any) -> bool:
    return len(value) == 2 and all(v > 0 for v in value)


def _non_empty(value: Any) -> bool:
    return len(value) > 0


def _increasing_positive(value: Any) -> bool:
    return all(v > 0 for v in value) and all(a < b for a, b in zip(value, value[1:]))


def _photometric(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if not isinstance(value, dict) or not set(value) <= {"brightness", "contrast", "saturation", "hue"}:
        return False
    ranges = [value.get(k) for k in ("contrast", "saturation") if value.get(k) is not None]
    brightness, hue = value.get("brightness"), value.get("hue")
    number = (int, float)
    return (all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, number) and not isinstance(x, bool)
                                                            for x in r) and 0 <= r[0] <= r[1] for r in ranges)
            and (brightness is None or (isinstance(brightness, number) and not isinstance(brightness, bool)
                                        and 0 <= brightness <= 255))
            and (hue is None or (isinstance(hue, int) and not isinstance(hue, bool) and 0 <= hue <= 90)))


PHOTOMETRIC_EXPECT = ("null/false, true, or a mapping with any of brightness (a number in 0-255), contrast and "
                      "saturation ([low, high] with 0 ≤ low ≤ high), hue (an integer in 0-90, OpenCV's 0-179 hue "
                      "scale), each null to leave that step out")
POSITIVE = {"check": _positive, "expect": "a number > 0"}
NON_NEGATIVE = {"check": _non_negative, "expect": "a number ≥ 0"}


@dataclass(frozen=True)
class ComponentSection:
    """A section naming a component of ``kind``; ``extra`` are engine keys allowed beside its options."""

    kind: str
    default_name: str
    extra: dict[str, Key]


@dataclass(frozen=True)
class ComponentList:
    """A list of sections, each naming a component of ``kind`` (e.g. the losses of one output);
    ``extra`` are engine keys allowed beside each component's options."""

    kind: str
    default: tuple[str, ...]
    extra: dict[str, Key]
    description: str = ""


LOSS_WEIGHT = {"weight": Key(float, 1.0, "weight of this loss in the sum", check=_non_negative, expect="a number ≥ 0")}

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]

SCHEMA: dict[str, Any] = {
    "model": {
        "backbone": ComponentSection("backbone", "resnet", {
            "pretrained": Key(Path | None, None, "weights file for the backbone (converted with semseg convert-weights, or a timm/torchvision checkpoint)"),
        }),
        "decoder": ComponentSection("decoder", "deeplabv3", {}),
        "aux": {
            "level": Key(int | None, None, "backbone level of the FCN auxiliary head (e.g. 2 = stride-16 stage), null for none"),
            "weight": Key(float, 0.4, "loss weight of the auxiliary head", **NON_NEGATIVE),
            "channels": Key(int, 256, "hidden channels of the auxiliary head", **POSITIVE),
            "conv_bias": Key(bool, False, "give the auxiliary head's 3×3 conv a bias (PaddleSeg's AuxLayer has one)"),
        },
        "align_corners": Key(bool, False, "align_corners of the final bilinear upsampling of the logits to the input size"),
        "pretrained": Key(str | None, None, "whole-model weights to start from (fine-tuning): a checkpoint of ours, a "
                          "PaddleSeg .pdparams, a torchvision .pth, or an http(s) URL of one (downloaded once into "
                          "$SEMSEG_CACHE); a classifier of another class count is re-initialised"),
        "class_names": Key(list[str] | None, None, "the classes the model predicts, for weights that do not record "
                           "them (imported models); null: the dataset's"),
        "palette": Key(list[list[int]] | None, None, "RGB colour per class for masks and overlays; null: the dataset's "
                       "(or a default one)"),
        "in_channels": Key(int, 3, "bands of the input images (3: RGB; e.g. 4 for RGB + near infrared, 1 for a "
                           "single band); model.mean and model.std need one entry per band", **POSITIVE),
        "mean": Key(list[float], IMAGENET_MEAN, "per-band mean subtracted inside the model (RGB inputs are 0-255); "
                    "one number per band of model.in_channels", check=_non_empty,
                    expect="three numbers (R, G, B), or one per band of model.in_channels"),
        "std": Key(list[float], IMAGENET_STD, "per-band std the model divides by; one number per band",
                   check=lambda v: _non_empty(v) and all(x > 0 for x in v),
                   expect="three positive numbers (R, G, B), or one per band of model.in_channels"),
    },
    "dataset": ComponentSection("dataset", "synthetic", {
        "train_split": Key(str, "train", "split used for training"),
        "val_split": Key(str, "val", "split used for evaluation"),
    }),
    "loss": {
        "main": ComponentList("loss", ("cross_entropy",), LOSS_WEIGHT,
                              "losses of the main output: a list of {name, weight, options...}"),
        "aux": ComponentList("loss", ("cross_entropy",), LOSS_WEIGHT,
                             "losses of every auxiliary pixel output (FCN aux head, decoders' pixel aux outputs)"),
    },
    "train": {
        "iters": Key(int, 1000, "number of optimisation steps", **POSITIVE),
        "batch_size": Key(int, 8, "images per micro-batch and per process (see accumulate)", **POSITIVE),
        "crop_size": Key(list[int], [512, 512], "training crop [height, width]",
                          check=_pair_of_positive, expect="[height, width], both > 0"),
        "scale_range": Key(list[float], [0.5, 2.0], "random rescale range [min, max] before cropping",
                            check=lambda v: _pair_of_positive(v) and v[0] <= v[1], expect="[min, max] with 0 < min ≤ max"),
        "flip": Key(bool, True, "random horizontal flip"),
        "optimizer": Key(Literal["sgd", "adamw"], "sgd", "sgd (with momentum, L2 decay) or adamw (decoupled decay)"),
        "nesterov": Key(bool, False, "Nesterov momentum (sgd)"),
        "lr": Key(float, 0.01, "base learning rate", **POSITIVE),
        "momentum": Key(float, 0.9, "SGD momentum (adamw: beta1)", check=lambda v: 0 <= v < 1, expect="a number in [0, 1)"),
        "weight_decay": Key(float, 4e-5, "weight decay (L2 for sgd, decoupled for adamw)", **NON_NEGATIVE),
        "power": Key(float, 0.9, "exponent of the poly learning-rate schedule", **NON_NEGATIVE),
        "warmup_iters": Key(int, 0, "linear warm-up steps from 0 to lr", **NON_NEGATIVE),
        "schedule": Key(Literal["poly", "cosine", "step"], "poly",
                        "learning-rate schedule after the warm-up: poly (power), cosine, or step (lr_steps, lr_gamma)"),
        "end_lr": Key(float, 0.0, "learning rate the poly and cosine schedules end at", **NON_NEGATIVE),
        "lr_steps": Key(list[int], [], "step schedule: after each of these steps (counted from the run's start, "
                        "past the warm-up) the lr is multiplied by lr_gamma", check=_increasing_positive,
                        expect="a list of increasing step numbers > 0"),
        "lr_gamma": Key(float, 0.1, "step schedule: factor applied at each of lr_steps", **POSITIVE),
        "backbone_lr_mult": Key(float, 1.0, "learning-rate factor of the backbone's parameters (0.1 trains the "
                                "heads at 10x the backbone's rate)", **NON_NEGATIVE),
        "decay_norm_bias": Key(bool, True, "apply weight decay to normalisation layers' weights and to biases "
                               "(false: decay only conv/linear weights)"),
        "accumulate": Key(int, 1, "micro-batches of batch_size whose gradients make one step (an effective batch "
                          "of batch_size x accumulate x processes)", **POSITIVE),
        "clip_grad_norm": Key(float, 0.0, "clip gradients to this global L2 norm (0: no clipping)", **NON_NEGATIVE),
        "amp": Key(Literal["off", "fp16", "bf16", False], "off",
                   "mixed precision (Paddle AMP O1): off, fp16 (GPU, with loss scaling) or bf16"),
        "eval_interval": Key(int, 0, "evaluate every N steps (0: only at the end)", **NON_NEGATIVE),
        "log_interval": Key(int, 10, "write a log line every N steps", **POSITIVE),
        "save_interval": Key(int, 0, "save a checkpoint every N steps (0: only at the end and at evaluations)", **NON_NEGATIVE),
        "num_workers": Key(int, 0, "data-loading worker processes (0: load in the main process)", **NON_NEGATIVE),
        "photometric": Key(dict | bool | None, None,
                           "photometric distortion as MMSeg's: null/false off, true = {brightness: 32, contrast: "
                           "[0.5, 1.5], saturation: [0.5, 1.5], hue: 18}, or a mapping of the steps to apply",
                           check=_photometric, expect=PHOTOMETRIC_EXPECT),
        "cache_dir": Key(Path | None, None, "folder keeping decoded training samples (uint8 .npy, ~8 MB per "
                         "Cityscapes image): each file is decoded once, later epochs read only the crop's "
                         "pixels; null: decode every time"),
        "sampler": Key(Literal["uniform", "rare_class"], "uniform",
                       "order of the training images: uniform (a shuffled pass per epoch) or rare_class (draw a class "
                       "c with P(c) ∝ exp((1 − f_c) / sampler_temperature), f_c its share of the pixels, then an "
                       "image containing c; DAFormer's rare-class sampling)"),
        "sampler_temperature": Key(float, 0.01, "temperature T of rare_class sampling: small T favours rare classes "
                                   "strongly, large T approaches drawing every class equally", **POSITIVE),
        "compile": Key(Literal["auto", "on", "off"], "auto",
                       "run the training forward as one static program (paddle.jit.to_static): on, off, or auto "
                       "(compile where it was measured faster; on CPU it is not, so auto stays dynamic there). Same "
                       "losses and weights either way; single-process fp32 only"),
        "skip_bad_samples": Key(bool, False, "replace a training sample that fails to load by the next one that "
                                "loads (warned once, counted in the train log) instead of stopping; stops anyway "
                                "if more than 5 % of the samples fail"),
    },
    "eval": {
        "batch_size": Key(int, 1, "images per evaluation step (images of one batch must share a size)", **POSITIVE),
        "mode": Key(Literal["whole", "slide"], "whole",
                    "whole: the image in one pass; slide: windows of crop_size, stride apart, logits averaged over overlaps"),
        "crop_size": Key(list[int] | None, None, "slide window [height, width] (needed by mode slide)",
                         check=_pair_of_positive, expect="[height, width], both > 0"),
        "stride": Key(list[int] | None, None, "slide step [height, width], at most crop_size (null: 2/3 of crop_size)",
                      check=_pair_of_positive, expect="[height, width], both > 0"),
        "scales": Key(list[float], [1.0], "image scales; several: softmax probabilities averaged at the input size",
                      check=lambda v: len(v) > 0 and all(s > 0 for s in v), expect="a non-empty list of numbers > 0"),
        "flip": Key(bool, False, "also segment the mirrored image at every scale and average the probabilities"),
        "precision": Key(Literal["fp32", "bf16"], "fp32",
                         "paddle-inference backend on CPU: bf16 runs oneDNN's bfloat16 kernels (CPUs with "
                         "AVX512_BF16; faster, logits within bfloat16 rounding)"),
    },
    "zoo": {
        "source": Key(str | None, None, "where a trained model of this config comes from (e.g. PaddleSeg 2.8 model zoo)"),
        "weights_url": Key(str | None, None, "URL of the trained weights (give it as --weights to use them)"),
        "weights_sha256": Key(str | None, None, "expected SHA-256 of the file at weights_url (checked after download)"),
        "published_miou": Key(dict | None, None, "published val mIoU (%): {ss: single scale, flip: with flip, "
                              "ms_flip: multi-scale + flip}"),
    },
    "runtime": {
        "seed": Key(int, 0, "random seed of weights, sampling and augmentation", **NON_NEGATIVE),
        "threads": Key(int, 0, "CPU threads for Paddle's kernels (0: every core available)", **NON_NEGATIVE),
        "mkl_code_path": Key(Literal["auto", "default", "avx2", "avx512"], "auto",
                             "code path of Paddle's MKL on non-Intel CPUs: auto (the widest the CPU supports, "
                             "~3x faster training on AVX-512 AMD CPUs), default (MKL's own choice), avx2, avx512"),
        "output_dir": Key(str, "runs/default", "folder for checkpoints, logs and metrics"),
        "device": Key(str, "auto", "auto, cpu or gpu"),
        "progress": Key(bool, True, "show progress bars"),
        "keep_last": Key(int, 0, "also keep the K newest checkpoints as model_STEP.safetensors (0: only "
                         "model_last and model_best)", **NON_NEGATIVE),
        "collective_timeout": Key(float, 600.0, "data parallel: seconds a process may make no progress (hung, or "
                                  "waiting for a hung peer in a collective) before the whole job stops with a "
                                  "message naming it (0: wait for ever)", **NON_NEGATIVE),
        "visualdl": Key(bool, False, "write loss terms, lr, step time, mIoU and per-class IoU as VisualDL "
                        "scalars to output_dir/visualdl (needs the visualdl extra); the same as visualdl in loggers"),
        "loggers": ComponentList("logger", (), {}, "experiment loggers (semseg list logger), e.g. [visualdl, "
                                 "tensorboard, mlflow]; options as {name: mlflow, tracking_uri: ...}"),
    },
}


def schema_defaults(node: Any = SCHEMA) -> Any:
    """The default config implied by the schema (component sections get only ``name``)."""
    if isinstance(node, Key):
        return node.default
    if isinstance(node, ComponentSection):
        return {"name": node.default_name, **{k: v.default for k, v in node.extra.items()}}
    if isinstance(node, ComponentList):
        return [{"name": name, **{k: v.default for k, v in node.extra.items()}} for name in node.default]
    return {key: schema_defaults(child) for key, child in node.items()}
