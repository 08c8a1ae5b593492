"""Tensor plumbing shared by the graph-reasoning heads (GloRe, GINet): moving between a pixel grid
N×C×H×W and flattened N×C×(H·W) matrices, in eager mode and when exporting (H, W unknown)."""
from __future__ import annotations

import paddle


def flatten_pixels(x: paddle.Tensor) -> paddle.Tensor:
    """N×C×H×W → N×C×(H·W)."""
    return paddle.flatten(x, start_axis=2)


def unflatten_like(y: paddle.Tensor, like: paddle.Tensor) -> paddle.Tensor:
    """N×C×(H·W) → N×C×H×W, with H and W taken from ``like`` (an N×?×H×W tensor)."""
    if paddle.in_dynamic_mode():
        return y.reshape([y.shape[0], y.shape[1], *like.shape[2:]])
    size = paddle.shape(like)
    return paddle.reshape(y, [0, y.shape[1], size[2], size[3]])


def pixel_count(x: paddle.Tensor) -> float | paddle.Tensor:
    """H·W of an N×C×H×W tensor, as a float (a float32 tensor when exporting)."""
    if paddle.in_dynamic_mode():
        return float(x.shape[2] * x.shape[3])
    size = paddle.shape(x)
    return (size[2] * size[3]).astype("float32")


def batch_size(x: paddle.Tensor) -> int | paddle.Tensor:
    """N of an N×... tensor (a tensor when exporting)."""
    return x.shape[0] if paddle.in_dynamic_mode() else paddle.shape(x)[0]
