"""Clip sources of datasets in the AVSBench layouts: ``avsbench`` (S4, MS3, AVSS, AVSS-binary) and ``synthetic``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset, require_root
from openavs_st.data.sources.base import CLIP_SOURCES, ClipSource

AVSBENCH_DATASETS = ("avsbench_s4", "avsbench_ms3", "avsbench_avss", "avsbench_avss_binary")


def reader_options(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Reader keyword arguments of a dataset config: ``audio``, ``allow_pickle`` and (AVSS) ``subsets``."""
    options: dict[str, Any] = {
        "audio": str(data_cfg.get("audio") or "wav"),
        "allow_pickle": bool(data_cfg.get("allow_pickle", False)),
    }
    if str(data_cfg.get("name", "")).startswith("avsbench_avss") and data_cfg.get("subsets"):
        options["subsets"] = tuple(data_cfg["subsets"])
    return options


@CLIP_SOURCES.register("avsbench")
class AVSBenchSource(ClipSource):
    """An AVSBench split: S4, MS3, AVSS or AVSS-binary (data=avsbench_*).

    Read by :func:`openavs_st.data.avsbench.open_reader`. Ground-truth masks are read as the reader reads
    them; a labeler never uses them, only the ``clip_label`` mode looks at a clip's class names (its weak
    label).

    Args:
        dataset: one of :data:`AVSBENCH_DATASETS`.
        root, split: as for :func:`~openavs_st.data.avsbench.open_reader`.
        **reader_kwargs: more reader options (``audio``, ``allow_pickle``, ``subsets`` ...).
    """

    data_names = AVSBENCH_DATASETS

    def __init__(self, dataset: str, root: str | Path, split: str = "test", **reader_kwargs: Any) -> None:
        from openavs_st.data.avsbench import open_reader

        self.dataset = dataset
        self.reader = open_reader(dataset, root, split, **reader_kwargs)
        self._ids = self.reader.ids
        self._index = {record.id: record for record in self.reader.records}
        self._avss_names: list[str] | None = None

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        data_cfg = data_cfg or {}
        name = data_cfg.get("name")
        if is_unset(name):
            raise ConfigError(
                f"{input_key}.kind=avsbench needs a dataset: pass data=avsbench_s4 (or avsbench_ms3, avsbench_avss, "
                "avsbench_avss_binary) and data.root=..."
            )
        if name not in cls.data_names:
            raise ConfigError(f"{data_key}.name={name} is not an AVSBench dataset; one of {list(cls.data_names)}")
        root = require_root(data_cfg.get("root"), key=f"{data_key}.root", owner=f"{data_key}.name={name}")
        split = input_cfg.get("split")
        return cls(str(name), root, "test" if is_unset(split) else str(split), **reader_options(data_cfg))

    def load(self, clip_id: str) -> Clip:
        try:
            record = self._index[clip_id]
        except KeyError:
            raise ClipError(f"{self.dataset} {self.reader.split}: no clip {clip_id!r} in {self.reader.root}") from None
        return self.reader.build_clip(record)

    def categories(self) -> list[str | None]:
        return self.reader.categories()

    def log_mel_of(self, index: int) -> np.ndarray:
        return self.reader.log_mel_of(index)

    def class_names(self, clip: Clip) -> list[str]:
        from openavs_st.data.avsbench import AVSSReader

        if isinstance(self.reader, AVSSReader) and clip.masks is not None:
            # AVSS: the classes present in the clip's (semantic) ground truth, background excluded. The
            # binary view has lost them, so read the clip again through the semantic path.
            if self._avss_names is None:
                self._avss_names = self.reader.class_names()
            masks = clip.masks
            if getattr(self.reader, "binary", False):
                masks = AVSSReader(self.reader.root, self.reader.split, audio="none").build_clip(
                    self._index[clip.id]
                ).masks
            present = sorted(int(index) for index in np.unique(masks) if index != 0)
            return [self._avss_names[index] for index in present]
        return super().class_names(clip)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "dataset": self.dataset, "root": str(self.reader.root), "split": self.reader.split}


@CLIP_SOURCES.register("synthetic")
class SyntheticSource(AVSBenchSource):
    """The synthetic S4-layout dataset (data=synthetic), written under its root on first use.

    See :mod:`openavs_st.data.synthetic`.
    """

    data_names = ("synthetic",)

    def __init__(self, root: str | Path, split: str = "test", **reader_kwargs: Any) -> None:
        from openavs_st.data.synthetic import ensure_synthetic

        super().__init__("avsbench_s4", ensure_synthetic(Path(root).expanduser()), split, **reader_kwargs)

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        data_cfg = data_cfg or {}
        root = require_root(
            data_cfg.get("root"), key=f"{data_key}.root", owner=f"{data_key}.name=synthetic", must_exist=False,
            example="/folder/to/write/it/to", hint=None,
        )
        split = input_cfg.get("split")
        return cls(root, "test" if is_unset(split) else str(split))
