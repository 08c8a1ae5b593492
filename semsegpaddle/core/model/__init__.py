"""Models: the plugin contracts (``interfaces``), shared layers, assembly of backbone + decoder +
auxiliary head (``assembly``), weight import (``weights``), backbone option checks and the training objective (``losses``).

``semsegpaddle.core.model`` also offers the public names of :mod:`semsegpaddle.core.model.assembly` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.model.assembly")
