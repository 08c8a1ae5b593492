"""Configs: YAML loading with ``_base_`` and overrides (``loader``), the engine's keys (``schema``),
and value checks against type annotations live in ``semsegpaddle.core.common.typecheck``; the
packaged configs are registered by the built-in plugin ``semsegpaddle.plugins.configs``.

``semsegpaddle.core.config`` also offers the public names of :mod:`semsegpaddle.core.config.loader` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.config.loader")
