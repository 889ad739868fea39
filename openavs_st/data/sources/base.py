"""The clip-source core: :class:`ClipSource` (the interface), :data:`CLIP_SOURCES` (the registry),
:func:`open_source`, and the one rule for folders of media files (:func:`media_files`) with one suffix list
per media kind. See :mod:`openavs_st.data.sources` for the kinds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset
from openavs_st.registry import Registry, UnknownComponentError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class UnknownSourceError(UnknownComponentError, ConfigError):
    """An unknown source kind or dataset name; the message lists the choices (a ``KeyError`` as the
    registry raises and a ``ValueError``/:class:`ConfigError` as every other configuration error)."""


class ClipSource(Sequence[Clip], ABC):
    """Clip ids and a way to load each clip.

    Subclasses set ``self._ids`` (the clip ids, in a stable order) in ``__init__``, implement :meth:`load`,
    and :meth:`from_config` when their config is more than their constructor's keyword arguments.
    ``data_names`` are the ``data.name`` values (``configs/data/``) the kind reads.
    """

    name: str = ""  # the registered kind, set by CLIP_SOURCES.register
    data_names: tuple[str, ...] = ()
    _ids: list[str]

    @property
    def kind(self) -> str:
        return type(self).name

    @property
    def ids(self) -> list[str]:
        """Clip ids, in a stable order (a copy)."""
        return list(self._ids)

    @abstractmethod
    def load(self, clip_id: str) -> Clip:
        """The clip ``clip_id`` (raises :class:`~openavs_st.data.clip.ClipError` naming the bad file)."""

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        """The source of an ``input`` config (every key but ``kind`` a constructor argument, by default)."""
        return cls(**{k: v for k, v in input_cfg.items() if k != "kind"})

    def class_names(self, clip: Clip) -> list[str]:
        """The clip-level class names (weak label) of a loaded clip, for the ``clip_label`` mode."""
        names = clip.meta.get("classes")
        if names:
            return [str(name) for name in names]
        category = clip.meta.get("category")
        if category:
            return [str(category)]
        raise ClipError(
            f"clip {clip.id!r} has no clip-level class name (meta 'category' or 'classes'); the clip_label "
            f"labeler needs one (input kind {self.kind!r})"
        )

    def describe(self) -> dict[str, Any]:
        """Where the clips come from, for the saved config and the summary."""
        return {"kind": self.kind}

    def categories(self) -> list[str | None]:
        """The category of every clip, in id order, where known without loading (``None`` otherwise);
        the off-screen negatives of training draw their audio from another category."""
        return [None] * len(self)

    def log_mel_of(self, index: int) -> np.ndarray:
        """The ``[T, 1, 96, 64]`` log-mel of clip ``index`` (sources that can skip the frames override this)."""
        clip = self[index]
        if clip.log_mel is None:
            raise ClipError(f"clip {clip.id!r} has no log-mel")
        return clip.log_mel

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        if not -len(self._ids) <= index < len(self._ids):
            raise IndexError(index)
        return self.load(self._ids[index])

    def __iter__(self) -> Iterator[Clip]:
        for clip_id in list(self._ids):
            yield self.load(clip_id)


# Built-in kinds: every public module of this package (a new kind can also live anywhere else).
CLIP_SOURCES: Registry[ClipSource] = Registry("clip source", builtin=("openavs_st.data.sources",), base=ClipSource)


def open_source(
    input_cfg: Mapping[str, Any],
    data_cfg: Mapping[str, Any] | None = None,
    *,
    input_key: str = "input",
    data_key: str = "data",
) -> ClipSource:
    """The clip source an ``input`` config describes.

    Args:
        input_cfg: ``kind`` (a name of :data:`CLIP_SOURCES`) and that kind's options, e.g.
            ``{"kind": "avsbench", "split": "test"}``, ``{"kind": "videos", "path": ..., "num_frames": None,
            "size": None, "missing_audio": "error", "category_from_folder": False}``,
            ``{"kind": "unpaired", "audio_dir": ..., "image_dir": ..., "k": 1, "seed": 0, "num_frames": 5}``.
            Without ``kind``, the kind that reads ``data_cfg["name"]`` (e.g. ``{"split": "val"}`` with
            ``data=pseudo`` opens the store).
        data_cfg: the dataset config (``configs/data/<name>.yaml``: ``name``, ``root``, ``audio``,
            ``allow_pickle``, ``subsets``) for the kinds that read one.
        input_key, data_key: the config keys of the two, named in error messages.

    Raises:
        ConfigError: a missing or wrong key (the message names it); :class:`UnknownSourceError` for an
            unknown kind or dataset, listing the choices.
    """
    kind = input_cfg.get("kind")
    if is_unset(kind):
        name = (data_cfg or {}).get("name")
        if is_unset(name):
            raise ConfigError(f"{input_key}.kind is not set: one of {CLIP_SOURCES.names()}")
        kind = kind_of_dataset(str(name), data_key=data_key)
    try:
        cls = CLIP_SOURCES.get(str(kind))
    except UnknownComponentError as exc:
        raise UnknownSourceError(f"{input_key}.kind: {exc}") from None
    return cls.from_config(input_cfg, data_cfg, input_key=input_key, data_key=data_key)


def kind_of_dataset(name: str, *, data_key: str = "data") -> str:
    """The source kind that reads the dataset ``data.name=name``."""
    known: list[str] = []
    for kind in CLIP_SOURCES.names():
        names = CLIP_SOURCES.get(kind).data_names
        if name in names:
            return kind
        known.extend(names)
    raise UnknownSourceError(f"{data_key}.name={name!r} is no dataset a clip source reads; known: {sorted(known)}")


# --- folders of media files ------------------------------------------------------------------------------


def media_files(
    path: str | Path, suffixes: Sequence[str], *, what: str, key: str, single: str | None = None
) -> dict[str, Path]:
    """Clip id (file stem) -> file, for every ``suffixes`` file under the folder ``path`` (see the module
    docstring for the rule), or for ``path`` itself when it is such a file and ``single`` names what one
    file is (e.g. ``"a video file"``).

    Raises:
        ConfigError: naming ``key``: the path does not exist, is not a folder (or a fitting file), holds
            no such file, or two files share a stem.
    """
    path = Path(path).expanduser()
    accepted = f"a folder of {what}" + (f", nor {single}" if single else "")
    if not path.exists():
        raise ConfigError(f"{key}={path} does not exist: it is not {accepted}")
    if path.is_file():
        if single and path.suffix.lower() in suffixes:
            return {path.stem: path}
        raise ConfigError(f"{key}={path} is not {accepted} ({', '.join(suffixes)})")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.is_file()
    )
    if not files:
        raise ConfigError(f"{key}={path} holds no {what} (looked for {', '.join(suffixes)}, sub-folders included)")
    by_id: dict[str, Path] = {}
    for file in files:
        if file.stem in by_id:
            raise ConfigError(
                f"{key}={path}: two {what} map to the clip id {file.stem!r}: {by_id[file.stem]} and {file}; "
                "rename one (the id names the clip's outputs)"
            )
        by_id[file.stem] = file
    return by_id


def size_hw(size: Sequence[int] | None) -> tuple[int, int] | None:
    """An optional ``(H, W)`` config value as a tuple of ints."""
    return None if size is None else (int(size[0]), int(size[1]))
