"""Process set-up: CPU threads, device, seeds, data-parallel environment, BatchNorm flavour."""
from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass

import numpy as np
import paddle


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int = 0, world_size: int = 1) -> int:
    """Set Paddle's CPU kernel threads (0: the available cores shared among local processes).

    Paddle computes on one thread unless told otherwise; this is why the engine calls it.
    """
    if threads < 0:
        raise ValueError(f"runtime.threads must be ≥ 0, got {threads}")
    count = threads or max(1, available_cores() // max(1, local_processes(world_size)))
    paddle.base.core.set_num_threads(count)
    return count


def local_processes(world_size: int) -> int:
    """Processes of this job on this machine (from the launcher's environment when present)."""
    return int(os.environ.get("PADDLE_LOCAL_SIZE", os.environ.get("PADDLE_TRAINERS_NUM_LOCAL", world_size)))


def gpu_available() -> bool:
    """True if this Paddle build is compiled with CUDA and sees at least one GPU."""
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def choose_device(device: str) -> str:
    """Resolve ``auto``/``cpu``/``gpu`` to what exists; asking for a GPU without one is an error."""
    has_gpu = gpu_available()
    if device == "auto":
        return "gpu" if has_gpu else "cpu"
    if device == "gpu" and not has_gpu:
        raise ValueError("runtime.device is 'gpu' but this Paddle build sees no GPU (install paddlepaddle-gpu)")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"runtime.device must be auto, cpu or gpu, got {device!r}")
    return device


def quiet_paddle() -> None:
    """Silence Paddle's per-forward BatchNorm notice, which says nothing actionable."""
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


def seed_everything(seed: int) -> None:
    """Seed Paddle, NumPy and Python's RNGs."""
    paddle.seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a data-parallel job."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which writes files and prints."""
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the data-parallel job started by ``python -m paddle.distributed.launch`` (if any)."""
    world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world_size <= 1:
        return DistEnv()
    import paddle.distributed as dist

    dist.init_parallel_env()
    return DistEnv(dist.get_rank(), dist.get_world_size())


def use_sync_bn(device: str, world_size: int) -> bool:
    """SyncBatchNorm only where Paddle has it (GPU) and where it matters (several processes)."""
    return device == "gpu" and world_size > 1


_warned_cpu_sync_bn = False


def convert_batch_norm(model: paddle.nn.Layer, device: str, world_size: int) -> paddle.nn.Layer:
    """Switch BatchNorm to SyncBatchNorm for multi-GPU jobs; on CPU keep BatchNorm, saying so once."""
    global _warned_cpu_sync_bn
    if use_sync_bn(device, world_size):
        return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if world_size > 1 and device == "cpu" and not _warned_cpu_sync_bn:
        _warned_cpu_sync_bn = True
        warnings.warn("SyncBatchNorm exists only on GPU in Paddle: using per-process BatchNorm on CPU",
                      stacklevel=2)
    return model
