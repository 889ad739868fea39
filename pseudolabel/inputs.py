"""What the labeler reads: unlabeled clips from an AVSBench split, a folder of videos, or unpaired audio
clips and images composed into (image, audio) pairs.

Every source lists its clip ids up front (cheap: no decoding) and loads one clip at a time with
:meth:`ClipSource.load`, so a corrupt file fails only its own clip (the labeler records the failure and
goes on) and sharding/resume can skip clips without reading them.

- :class:`AVSBenchSource`: S4, MS3 or AVSS(-binary) split through :func:`openavs_st.data.open_reader`.
  Ground-truth masks are read by the reader but never used for labeling; only the ``clip_label`` mode
  looks at the clip's class names (its weak label).
- :class:`VideoFolderSource`: every video file in a folder (recursively), decoded with
  :func:`openavs_st.data.video.read_video_clip` (AVSBench's one-frame-per-second sampling).
- :class:`UnpairedSource`: the OpenAVS paper's unpaired mode: each audio clip is paired with ``k``
  images drawn (seeded) from an image folder; a pair is a clip whose ``num_frames`` frames all show the
  image, with the audio as its sound. The pairing is recorded in ``meta["pairing"]``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INPUT_KINDS = ("avsbench", "videos", "unpaired")


class ClipSource(ABC):
    """A list of clip ids and a way to load each one."""

    kind: str = ""

    @property
    @abstractmethod
    def ids(self) -> list[str]:
        """Clip ids, in a stable order."""

    @abstractmethod
    def load(self, clip_id: str) -> Clip:
        """The clip ``clip_id`` (raises :class:`~openavs_st.data.clip.ClipError` naming the bad file)."""

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

    def __len__(self) -> int:
        return len(self.ids)


def _unique_ids(paths: Sequence[Path], what: str) -> dict[str, Path]:
    """Map file stem -> path, refusing two files with the same stem (they would share a store folder)."""
    by_id: dict[str, Path] = {}
    for path in paths:
        stem = path.stem
        if stem in by_id:
            raise ClipError(f"two {what} files map to the clip id {stem!r}: {by_id[stem]} and {path}; rename one")
        by_id[stem] = path
    return by_id


def _list_files(folder: Path, suffixes: Sequence[str], what: str, key: str) -> list[Path]:
    if not folder.is_dir():
        raise ClipError(f"{key}={folder} is not a folder of {what}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ClipError(f"{key}={folder} holds no {what} (looked for {', '.join(suffixes)})")
    return files


# --- AVSBench -------------------------------------------------------------------------------------


class AVSBenchSource(ClipSource):
    """An AVSBench split read as unlabeled clips.

    Args:
        dataset: ``avsbench_s4``, ``avsbench_ms3``, ``avsbench_avss`` or ``avsbench_avss_binary``.
        root, split: as for :func:`openavs_st.data.open_reader`.
        **reader_kwargs: more reader options (``audio``, ``subsets`` ...).
    """

    kind = "avsbench"

    def __init__(self, dataset: str, root: str | Path, split: str, **reader_kwargs: Any) -> None:
        from openavs_st.data.avsbench import open_reader

        self.dataset = dataset
        self.reader = open_reader(dataset, root, split, **reader_kwargs)
        self._index = {record.id: record for record in self.reader.records}
        self._avss_names: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        return self.reader.ids

    def load(self, clip_id: str) -> Clip:
        return self.reader.build_clip(self._index[clip_id])

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


# --- a folder of videos -------------------------------------------------------------------------------


class VideoFolderSource(ClipSource):
    """Every video file under ``folder`` (recursively); the clip id is the file stem.

    Args:
        folder: the folder.
        num_frames: frames per clip (default: the whole seconds of each video).
        size: ``(H, W)`` to resize frames to (default: native).
        missing_audio: ``error`` (a video without sound fails) or ``silence``.
        category_from_folder: take ``meta["category"]`` from the video's parent folder name (for
            ``clip_label`` on a folder sorted by class).
    """

    kind = "videos"

    def __init__(
        self,
        folder: str | Path,
        *,
        num_frames: int | None = None,
        size: Sequence[int] | None = None,
        missing_audio: str = "error",
        category_from_folder: bool = False,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.files = _unique_ids(_list_files(self.folder, VIDEO_SUFFIXES, "video files", "input.path"), "video")
        self.num_frames = num_frames
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.missing_audio = missing_audio
        self.category_from_folder = category_from_folder

    @property
    def ids(self) -> list[str]:
        return list(self.files)

    def load(self, clip_id: str) -> Clip:
        from openavs_st.data.video import read_video_clip

        path = self.files[clip_id]
        clip = read_video_clip(
            path, num_frames=self.num_frames, size=self.size, missing_audio=self.missing_audio, clip_id=clip_id
        )
        if self.category_from_folder and path.parent != self.folder:
            clip.meta["category"] = path.parent.name
        return clip

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.folder), "num_frames": self.num_frames}


# --- unpaired audio + images ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """One composed clip of the unpaired mode: an audio file shown with an image."""

    clip_id: str
    audio: Path
    image: Path
    draw: int  # 0..k-1: which of the audio's k images

    def to_dict(self) -> dict[str, Any]:
        return {"audio": str(self.audio), "image": str(self.image), "draw": self.draw}


def _seed_for(seed: int, name: str) -> int:
    """A per-audio seed: stable under adding or removing other audio files."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


class UnpairedSource(ClipSource):
    """Audio clips and images composed into clips (the OpenAVS paper's unpaired mode).

    Each audio file is paired with ``k`` distinct images drawn uniformly without replacement from the
    sorted image list by a generator seeded with ``(seed, audio file stem)``, so the pairing does not
    depend on sharding, ordering or on which other audio files exist. Clip ``<audio>+<image>`` has
    ``num_frames`` copies of the image (resized to ``size`` if given) and the audio clip (its first
    ``num_frames`` seconds are described; shorter audio is padded with silence).

    Args:
        audio_dir, image_dir: the folders (searched recursively).
        k: images per audio clip (at most the number of images).
        seed: pairing seed.
        num_frames: frames (seconds) per clip.
        size: ``(H, W)`` to resize images to (default: native).
        category_from_folder: ``meta["category"]`` from the audio file's parent folder name.
    """

    kind = "unpaired"

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
    ) -> None:
        self.audio_dir = Path(audio_dir).expanduser()
        self.image_dir = Path(image_dir).expanduser()
        audio = _unique_ids(_list_files(self.audio_dir, AUDIO_SUFFIXES, "audio files", "input.audio_dir"), "audio")
        images = _unique_ids(_list_files(self.image_dir, IMAGE_SUFFIXES, "images", "input.image_dir"), "image")
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"input.k must be a positive integer, got {k!r}")
        if k > len(images):
            raise ValueError(f"input.k={k} but {self.image_dir} holds only {len(images)} images")
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"input.num_frames must be a positive integer, got {num_frames!r}")
        self.k, self.seed, self.num_frames = int(k), int(seed), int(num_frames)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.category_from_folder = category_from_folder
        image_ids = sorted(images)
        self.pairings: dict[str, Pairing] = {}
        for audio_id in sorted(audio):
            rng = np.random.default_rng(_seed_for(self.seed, audio_id))
            for draw, index in enumerate(rng.choice(len(image_ids), size=self.k, replace=False)):
                image_id = image_ids[int(index)]
                clip_id = f"{audio_id}+{image_id}"
                self.pairings[clip_id] = Pairing(clip_id, audio[audio_id], images[image_id], draw)

    @property
    def ids(self) -> list[str]:
        return list(self.pairings)

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
        meta: dict[str, Any] = {
            "source": "unpaired",
            "pairing": {**pairing.to_dict(), "k": self.k, "seed": self.seed},
        }
        if self.category_from_folder and pairing.audio.parent != self.audio_dir:
            meta["category"] = pairing.audio.parent.name
        return Clip(
            id=clip_id,
            frames=np.repeat(image[None], self.num_frames, axis=0),
            waveform=wave,
            sample_rate=sample_rate,
            log_mel=log_mel_examples(wave, sample_rate, self.num_frames, pad="repeat"),
            meta=meta,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "audio_dir": str(self.audio_dir),
            "image_dir": str(self.image_dir),
            "k": self.k,
            "seed": self.seed,
            "num_frames": self.num_frames,
        }


def open_source(input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None = None) -> ClipSource:
    """The clip source an ``input`` config describes (see ``configs/pseudolabel/run.yaml``).

    ``input.kind``: ``avsbench`` (uses ``data.name`` / ``data.root`` and ``input.split``), ``videos``
    (``input.path``) or ``unpaired`` (``input.audio_dir``, ``input.image_dir``, ``input.k``,
    ``input.seed``).
    """
    kind = input_cfg.get("kind")
    if kind not in INPUT_KINDS:
        raise ValueError(f"input.kind must be one of {INPUT_KINDS}, got {kind!r}")
    size = input_cfg.get("size")
    if kind == "avsbench":
        if not data_cfg or not data_cfg.get("name"):
            raise ValueError("input.kind=avsbench needs a dataset: pass data=avsbench_s4 (or _ms3, _avss) data.root=...")
        root = data_cfg.get("root")
        if root in (None, "", "???"):
            raise ValueError(f"data.root is not set for data={data_cfg['name']}: pass data.root=/path/to/dataset")
        options: dict[str, Any] = {}
        if data_cfg.get("subsets"):
            options["subsets"] = list(data_cfg["subsets"])
        return AVSBenchSource(str(data_cfg["name"]), str(root), str(input_cfg.get("split") or "test"), **options)
    if kind == "videos":
        path = input_cfg.get("path")
        if not path:
            raise ValueError("input.kind=videos needs input.path=/folder/of/videos")
        return VideoFolderSource(
            path,
            num_frames=input_cfg.get("num_frames"),
            size=size,
            missing_audio=str(input_cfg.get("missing_audio") or "error"),
            category_from_folder=bool(input_cfg.get("category_from_folder", False)),
        )
    audio_dir, image_dir = input_cfg.get("audio_dir"), input_cfg.get("image_dir")
    if not audio_dir or not image_dir:
        raise ValueError("input.kind=unpaired needs input.audio_dir=... and input.image_dir=...")
    return UnpairedSource(
        audio_dir,
        image_dir,
        k=input_cfg.get("k", 1),
        seed=int(input_cfg.get("seed", 0)),
        num_frames=input_cfg.get("num_frames") or 5,
        size=size,
        category_from_folder=bool(input_cfg.get("category_from_folder", False)),
    )
