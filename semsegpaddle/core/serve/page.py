"""The web page at ``/``: one self-contained HTML file shipped with the package (inline CSS and
JavaScript, no external assets, no build step)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["page_html"]


@lru_cache(maxsize=1)
def page_html() -> str:
    """The page's HTML text."""
    return resources.files("semsegpaddle.core.serve").joinpath("index.html").read_text(encoding="utf-8")
