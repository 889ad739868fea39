"""Where clips come from: one registry of clip sources, used by the labelers (``python -m pseudolabel``), the
training data (:class:`openavs_st.datamodule.AVSDataModule`) and ``infer.py``.

A source lists its clip ids up front (cheap: nothing is decoded) and loads one clip at a time, so a
corrupt file fails only its own clip and sharding or resuming can skip clips without reading them. It is
also a ``Sequence[Clip]`` (``source[i]`` loads ``source.ids[i]``), which is what the DataModule batches.

Kinds (:data:`CLIP_SOURCES`; ``CLIP_SOURCES.describe()`` lists them):

- ``avsbench``: an AVSBench split (``data=avsbench_s4 | avsbench_ms3 | avsbench_avss | avsbench_avss_binary``)
  through the readers of :mod:`openavs_st.data.avsbench`;
- ``videos``: a video file, or every video file under a folder, decoded by
  :func:`openavs_st.data.video.read_video_clip` (AVSBench's one frame per second);
- ``unpaired``: audio clips and images composed into clips, each audio with ``k`` seeded images (the
  OpenAVS paper's unpaired setting);
- ``store``: a pseudo-label store (:class:`openavs_st.data.store.PseudoLabelStore`, ``data=pseudo``);
- ``synthetic``: the synthetic S4-layout dataset, written under its root on first use (``data=synthetic``).

:func:`open_source` builds a source from an ``input`` config (``{"kind": "videos", "path": ...}``) and,
for the kinds that read a dataset, the ``data`` config of ``configs/data/``; without ``kind`` the dataset's
``name`` picks the kind. A new kind is a :class:`ClipSource` subclass decorated with
``@CLIP_SOURCES.register("name")`` (see :mod:`openavs_st.registry`).

Folders follow one rule (:func:`media_files`): every file under the folder, sub-folders included, whose
suffix (any case) is in the media kind's list (:data:`VIDEO_SUFFIXES`, :data:`AUDIO_SUFFIXES`,
:data:`IMAGE_SUFFIXES`), hidden files and folders (a name starting with ".") left out, in path order; the
file stem is the clip id, so two files with one stem are an error.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset, require_root
from openavs_st.registry import Registry, UnknownComponentError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
AVSBENCH_DATASETS = ("avsbench_s4", "avsbench_ms3", "avsbench_avss", "avsbench_avss_binary")


class UnknownSourceError(UnknownComponentError, ConfigError):
    """An unknown source kind or dataset name; the message lists the choices (a ``KeyError`` as the
    registry raises and a ``ValueError``/:class:`ConfigError` as every other configuration error)."""


class ClipSource(Sequence[Clip], ABC):
    """Clip ids and a way to load each clip.

    Subclasses implement :attr:`ids` and :meth:`load`, and :meth:`from_config` when their config is more
    than their constructor's keyword arguments. ``data_names`` are the ``data.name`` values
    (``configs/data/``) the kind reads.
    """

    name: str = ""  # the registered kind, set by CLIP_SOURCES.register
    data_names: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return type(self).name

    @property
    @abstractmethod
    def ids(self) -> list[str]:
        """Clip ids, in a stable order."""

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
        return len(self.ids)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        ids = self.ids
        if not -len(ids) <= index < len(ids):
            raise IndexError(index)
        return self.load(ids[index])

    def __iter__(self) -> Iterator[Clip]:
        for clip_id in self.ids:
            yield self.load(clip_id)


CLIP_SOURCES: Registry[ClipSource] = Registry("clip source", builtin=(__name__,), base=ClipSource)


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


def _size(size: Sequence[int] | None) -> tuple[int, int] | None:
    return None if size is None else (int(size[0]), int(size[1]))


# --- AVSBench ------------------------------------------------------------------------------------------


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

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        return self.reader[index]

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


# --- video files -------------------------------------------------------------------------------------


@CLIP_SOURCES.register("videos")
class VideoFolderSource(ClipSource):
    """A video file, or every video file under a folder (sub-folders included); the clip id is the file stem.

    Args:
        path: the file or folder.
        num_frames: frames per clip (default: the whole seconds of each video).
        size: ``(H, W)`` to resize frames to (default: native).
        missing_audio: ``error`` (a video without sound fails) or ``silence``.
        category_from_folder: ``meta["category"]`` from the video's parent folder name (for ``clip_label`` on
            a folder sorted by class).
        key: the config key ``path`` came from, named in error messages.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_frames: int | None = None,
        size: Sequence[int] | None = None,
        missing_audio: str = "error",
        category_from_folder: bool = False,
        key: str = "input",
    ) -> None:
        if missing_audio not in ("error", "silence"):
            raise ConfigError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
        self.folder = Path(path).expanduser()
        self.files = media_files(self.folder, VIDEO_SUFFIXES, what="video files", key=key, single="a video file")
        self._ids = list(self.files)
        self.num_frames = num_frames
        self.size = _size(size)
        self.missing_audio = missing_audio
        self.category_from_folder = category_from_folder

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        path = input_cfg.get("path")
        if is_unset(path):
            raise ConfigError(f"{input_key}.kind=videos needs a path: {input_key}=/a/video.mp4 or /a/folder/of/videos")
        return cls(
            path,
            num_frames=input_cfg.get("num_frames"),
            size=input_cfg.get("size"),
            missing_audio=str(input_cfg.get("missing_audio") or "error"),
            category_from_folder=bool(input_cfg.get("category_from_folder", False)),
            key=input_key,
        )

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def _category(self, path: Path) -> str | None:
        return path.parent.name if self.category_from_folder and path.parent != self.folder else None

    def load(self, clip_id: str) -> Clip:
        from openavs_st.data.video import read_video_clip

        path = self.files[clip_id]
        clip = read_video_clip(
            path, num_frames=self.num_frames, size=self.size, missing_audio=self.missing_audio, clip_id=clip_id
        )
        category = self._category(path)
        if category is not None:
            clip.meta["category"] = category
        return clip

    def categories(self) -> list[str | None]:
        return [self._category(self.files[clip_id]) for clip_id in self._ids]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.folder), "num_frames": self.num_frames}


# --- unpaired audio + images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """One composed clip of the unpaired setting: an audio file shown with an image."""

    clip_id: str
    audio: Path
    image: Path
    draw: int  # 0..k-1: which of the audio's k images

    def to_dict(self) -> dict[str, Any]:
        return {"audio": str(self.audio), "image": str(self.image), "draw": self.draw}


def _seed_for(seed: int, name: str) -> int:
    """A per-audio seed: stable under adding or removing other audio files."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


@CLIP_SOURCES.register("unpaired")
class UnpairedSource(ClipSource):
    """Audio clips and images composed into clips (the OpenAVS paper's unpaired setting).

    Each audio file is paired with ``k`` distinct images drawn uniformly without replacement from the sorted
    image list by a generator seeded with ``(seed, audio file stem)``, so the pairing does not depend on
    sharding, ordering or on which other audio files exist. Clip ``<audio>+<image>`` has ``num_frames``
    copies of the image (resized to ``size`` if given) and the audio (its first ``num_frames`` seconds are
    described; shorter audio is padded with silence). ``meta["pairing"]`` records the pairing.

    Args:
        audio_dir, image_dir: the folders.
        k: images per audio clip (at most the number of images).
        seed: pairing seed.
        num_frames: frames (seconds) per clip.
        size: ``(H, W)`` to resize images to (default: native).
        category_from_folder: ``meta["category"]`` from the audio file's parent folder name.
        key: the config key of the options, named in error messages.
    """

    def __init__(
        self,
        audio_dir: str | Path,
        image_dir: str | Path,
        *,
        k: int = 1,
        seed: int = 0,
        num_frames: int = 5,
        size: Sequence[int] | None = None,
        category_from_folder: bool = False,
        key: str = "input",
    ) -> None:
        self.audio_dir = Path(audio_dir).expanduser()
        self.image_dir = Path(image_dir).expanduser()
        audio = media_files(self.audio_dir, AUDIO_SUFFIXES, what="audio files", key=f"{key}.audio_dir")
        images = media_files(self.image_dir, IMAGE_SUFFIXES, what="images", key=f"{key}.image_dir")
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ConfigError(f"{key}.k must be a positive integer, got {k!r}")
        if k > len(images):
            raise ConfigError(f"{key}.k={k} but {self.image_dir} holds only {len(images)} images")
        if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
            raise ConfigError(f"{key}.num_frames must be a positive integer, got {num_frames!r}")
        self.k, self.seed, self.num_frames = int(k), int(seed), int(num_frames)
        self.size = _size(size)
        self.category_from_folder = category_from_folder
        image_ids = sorted(images)
        self.pairings: dict[str, Pairing] = {}
        for audio_id in sorted(audio):
            rng = np.random.default_rng(_seed_for(self.seed, audio_id))
            for draw, index in enumerate(rng.choice(len(image_ids), size=self.k, replace=False)):
                image_id = image_ids[int(index)]
                clip_id = f"{audio_id}+{image_id}"
                self.pairings[clip_id] = Pairing(clip_id, audio[audio_id], images[image_id], draw)
        self._ids = list(self.pairings)

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        audio_dir, image_dir = input_cfg.get("audio_dir"), input_cfg.get("image_dir")
        if is_unset(audio_dir) or is_unset(image_dir):
            raise ConfigError(f"{input_key}.kind=unpaired needs {input_key}.audio_dir=... and {input_key}.image_dir=...")
        return cls(
            audio_dir,
            image_dir,
            k=input_cfg.get("k", 1),
            seed=int(input_cfg.get("seed", 0)),
            num_frames=input_cfg.get("num_frames") or 5,
            size=input_cfg.get("size"),
            category_from_folder=bool(input_cfg.get("category_from_folder", False)),
            key=input_key,
        )

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def _category(self, pairing: Pairing) -> str | None:
        parent = pairing.audio.parent
        return parent.name if self.category_from_folder and parent != self.audio_dir else None

    def load(self, clip_id: str) -> Clip:
        from openavs_st.data.audio import load_audio, log_mel_examples
        from openavs_st.data.avsbench import read_image

        pairing = self.pairings[clip_id]
        image = read_image(pairing.image)
        if self.size is not None:
            import cv2

            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        wave, sample_rate = load_audio(pairing.audio)
        if wave.size == 0:
            raise ClipError(f"{pairing.audio}: the audio file holds no samples")
        meta: dict[str, Any] = {"source": "unpaired", "pairing": {**pairing.to_dict(), "k": self.k, "seed": self.seed}}
        category = self._category(pairing)
        if category is not None:
            meta["category"] = category
        return Clip(
            id=clip_id,
            frames=np.repeat(image[None], self.num_frames, axis=0),
            waveform=wave,
            sample_rate=sample_rate,
            log_mel=log_mel_examples(wave, sample_rate, self.num_frames, pad="repeat"),
            meta=meta,
        )

    def categories(self) -> list[str | None]:
        return [self._category(self.pairings[clip_id]) for clip_id in self._ids]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "audio_dir": str(self.audio_dir),
            "image_dir": str(self.image_dir),
            "k": self.k,
            "seed": self.seed,
            "num_frames": self.num_frames,
        }


# --- a pseudo-label store --------------------------------------------------------------------------------


@CLIP_SOURCES.register("store")
class StoreSource(ClipSource):
    """The ok clips of a pseudo-label store (data=pseudo), in id order.

    Read by :class:`~openavs_st.data.store.PseudoLabelStore`.

    Args:
        path: the store folder.
        **store_kwargs: :class:`~openavs_st.data.store.PseudoLabelStore` options (``num_frames`` ...).
    """

    data_names = ("pseudo",)

    def __init__(self, path: str | Path, **store_kwargs: Any) -> None:
        from openavs_st.data.store import PseudoLabelStore

        self.store = PseudoLabelStore(Path(path).expanduser(), **store_kwargs)
        self._ids = [record["id"] for record in self.store.records]
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
        return cls(root)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        return self.store[index]

    def load(self, clip_id: str) -> Clip:
        try:
            return self.store[self._position[clip_id]]
        except KeyError:
            raise ClipError(f"{self.store.root}: no ok record of clip {clip_id!r}") from None

    def categories(self) -> list[str | None]:
        return self.store.categories()

    def log_mel_of(self, index: int) -> np.ndarray:
        return self.store.log_mel_of(index)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.store.root)}
