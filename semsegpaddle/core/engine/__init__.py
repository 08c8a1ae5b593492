"""Training: the loop (``trainer``) and one step (``step``), optimizers and schedules (``optim``),
mixed precision (``amp``), checkpoints, the run folder, signal handling (``interrupt``), hand-over
to Paddle's launcher (``launch``), what a run records of its software (``provenance``), scalar logs
and progress, process set-up (``runtime``) and atomic file writes.

``semsegpaddle.core.engine`` also offers the public names of :mod:`semsegpaddle.core.engine.trainer` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.engine.trainer")
