"""semsegpaddle: semantic segmentation on PaddlePaddle, extensible through pluggy plugins."""
from semsegpaddle.core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
