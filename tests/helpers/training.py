"""Training helpers for engine tests."""
from __future__ import annotations

from semsegpaddle.api import train
from semsegpaddle.core.engine import trainer as engine


def train_until(config, stop_step, resume=False):
    """Train ``config``'s schedule but stop after ``stop_step`` steps, as a killed process would."""
    original = engine.train_loader

    def truncated(dataset, cfg, start, rank=0, world_size=1, **options):
        loader = original(dataset, cfg, start, rank, world_size, **options)
        for _, batch in zip(range(start, stop_step), loader):
            yield batch

    engine.train_loader = truncated
    try:
        return train(config, resume=resume)
    finally:
        engine.train_loader = original
