"""semsegpaddle: semantic segmentation on PaddlePaddle, extensible through pluggy plugins.

``from semsegpaddle import hookimpl`` is all a plugin needs and imports nothing heavy; the Python
API (``load_config``, ``train``, ``evaluate``, ...) is loaded on first use.
"""
from semsegpaddle.core.plugin.hookspecs import hookimpl

from semsegpaddle.core.common.version import __version__

_API = {"load_config", "config_from_dict", "list_components", "create_backbone", "create_model",
        "create_dataset", "train", "evaluate", "predict", "load_model", "export", "score_predictions"}
__all__ = ["hookimpl", "__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:
        from semsegpaddle import api

        return getattr(api, name)
    raise AttributeError(f"module 'semsegpaddle' has no attribute {name!r}")
