"""Do all processes of a data-parallel job hold the same trained weights?

They should, bit for bit: each applies the same averaged gradients to the same weights. Every
process prints the SHA-256 of its trainable weights at the end of a multi-process run (its worker
log), and rank 0 warns if they differ. The digest of a checkpoint's tensors is computed the same
way, so a worker's line can be compared with the file rank 0 saved.
"""
from __future__ import annotations

import hashlib
import sys
import warnings
from typing import Iterable, Mapping

import numpy as np
import paddle

from semsegpaddle.core.common.runtime import DistEnv


def weights_digest(arrays: Mapping[str, np.ndarray], names: Iterable[str]) -> str:
    """SHA-256 over ``names`` (in sorted order) and their arrays' float32 bytes."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name], dtype=np.float32).tobytes())
    return digest.hexdigest()


def model_digest(model: paddle.nn.Layer) -> str:
    """:func:`weights_digest` of the model's trainable parameters."""
    trainable = {n: p.numpy() for n, p in model.named_parameters() if not p.stop_gradient}
    return weights_digest(trainable, trainable)


def check_ranks_agree(model: paddle.nn.Layer, dist: DistEnv) -> list[str]:
    """Print this process's digest and gather every process's; rank 0 warns if they differ."""
    if dist.world_size <= 1:
        return [model_digest(model)]
    import paddle.distributed as pdist

    mine = model_digest(model)
    print(f"rank {dist.rank}/{dist.world_size}: trained weights sha256 {mine}", file=sys.stderr, flush=True)
    digests: list[str] = []
    pdist.all_gather_object(digests, mine)
    if dist.is_main and len(set(digests)) > 1:
        warnings.warn(f"the {dist.world_size} processes ended with different weights (sha256 by rank: "
                      f"{', '.join(d[:12] for d in digests)}); the checkpoint holds rank 0's", stacklevel=2)
    return digests
