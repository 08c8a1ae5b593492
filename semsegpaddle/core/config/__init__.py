"""Configs: YAML loading with ``_base_`` and overrides (``loader``), the engine's keys (``schema``),
value checks against type annotations (``typecheck``), and the packaged configs (``configs/``).

``semsegpaddle.core.config`` also offers the public names of :mod:`semsegpaddle.core.config.loader` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.config.loader")
