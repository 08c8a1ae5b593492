"""Configs: YAML loading with ``_base_`` and overrides (``loader``) and the engine's keys
(``schema``). Value checks against type annotations live in ``semsegpaddle.core.common.typecheck``;
the packaged configs are registered by a built-in plugin, like any plugin's configs.

``semsegpaddle.core.config`` also offers the public names of :mod:`semsegpaddle.core.config.loader` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.config.loader")
