"""The ``unpaired`` clip source: audio clips and images composed into clips (the OpenAVS paper's unpaired
setting)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset
from openavs_st.data.sources.base import (
    AUDIO_SUFFIXES,
    CLIP_SOURCES,
    IMAGE_SUFFIXES,
    ClipSource,
    media_files,
    size_hw,
)


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
        self.size = size_hw(size)
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
