"""Data: datasets from config and the resumable batch order (``datasets``), batch loading
(``loader``), augmentation (``transforms``) and image/label files (``image_io``).

``semsegpaddle.core.data`` also offers the public names of :mod:`semsegpaddle.core.data.datasets` (loaded on first use).
"""
from semsegpaddle.core.common.lazy import lazy_attributes

__getattr__ = lazy_attributes("semsegpaddle.core.data.datasets")
