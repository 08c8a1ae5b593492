"""GINet (Wu et al., ECCV 2020, "GINet: Graph Interaction Network for Scene Parsing"): a visual graph
(pixels projected to nodes, as in GloRe) and a semantic graph (one node per class, from class-name
embeddings) reason on their own and with each other; the semantic nodes also predict which classes
an image contains, scored by the semantic-context loss."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from semsegpaddle.core.common.errors import ConfigError
from semsegpaddle.core.model.interfaces import Decoder, FeatureInfo
from semsegpaddle.core.model.layers import ConvBNReLU
from semsegpaddle.plugins.decoders.graph_ops import GraphConv, batch_size, flatten_pixels, pixel_count, unflatten_like
from semsegpaddle.plugins.decoders.jpu import JPU
from semsegpaddle.plugins.decoders.levels import check_bool, check_choice, check_dropout, check_positive

#: hidden width of the MLP that maps class embeddings to node states (as PaddleSeg's GINet)
EMBEDDING_HIDDEN = 128
#: the loss registered for the semantic-context output
CONTEXT_LOSS = "semantic_context"
#: how learnable class embeddings (no ``class_embeddings`` file) start: N(0, 1), or all zeros as PaddleSeg's
EMBEDDING_INITS = {"normal": nn.initializer.Normal, "zeros": lambda: nn.initializer.Constant(0.0)}

_warned_learnable = False


def load_class_embeddings(path: str | Path, num_classes: int) -> np.ndarray:
    """Read a ``num_classes × D`` float array from a ``.npy`` file; ConfigError naming the file if it
    is missing, unreadable, of another shape or not finite."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"class_embeddings file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # a text file, a pickle, a truncated array: all one message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"class_embeddings file {path} is not a readable .npy array ({reason})") from None
    if array.ndim != 2 or array.shape[0] != num_classes or array.shape[1] < 1:
        raise ConfigError(f"class_embeddings file {path}: expected shape ({num_classes}, D) — one row per class — "
                          f"got {tuple(array.shape)}")
    numeric = np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    if not numeric or not np.isfinite(array).all():
        raise ConfigError(f"class_embeddings file {path}: expected finite numbers, got dtype {array.dtype} "
                          f"with non-finite or non-numeric values")
    return array.astype(np.float32)


class GraphInteraction(nn.Layer):
    """Visual-to-semantic and semantic-to-visual reasoning: the affinity between each class node and
    each visual node (query from the classes, key from the visual nodes) weighs, softmax-normalised
    over the visual nodes, the visual values each class node gathers, and, normalised over the
    classes, the semantic values each visual node gathers."""

    def __init__(self, num_state: int) -> None:
        super().__init__()
        self.query = nn.Conv1D(num_state, num_state // 2, 1)
        self.key = nn.Conv1D(num_state, num_state // 2, 1)
        self.visual_value = nn.Conv1D(num_state, num_state, 1)
        self.semantic_value = nn.Conv1D(num_state, num_state, 1)

    def forward(self, semantic: paddle.Tensor, visual: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """``semantic`` N×S×classes, ``visual`` N×S×nodes → (to the classes, to the visual nodes)."""
        affinity = paddle.matmul(self.query(semantic), self.key(visual), transpose_x=True)  # N×classes×nodes
        to_semantic = paddle.matmul(self.visual_value(visual), F.softmax(affinity, axis=-1), transpose_y=True)
        to_visual = paddle.matmul(self.semantic_value(semantic), F.softmax(affinity, axis=-2))
        return to_semantic, to_visual


class GraphInteractionUnit(nn.Layer):
    """The GI unit: project pixels to a visual graph, reason on it and on the semantic graph, let the
    two interact, project the visual nodes back to the pixels, add to the input.

    ``gamma_visual`` / ``gamma_semantic`` (one per node, zero at the start) scale what each graph
    receives from the other, so training starts from GloRe-like reasoning and learns how much to mix.
    """

    def __init__(self, channels: int, num_state: int, num_node: int, num_classes: int,
                 conv_bias: bool = False) -> None:
        super().__init__()
        self.project = nn.Conv2D(channels, num_node, 1)
        self.reduce = nn.Conv2D(channels, num_state, 1)
        self.visual_gcn = GraphConv(num_state, num_node, relu_between=True)
        self.semantic_gcn = GraphConv(num_state, num_classes, relu_between=True)
        self.interaction = GraphInteraction(num_state)
        self.gamma_visual = self.create_parameter([num_node], default_initializer=nn.initializer.Constant(0.0))
        self.gamma_semantic = self.create_parameter([num_classes], default_initializer=nn.initializer.Constant(0.0))
        self.extend = nn.Conv2D(num_state, channels, 1, bias_attr=None if conv_bias else False)
        self.norm = nn.BatchNorm2D(channels)

    def forward(self, x: paddle.Tensor, semantic: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """``x`` N×C×H×W, ``semantic`` N×S×classes → (N×C×H×W features, N×S×classes class nodes)."""
        projection = flatten_pixels(self.project(x))  # N×K×L
        states = flatten_pixels(self.reduce(x))  # N×S×L
        visual = paddle.matmul(states, projection, transpose_y=True) / pixel_count(x)  # N×S×K
        semantic = self.semantic_gcn(semantic)
        visual = self.visual_gcn(visual)
        to_semantic, to_visual = self.interaction(semantic, visual)
        classes = self.gamma_semantic * semantic + to_semantic
        visual = self.gamma_visual * to_visual + visual
        y = unflatten_like(paddle.matmul(visual, projection), x)  # N×S×H×W
        return x + self.norm(self.extend(y)), classes


class GINetHead(Decoder):
    """GINet head: optional JPU over the last three levels, 3×3 conv-BN-ReLU to ``channels``, the GI
    unit, dropout and a 1×1 classifier. In training it also returns semantic-context logits
    (N×num_classes): each updated class node scored against a learned per-class centroid (the centroids
    exist only when ``context_weight`` > 0)."""

    def __init__(self, feature_info: FeatureInfo, num_classes: int, *, channels: int = 512, num_state: int = 256,
                 num_node: int = 84, class_embeddings: Path | None = None, embedding_dim: int = 300,
                 embedding_init: str = "normal", train_embeddings: bool = True, jpu: bool = True,
                 jpu_width: int = 512, jpu_deepest_first: bool = False, jpu_align_corners: bool = False,
                 dropout: float = 0.1, context_weight: float = 0.2, conv_bias: bool = False) -> None:
        super().__init__()
        for option, value in (("channels", channels), ("num_state", num_state), ("num_node", num_node),
                              ("embedding_dim", embedding_dim), ("jpu_width", jpu_width)):
            check_positive(option, value)
        for option, value in (("train_embeddings", train_embeddings), ("jpu_deepest_first", jpu_deepest_first),
                              ("jpu_align_corners", jpu_align_corners)):
            check_bool(option, value)
        check_choice("embedding_init", embedding_init, list(EMBEDDING_INITS))
        if num_state < 2:  # the interaction's query and key have num_state // 2 channels
            raise ValueError(f"num_state={num_state} must be at least 2")
        check_dropout(dropout)
        if isinstance(context_weight, bool) or not context_weight >= 0:
            raise ValueError(f"context_weight={context_weight!r} must be a number ≥ 0")
        if jpu and len(feature_info) < 3:
            raise ValueError(f"jpu=True needs three backbone levels, the backbone returns {len(feature_info)}")
        self.num_classes = num_classes
        # first: a bad file fails fast
        self._init_embeddings(class_embeddings, num_classes, embedding_dim, embedding_init, train_embeddings)
        self.jpu = JPU(feature_info.channels[-3:], jpu_width, conv_bias=conv_bias, deepest_first=jpu_deepest_first,
                       align_corners=jpu_align_corners) if jpu else None
        in_channels = self.jpu.out_channels if jpu else feature_info[-1].channels
        width = self.embeddings.shape[1]
        self.embed = nn.Sequential(
            nn.Linear(width, EMBEDDING_HIDDEN), nn.BatchNorm1D(EMBEDDING_HIDDEN), nn.ReLU(),
            nn.Linear(EMBEDDING_HIDDEN, num_state), nn.BatchNorm1D(num_state), nn.ReLU(),
        )
        self.conv = ConvBNReLU(in_channels, channels, 3, bias=conv_bias)
        self.interaction = GraphInteractionUnit(channels, num_state, num_node, num_classes, conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2D(channels, num_classes, 1)
        if context_weight > 0:
            self.context_centroids = self.create_parameter([num_state, num_classes])
        self.aux_weights = (context_weight,) if context_weight > 0 else ()
        self.aux_losses = (CONTEXT_LOSS,) if context_weight > 0 else ()

    def _init_embeddings(self, path: str | Path | None, num_classes: int, dim: int, init: str,
                         trainable: bool) -> None:
        global _warned_learnable
        if path is not None:
            # fixed linguistic knowledge: a buffer, saved with the model but never trained
            self.register_buffer("embeddings", paddle.to_tensor(load_class_embeddings(path, num_classes)))
            return
        if trainable and not _warned_learnable:
            _warned_learnable = True
            start = "at random" if init == "normal" else "at zero"
            warnings.warn(f"GINet: no class_embeddings file given, so the class embeddings are learnable "
                          f"parameters initialised {start} (the paper uses fixed word embeddings)",
                          UserWarning, stacklevel=4)
        # a parameter even when frozen (as PaddleSeg keeps it), so its checkpoints' embeddings load into it
        self.embeddings = self.create_parameter([num_classes, dim], default_initializer=EMBEDDING_INITS[init]())
        self.embeddings.stop_gradient = not trainable

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor | list[paddle.Tensor]:
        x = self.jpu(features[-3:]) if self.jpu is not None else features[-1]
        x = self.conv(x)
        semantic = self.embed(self.embeddings).transpose([1, 0]).unsqueeze(0)  # 1×S×classes
        semantic = paddle.expand(semantic, [batch_size(x), semantic.shape[1], self.num_classes])
        x, classes = self.interaction(x, semantic)
        logits = self.classifier(self.dropout(x))
        if not self.training or not self.aux_weights:
            return logits
        return [logits, (classes * self.context_centroids).sum(axis=1)]
