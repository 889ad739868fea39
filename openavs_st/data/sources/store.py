"""The ``store`` clip source: the ok clips of a pseudo-label store (``data=pseudo``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset, require_root
from openavs_st.data.sources.base import CLIP_SOURCES, ClipSource


@CLIP_SOURCES.register("store")
class StoreSource(ClipSource):
    """The ok clips of a pseudo-label store (data=pseudo), in id order.

    Read by :class:`~openavs_st.data.store.PseudoLabelStore`; with the data config's ``num_frames`` (training:
    ``data.num_frames``) as windows of that many frames, so clips of different lengths batch.

    Args:
        path: the store folder.
        **store_kwargs: :class:`~openavs_st.data.store.PseudoLabelStore` options (``window``, ``num_frames`` ...).
    """

    data_names = ("pseudo",)

    def __init__(self, path: str | Path, **store_kwargs: Any) -> None:
        from openavs_st.data.store import PseudoLabelStore

        self.store = PseudoLabelStore(Path(path).expanduser(), **store_kwargs)
        self._ids = list(self.store.ids)
        self._position = {clip_id: i for i, clip_id in enumerate(self._ids)}

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        if not is_unset(input_cfg.get("path")):
            root = require_root(input_cfg["path"], key=f"{input_key}.path", owner=f"{input_key}.kind=store")
        else:
            root = require_root(
                (data_cfg or {}).get("root"), key=f"{data_key}.root", owner=f"{data_key}.name=pseudo",
                example="/path/to/store", hint=None,
            )
        window = (data_cfg or {}).get("num_frames")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ConfigError(f"{data_key}.num_frames must be a positive number of frames or null, got {window!r}")
        return cls(root, window=window, semantic=bool((data_cfg or {}).get("semantic", False)))

    def load(self, clip_id: str) -> Clip:
        try:
            return self.store[self._position[clip_id]]
        except KeyError:
            raise ClipError(f"{self.store.root}: no ok record of clip {clip_id!r}") from None

    def categories(self) -> list[str | None]:
        return self.store.categories()

    def frame_counts(self) -> list[int]:
        return self.store.frame_counts()

    def log_mel_of(self, index: int) -> np.ndarray:
        return self.store.log_mel_of(index)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.store.root)}
