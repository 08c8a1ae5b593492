"""Operators traced, for export, in a form Paddle Inference runs with oneDNN and its default passes.

Paddle Inference turns oneDNN on by default on CPU. Three of Paddle 3.3's own operator forms fail
there, each for a reason outside this package:

- resizing (``F.interpolate``): the ``scale`` attribute of the interpolation operators is stored as
  a list of doubles, which the oneDNN executor cannot convert (``ConvertPirAttribute2RuntimeAttribute
  not support [pir::ArrayAttribute<pir::DoubleAttribute>]``) — whether the size is given as numbers,
  tensors or a scale. :func:`gather_resize` computes the same bilinear or nearest resize with
  ``gather`` and arithmetic.
- batch norm of 2-D and 3-D inputs (``BatchNorm1D``) in eval mode: constant folding breaks on a
  ``batch_norm`` whose input is constant (GINet's class embeddings: "The type of data we are trying
  to retrieve (uint8) does not match ... (float32)"). :func:`affine_batch_norm` is the same scale
  and shift in elementwise operators. 4-D batch norms stay: the optimiser folds them into the
  convolutions.
- 1×1 ``Conv1D``: Paddle writes it as unsqueeze → conv2d → squeeze, and oneDNN's
  ``squeeze_transpose_onednn_fuse_pass`` gives a wrongly shaped result when a transpose follows
  (GINet's node convolutions). :func:`pointwise_conv1d` is the same product as one ``matmul``.

And one that paddle2onnx cannot convert, for the program traced for ONNX only (``onnx=True``):
adaptive average pooling to more than one bin of an input whose size is not fixed (PSPNet's
pyramid) aborts the converter ("Adaptive only support static input shape").
:func:`matrix_adaptive_avg_pool` is the same pooling as two matrix products with averaging
matrices computed from the input's size (under oneDNN that form gives wrong results, hence not in
the Paddle Inference program).

Eager calls and the cases these forms do not cover go to Paddle's own functions.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import paddle


@contextlib.contextmanager
def inference_friendly_ops(onnx: bool = False) -> Iterator[None]:
    """Within the block, programs traced from Paddle layers use the forms of this module (with
    ``onnx``, also the adaptive pooling that paddle2onnx converts)."""
    import paddle.nn.functional as F
    import paddle.nn.functional.common as common
    import paddle.nn.layer.norm as norm_layers

    originals = F.interpolate, F.batch_norm, F.conv1d, F.adaptive_avg_pool2d

    def interpolate(x: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                    align_corners: bool = False, align_mode: int = 0, data_format: str | None = None,
                    *args: Any, **kwargs: Any) -> Any:
        if (paddle.in_dynamic_mode() or args or kwargs.get("antialias") or len(x.shape) != 4
                or mode not in ("bilinear", "nearest") or align_corners or data_format not in (None, "NCHW")
                or (mode == "bilinear" and align_mode != 0) or (size is None) == (scale_factor is None)):
            return originals[0](x, size, scale_factor, mode, align_corners, align_mode, data_format, *args, **kwargs)
        return gather_resize(x, size, scale_factor, mode)

    def batch_norm(x: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                   training: bool = False, momentum: float = 0.9, epsilon: float = 1e-05,
                   data_format: str = "NCHW", use_global_stats: bool | None = None, name: str | None = None) -> Any:
        frozen = use_global_stats if use_global_stats is not None else not training
        if paddle.in_dynamic_mode() or not frozen or len(x.shape) not in (2, 3):
            return originals[1](x, running_mean, running_var, weight, bias, training, momentum, epsilon,
                                data_format, use_global_stats, name)
        channel_last = len(x.shape) == 3 and data_format in ("NHWC", "NLC")
        return affine_batch_norm(x, running_mean, running_var, weight, bias, epsilon, channel_last)

    def conv1d(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
               groups: int = 1, data_format: str = "NCL", name: str | None = None) -> Any:
        if paddle.in_dynamic_mode() or not _is_pointwise(weight, stride, padding, groups, data_format):
            return originals[2](x, weight, bias, stride, padding, dilation, groups, data_format, name)
        return pointwise_conv1d(x, weight, bias)

    def adaptive_avg_pool2d(x: Any, output_size: Any, data_format: str = "NCHW", name: str | None = None) -> Any:
        bins = _bins(output_size)
        if not onnx or paddle.in_dynamic_mode() or data_format != "NCHW" or bins is None or bins == (1, 1):
            return originals[3](x, output_size, data_format, name)
        return matrix_adaptive_avg_pool(x, bins)

    F.interpolate = common.interpolate = interpolate
    F.batch_norm = norm_layers.batch_norm = batch_norm
    F.conv1d = conv1d
    F.adaptive_avg_pool2d = adaptive_avg_pool2d
    try:
        yield
    finally:
        F.interpolate = common.interpolate = originals[0]
        F.batch_norm = norm_layers.batch_norm = originals[1]
        F.conv1d = originals[2]
        F.adaptive_avg_pool2d = originals[3]


def _is_tensor(value: Any) -> bool:
    """True for an eager tensor and for a value of the program being traced."""
    return isinstance(value, (paddle.Tensor, paddle.pir.Value))


# -------------------------------------------------------------------------------------------------
# resizing
# -------------------------------------------------------------------------------------------------


def gather_resize(x: paddle.Tensor, size: Any = None, scale_factor: Any = None, mode: str = "bilinear") -> paddle.Tensor:
    """Resize N×C×H×W like ``F.interpolate(x, size, scale_factor, mode, align_corners=False)``
    (bilinear with half-pixel centres, or nearest), one spatial axis at a time with ``gather``.

    ``size`` is (H, W) as ints, 0-D/1-element tensors or a 2-element tensor; ``scale_factor`` a
    number or a pair. As in Paddle's kernels, an output length from a scale is
    ``floor(length × scale)`` and the source step is ``1 / scale``, else ``in / out``.
    """
    if scale_factor is not None:
        scales = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * 2
        for axis, scale in zip((2, 3), scales):
            length = paddle.shape(x)[axis].astype("float32")
            out = paddle.floor(length * float(scale)).astype("int64")
            x = _resize_axis(x, axis, out, paddle.full([], 1.0 / float(scale), "float32"), mode)
        return x
    if _is_tensor(size):
        lengths = [size[0], size[1]]
    else:
        lengths = [paddle.reshape(v, []) if _is_tensor(v) else int(v) for v in size]
    for axis, out in zip((2, 3), lengths):
        x = _resize_axis(x, axis, out, None, mode)
    return x


def _resize_axis(x: paddle.Tensor, axis: int, out: Any, step: paddle.Tensor | None, mode: str) -> paddle.Tensor:
    """Resize ``x`` along ``axis`` (2 or 3) to ``out`` samples, ``step`` source pixels apart
    (default: input length / ``out``)."""
    length = paddle.shape(x)[axis]
    if not _is_tensor(out):
        out = paddle.full([], out, "int64")
    out = out.astype("int64")
    if step is None:
        step = length.astype("float32") / out.astype("float32")
    position = paddle.arange(0, out, dtype="int64").astype("float32")
    # indices are clamped as floats: ONNX's Min takes int64 only from opset 12 on
    last = (length - 1).astype("float32")
    if mode == "nearest":
        index = paddle.minimum(paddle.floor(position * step), last).astype("int64")
        return paddle.gather(x, index, axis=axis)
    source = paddle.clip((position + 0.5) * step - 0.5, min=0.0)
    low = paddle.minimum(paddle.floor(source), last)
    high = paddle.minimum(low + 1.0, last)
    weight = paddle.reshape(source - low, [-1, 1] if axis == 2 else [-1])
    return (paddle.gather(x, low.astype("int64"), axis=axis) * (1.0 - weight)
            + paddle.gather(x, high.astype("int64"), axis=axis) * weight)


# -------------------------------------------------------------------------------------------------
# batch norm of 2-D / 3-D inputs, 1×1 Conv1D
# -------------------------------------------------------------------------------------------------


def affine_batch_norm(x: paddle.Tensor, mean: paddle.Tensor, variance: paddle.Tensor, weight: paddle.Tensor | None,
                      bias: paddle.Tensor | None, epsilon: float, channel_last: bool = False) -> paddle.Tensor:
    """Batch norm with running statistics as ``x × scale + shift`` (channels on axis 1, or last)."""
    scale = paddle.rsqrt(variance + epsilon)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    rank = len(x.shape)
    shape = [1] * (rank - 1) + [-1] if channel_last else [1, -1] + [1] * (rank - 2)
    return x * paddle.reshape(scale, shape) + paddle.reshape(shift, shape)


def _is_pointwise(weight: Any, stride: Any, padding: Any, groups: int, data_format: str) -> bool:
    """True for a kernel-size-1, stride-1, unpadded, ungrouped, channels-first 1-D convolution."""
    def ones(value: Any) -> bool:
        return all(v == 1 for v in (value if isinstance(value, (list, tuple)) else [value]))

    no_padding = padding in ("valid", "VALID") or (not isinstance(padding, str) and all(
        v == 0 for v in (padding if isinstance(padding, (list, tuple)) else [padding])))
    return weight.shape[-1] == 1 and groups == 1 and data_format == "NCL" and ones(stride) and no_padding


def pointwise_conv1d(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor | None) -> paddle.Tensor:
    """A 1×1 convolution of N×C×L with an O×C×1 kernel: the O×C matrix times each N's C×L."""
    y = paddle.matmul(paddle.squeeze(weight, axis=-1), x)
    return y if bias is None else y + paddle.reshape(bias, [1, -1, 1])


# -------------------------------------------------------------------------------------------------
# adaptive average pooling
# -------------------------------------------------------------------------------------------------


def _bins(output_size: Any) -> tuple[int, int] | None:
    """(rows, columns) of an adaptive pool's ``output_size`` given as ints; None otherwise."""
    sizes = list(output_size) if isinstance(output_size, (list, tuple)) else [output_size] * 2
    return tuple(sizes) if len(sizes) == 2 and all(isinstance(v, int) and v > 0 for v in sizes) else None


def matrix_adaptive_avg_pool(x: paddle.Tensor, bins: tuple[int, int]) -> paddle.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` of N×C×H×W as ``A_h · x · A_w``: ``A_h`` (bins × H)
    and ``A_w`` (W × bins) average each bin's input positions ``floor(i·L/b)`` to
    ``ceil((i+1)·L/b) - 1``, Paddle's bin rule."""
    rows = _averaging_matrix(paddle.shape(x)[2], bins[0], transposed=False)
    columns = _averaging_matrix(paddle.shape(x)[3], bins[1], transposed=True)
    return paddle.matmul(paddle.matmul(rows, x), columns)


def _averaging_matrix(length: Any, bins: int, transposed: bool) -> paddle.Tensor:
    """The bins × length matrix averaging each adaptive bin (length × bins if ``transposed``);
    float arithmetic on whole numbers, exact; membership by clipping, as ONNX opset 11 has no ``>=``."""
    bin_shape, position_shape = ([1, -1], [-1, 1]) if transposed else ([-1, 1], [1, -1])
    size = length.astype("float32")
    index = paddle.arange(0, bins, dtype="int64").astype("float32")
    start = paddle.reshape(paddle.floor(index * size / float(bins)), bin_shape)
    end = paddle.reshape(paddle.ceil((index + 1.0) * size / float(bins)), bin_shape)
    position = paddle.reshape(paddle.arange(0, length, dtype="int64").astype("float32"), position_shape)
    inside = paddle.clip(position - start + 1.0, 0.0, 1.0) * paddle.clip(end - position, 0.0, 1.0)
    return inside / (end - start)
