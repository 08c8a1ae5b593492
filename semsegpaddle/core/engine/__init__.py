"""Training: the loop (``trainer``), checkpoints, the run folder, signal handling, process
set-up (``runtime``) and atomic file writes.

``semsegpaddle.core.engine`` also offers the public names of :mod:`semsegpaddle.core.engine.trainer` (loaded on first use).
"""
from semsegpaddle.core import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.engine.trainer")
