"""openavs-st: train audio-visual segmentation models on pseudo-labels from unlabeled videos.

``import openavs_st`` is cheap (no torch, no Lightning); the public entry points load lazily:

- ``openavs_st.load_model(folder, device="cpu")``: the backbone of an export folder, in eval mode
  (:func:`openavs_st.export.load_model`).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("openavs-st")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from openavs_st.export import load_model

        return load_model
    raise AttributeError(f"module 'openavs_st' has no attribute {name!r}")
