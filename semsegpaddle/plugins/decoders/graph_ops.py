"""What the graph-reasoning heads (GloRe, GINet) share: their graph convolution, and the tensor
plumbing between a pixel grid N×C×H×W and flattened N×C×(H·W) matrices, in eager mode and when
exporting (H, W unknown)."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn


class GraphConv(nn.Layer):
    """Graph convolution on an N×S×K matrix of K node states of width S: a 1D convolution across
    the nodes (the learned adjacency A, with the identity kept as a residual: (I − A) V), then one
    across the states (W). GloRe applies the ReLU last, ``relu(((I − A) V) W)``; GINet between the
    two (``relu_between``)."""

    def __init__(self, num_state: int, num_node: int, relu_between: bool = False) -> None:
        super().__init__()
        self.relu_between = relu_between
        self.node_conv = nn.Conv1D(num_node, num_node, 1)
        self.state_conv = nn.Conv1D(num_state, num_state, 1, bias_attr=False)

    def forward(self, v: paddle.Tensor) -> paddle.Tensor:
        h = self.node_conv(v.transpose([0, 2, 1])).transpose([0, 2, 1]) + v
        return self.state_conv(F.relu(h)) if self.relu_between else F.relu(self.state_conv(h))


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
