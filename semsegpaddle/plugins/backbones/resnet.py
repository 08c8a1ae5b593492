"""ResNet and ResNeXt backbones (He et al. 2016; Xie et al. 2017) with the v1c/v1d stems: registration.

Sublayer names follow timm's ``ResNet`` (and so torchvision's), so an ImageNet checkpoint from
either converts by renaming BatchNorm buffers and dropping the classifier ``fc``. Options reproduce
the ResNets of PaddleSeg's model zoo (``ResNet50_vd``/``ResNet101_vd``: ``stem: deep_avgdown``,
``dilation_style: paddleseg``), of torchvision's segmentation models (the defaults) and of the
SemSegPaddle seed; ``weight_sources`` name those checkpoints' tensors.

Imports no paddle: the model lives in ``resnet_impl`` and is imported when a backbone is built,
so ``semseg --help``, ``list`` and ``config`` stay fast.
"""
from __future__ import annotations

import inspect
from typing import Annotated, Any, Callable, Iterator, Mapping, Sequence

from semsegpaddle import hookimpl
from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.common.lazy import lazy_attributes
from semsegpaddle.core.common.typecheck import OneOf

#: names defined in resnet_impl, served lazily by ``__getattr__``
_MODEL_NAMES = ("RESNET_DEPTHS", "RESNEXT_VARIANTS", "STEMS", "STAGE_PLANES", "DILATION_STYLES",
                "MULTI_GRID_MODES", "BasicBlock", "Bottleneck", "ResNet")


#: choices the config layer checks before building (the model checks them again)
Stem = Annotated[str, OneOf("standard", "deep", "deep_avgdown")]
OutputStride = Annotated[int, OneOf(8, 16, 32)]
DilationStyle = Annotated[str, OneOf("timm", "paddleseg")]
MultiGridMode = Annotated[str, OneOf("relative", "absolute")]


def build_resnet(
    depth: Annotated[int, OneOf(18, 34, 50, 101, 152)] = 50,
    stem: Stem = "standard",
    stem_channels: int = 64,
    output_stride: OutputStride = 32,
    dilation_style: DilationStyle = "timm",
    multi_grid: list[int] | None = None,
    multi_grid_mode: MultiGridMode = "relative",
    norm_momentum: float = 0.9,
    norm_eps: float = 1e-5,
    frozen_stages: int = -1,
    freeze_bn_stats: bool = False,
    in_channels: int = 3,
):
    """ResNet-18/34/50/101/152 (v1.5 strided 3×3), with the standard, v1c or v1d stem."""
    from semsegpaddle.core.model.backbone_options import invalid_option
    from semsegpaddle.plugins.backbones.resnet_impl import RESNET_DEPTHS, ResNet

    if depth not in RESNET_DEPTHS or isinstance(depth, bool):
        raise invalid_option("resnet", "depth", depth, f"one of {', '.join(map(str, RESNET_DEPTHS))}")
    block, layers = RESNET_DEPTHS[depth]
    return ResNet(block, layers, stem=stem, stem_channels=stem_channels, output_stride=output_stride,
                  dilation_style=dilation_style, multi_grid=multi_grid, multi_grid_mode=multi_grid_mode,
                  norm_momentum=norm_momentum, norm_eps=norm_eps, frozen_stages=frozen_stages,
                  freeze_bn_stats=freeze_bn_stats, in_channels=in_channels)


def build_resnext(
    variant: Annotated[str, OneOf("50_32x4d", "101_32x8d", "101_64x4d")] = "50_32x4d",
    stem: Stem = "standard",
    stem_channels: int = 64,
    output_stride: OutputStride = 32,
    dilation_style: DilationStyle = "timm",
    multi_grid: list[int] | None = None,
    multi_grid_mode: MultiGridMode = "relative",
    norm_momentum: float = 0.9,
    norm_eps: float = 1e-5,
    frozen_stages: int = -1,
    freeze_bn_stats: bool = False,
    in_channels: int = 3,
):
    """ResNeXt-50 32×4d, -101 32×8d or -101 64×4d, with the standard, v1c or v1d stem."""
    from semsegpaddle.core.model.backbone_options import invalid_option
    from semsegpaddle.plugins.backbones.resnet_impl import RESNEXT_VARIANTS, ResNet

    if variant not in RESNEXT_VARIANTS:
        raise invalid_option("resnet", "variant", variant, f"one of {', '.join(RESNEXT_VARIANTS)}")
    layers, cardinality, base_width = RESNEXT_VARIANTS[variant]
    return ResNet("bottleneck", layers, cardinality=cardinality, base_width=base_width, stem=stem,
                  stem_channels=stem_channels, output_stride=output_stride, dilation_style=dilation_style,
                  multi_grid=multi_grid, multi_grid_mode=multi_grid_mode, norm_momentum=norm_momentum,
                  norm_eps=norm_eps, frozen_stages=frozen_stages, freeze_bn_stats=freeze_bn_stats,
                  in_channels=in_channels)


def convert_resnet(state: dict[str, Any], options: dict) -> dict[str, Any]:
    """timm or torchvision ResNet/ResNeXt state dict -> our names (same names, minus ``fc.``)."""
    from semsegpaddle.core.model.weights import drop_prefixes, torch_to_paddle_names

    return torch_to_paddle_names(drop_prefixes(state, ("fc.",)))


__getattr__ = lazy_attributes("semsegpaddle.plugins.backbones.resnet_impl", _MODEL_NAMES)


# -------------------------------------------------------------------------------------------------
# weight sources: foreign checkpoint names -> ours
# -------------------------------------------------------------------------------------------------

#: a BatchNorm's tensors as Paddle names them (the core renames torch's running statistics so)
_BN_TENSORS = ("weight", "bias", "_mean", "_variance")


def _with_defaults(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The factory's keyword defaults, overridden by the options a config wrote."""
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **{k: v for k, v in options.items() if k in defaults}}


def _require(source: str, options: Mapping[str, Any], **expected: Any) -> None:
    """One-line SemsegError unless each option has the value ``expected``: options that change what
    the backbone computes but not its tensor shapes, which would otherwise load silently."""
    wrong = [name for name, value in expected.items() if options.get(name) != value]
    if wrong:
        need = ", ".join(f"{name}: {expected[name]}" for name in wrong)
        have = ", ".join(f"{name}: {options.get(name)}" for name in wrong)
        raise SemsegError(f"{source} weights need backbone options {need} (the config gives {have})")


def _dilation_rule(source: str, options: Mapping[str, Any], style: str) -> None:
    """A dilated backbone (output stride below 32) must follow the source's dilation rule."""
    if options.get("output_stride") != 32:
        _require(source, options, dilation_style=style)


def _prefix(keys: Sequence[str], probe: str, source: str) -> str:
    """``backbone.`` for a whole model's checkpoint, ``""`` for a backbone's own, found by ``probe``."""
    present = set(keys)
    for prefix in ("backbone.", ""):
        if prefix + probe in present:
            return prefix
    raise SemsegError(f"these are not {source} weights: no tensor 'backbone.{probe}' (nor '{probe}')")


def _present(names: Mapping[str, str], keys: Sequence[str]) -> dict[str, str]:
    """The entries of ``names`` whose source tensor the checkpoint holds (the core reports the rest)."""
    present = set(keys)
    return {ours: source for ours, source in names.items() if source in present}


def _stage_layers(options: Mapping[str, Any]) -> tuple[str, Sequence[int]]:
    """Block kind and blocks per stage of a ``resnet`` with these (defaults-filled) options."""
    from semsegpaddle.plugins.backbones.resnet_impl import RESNET_DEPTHS

    depth = options["depth"]
    if depth not in RESNET_DEPTHS or isinstance(depth, bool):
        raise SemsegError(f"resnet option depth={depth!r} is invalid: expected one of "
                          f"{', '.join(map(str, RESNET_DEPTHS))}")
    return RESNET_DEPTHS[depth]


def _blocks(layers: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(stage index, block index) of every block, in order."""
    for stage, count in enumerate(layers):
        for block in range(count):
            yield stage, block


def paddleseg_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → PaddleSeg 2.8 ``ResNet_vd`` names (``backbone.conv1_1._conv.weight``,
    ``backbone.bb_2_5.conv1._batch_norm._mean``, ...), from a zoo model (``backbone.`` prefix) or a
    backbone's own file (no prefix).

    ``ResNet50_vd``/``ResNet101_vd``/``ResNet152_vd`` only (its 18/34 have a projection shortcut in
    the first block, ours not). The config must say ``stem: deep_avgdown`` and, when dilated,
    ``dilation_style: paddleseg``; its DeepLabv3/v3+ configs also set ``multi_grid: [1, 2, 4]``.
    """
    source = "PaddleSeg ResNet_vd"
    options = _with_defaults(build_resnet, options)
    block, layers = _stage_layers(options)
    if block != "bottleneck":
        raise SemsegError(f"{source} weights are read for depth 50, 101 or 152 only "
                          f"(the config gives depth: {options['depth']})")
    _require(source, options, stem="deep_avgdown")
    _dilation_rule(source, options, "paddleseg")
    prefix = _prefix(keys, "conv1_1._conv.weight", source)
    found = sum(1 for key in set(keys) if key.startswith(f"{prefix}bb_2_") and key.endswith(".conv0._conv.weight"))
    if found != layers[2]:
        raise SemsegError(f"the {source} checkpoint has {found} blocks in its third stage, depth "
                          f"{options['depth']} has {layers[2]}: set depth to the checkpoint's")

    def conv_bn(conv: str, norm: str, theirs: str) -> dict[str, str]:
        names = {f"{conv}.weight": f"{prefix}{theirs}._conv.weight"}
        names.update({f"{norm}.{t}": f"{prefix}{theirs}._batch_norm.{t}" for t in _BN_TENSORS})
        return names

    names = {**conv_bn("conv1.0", "conv1.1", "conv1_1"), **conv_bn("conv1.3", "conv1.4", "conv1_2"),
             **conv_bn("conv1.6", "bn1", "conv1_3")}
    for stage, index in _blocks(layers):
        ours, theirs = f"layer{stage + 1}.{index}", f"bb_{stage}_{index}"
        for n in range(3):
            names.update(conv_bn(f"{ours}.conv{n + 1}", f"{ours}.bn{n + 1}", f"{theirs}.conv{n}"))
        if index == 0:  # avg-down shortcut: pool (no tensors), 1×1 conv, norm
            names.update(conv_bn(f"{ours}.downsample.1", f"{ours}.downsample.2", f"{theirs}.short"))
    return _present(names, keys)


def torchvision_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → torchvision ResNet/ResNeXt names: a segmentation model's ``backbone.*`` (FCN,
    DeepLabv3; its ``IntermediateLayerGetter`` keeps the classifier's names) or a classification
    model's own (``fc.*`` left out). The names are ours; when dilated, the config must say
    ``dilation_style: timm`` (torchvision's ``replace_stride_with_dilation`` rule). Serves ``resnext``
    too: the options read here have the same defaults."""
    source = "torchvision ResNet"
    options = _with_defaults(build_resnet, options)
    _dilation_rule(source, options, "timm")
    prefix = _prefix(keys, "layer1.0.conv1.weight", source)
    ours = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
    return {key[len(prefix):]: key for key in keys
            if key.startswith(prefix) and key[len(prefix):].startswith(ours)}


def _seed_block_name(depth: int, stage: int, index: int) -> str:
    """The seed's static-graph block name: res2a.., and res4a, res4b1.. res4b22 for ResNet-101's third stage."""
    if depth in (101, 152) and stage == 2:
        return f"res4{'a' if index == 0 else f'b{index}'}"
    return f"res{stage + 2}{chr(ord('a') + index)}"


def seed_names(keys: Sequence[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Our names → the SemSegPaddle seed's static-graph (fluid) parameter names: stem ``conv1_1_weights``
    + ``bnv1_1_{scale,offset,mean,variance}`` .. ``conv1_3``, blocks ``res4b22_branch2b_weights`` +
    ``bn4b22_branch2b_*``, projection shortcuts ``res3a_branch1_*``.

    Its ResNet-101 only (its 50/152 stride the first 1×1 conv, ours the 3×3): the config must say
    ``depth: 101``, ``stem: deep``, ``stem_channels: 128`` and, when dilated, ``dilation_style:
    paddleseg`` (its PSPNet/DeepLabv3/GloRe also set ``multi_grid: [1, 2, 4]``).
    """
    source = "SemSegPaddle static-graph ResNet"
    options = _with_defaults(build_resnet, options)
    _require(source, options, depth=101, stem="deep", stem_channels=128)
    _dilation_rule(source, options, "paddleseg")
    if "conv1_1_weights" not in set(keys):
        raise SemsegError(f"these are not {source} weights: no tensor 'conv1_1_weights'")
    _, layers = _stage_layers(options)
    bn_leaves = dict(zip(_BN_TENSORS, ("scale", "offset", "mean", "variance")))

    def conv_bn(conv: str, norm: str, theirs: str) -> dict[str, str]:
        names = {f"{conv}.weight": f"{theirs}_weights"}
        bn = "bn" + theirs[3:]  # res4b22_branch2b -> bn4b22_branch2b; its stem's conv1_1 -> bnv1_1
        names.update({f"{norm}.{t}": f"{bn}_{leaf}" for t, leaf in bn_leaves.items()})
        return names

    names = {**conv_bn("conv1.0", "conv1.1", "conv1_1"), **conv_bn("conv1.3", "conv1.4", "conv1_2"),
             **conv_bn("conv1.6", "bn1", "conv1_3")}
    for stage, index in _blocks(layers):
        ours, theirs = f"layer{stage + 1}.{index}", _seed_block_name(options["depth"], stage, index)
        for n, branch in enumerate(("branch2a", "branch2b", "branch2c")):
            names.update(conv_bn(f"{ours}.conv{n + 1}", f"{ours}.bn{n + 1}", f"{theirs}_{branch}"))
        if index == 0:  # strided 1×1 projection shortcut
            names.update(conv_bn(f"{ours}.downsample.0", f"{ours}.downsample.1", f"{theirs}_branch1"))
    return _present(names, keys)


_COMMON_OPTIONS = {
    "stem": "standard (7×7 conv), deep (3×3 convs 32-32-64, v1c) or deep_avgdown (v1d / ResNet_vd)",
    "stem_channels": "stem output channels (64); a deep stem's first two convs get half (128: 64-64-128)",
    "output_stride": "8, 16 or 32; layer3/layer4 are dilated instead of strided below 32",
    "dilation_style": "timm (also torchvision): a dilated stage's first block keeps the previous "
                      "dilation, its avg-down shortcut pools 2×2 stride 1; paddleseg: every block uses "
                      "the stage's dilation, no pool",
    "multi_grid": "layer4 dilation per block, e.g. [1, 2, 4] (DeepLabv3); null for none",
    "multi_grid_mode": "relative: multi_grid multiplies layer4's dilation; absolute: it is the dilation",
    "norm_momentum": "BatchNorm running-average weight (Paddle convention, = 1 - torch momentum)",
    "norm_eps": "BatchNorm epsilon",
    "frozen_stages": "-1 none; 0 freezes the stem; k freezes the stem and layer1..layerk",
    "freeze_bn_stats": "keep every BatchNorm in eval mode (fixed statistics) during training",
}


@hookimpl
def semseg_register_backbones(register: Callable[..., None]) -> None:
    """Register ``resnet`` and ``resnext``."""
    register(
        "resnet", build_resnet,
        options={"depth": "18, 34, 50, 101 or 152", **_COMMON_OPTIONS},
        description="ResNet-18/34/50/101/152 (v1.5; v1c/v1d stems); timm/torchvision weights",
        convert_weights=convert_resnet,
        weight_sources={"paddleseg": paddleseg_names, "torchvision": torchvision_names, "seed": seed_names},
    )
    register(
        "resnext", build_resnext,
        options={"variant": "50_32x4d, 101_32x8d or 101_64x4d", **_COMMON_OPTIONS},
        description="ResNeXt-50 32x4d, -101 32x8d/64x4d (v1c/v1d stems); timm/torchvision weights",
        convert_weights=convert_resnet,
        weight_sources={"torchvision": torchvision_names},
    )
