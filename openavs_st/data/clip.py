"""The one data type that crosses every boundary of openavs-st: a :class:`Clip`.

A clip holds T frames sampled one per second (AVSBench S4/MS3: T=5, AVSS/V2: T=10), the mono
waveform with its sample rate, the per-second VGGish log-mel examples ``[T, 1, 96, 64]``, optional
masks ``[T, H, W]`` with a per-frame "has label" flag, and free-form metadata. Readers produce it,
labelers consume and annotate it, the DataModule batches it.

Everything is numpy here (the Lightning-free floor); the DataModule turns clips into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ClipError(ValueError):
    """A clip (or a file it is read from) is missing, unreadable or inconsistent.

    The message always names the offending file or field.
    """


@dataclass
class Clip:
    """One audio-visual clip.

    Attributes:
        id: unique clip id within its dataset (AVSBench video name / uid).
        frames: ``[T, H, W, 3]`` uint8 RGB frames, one per second.
        waveform: mono float32 waveform in [-1, 1], or ``None`` when only log-mels are known.
        sample_rate: sample rate of ``waveform`` in Hz (``None`` iff ``waveform`` is ``None``).
        log_mel: ``[T, 1, 96, 64]`` float32 VGGish log-mel examples, or ``None`` if not computed yet.
        masks: ``[T, H, W]`` uint8 masks (binary 0/1, or class indices for AVSS), or ``None``.
        has_label: ``[T]`` bool, True where ``masks[t]`` is a real annotation (S4 train: frame 1
            only; AVSS: ``gt_temporal_mask_flag``).
        frame_valid: ``[T]`` bool, False for padding frames (AVSS v1s/v1m clips padded from 5 to
            10 frames: ``vid_temporal_mask_flag``).
        meta: free-form metadata (``category``, ``split``, ``source``, ``label`` …).
    """

    id: str
    frames: np.ndarray
    waveform: np.ndarray | None = None
    sample_rate: int | None = None
    log_mel: np.ndarray | None = None
    masks: np.ndarray | None = None
    has_label: np.ndarray | None = None
    frame_valid: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ClipError(f"clip {self.id!r}: frames must be [T, H, W, 3], got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ClipError(f"clip {self.id!r}: frames must be uint8 RGB, got {frames.dtype}")
        self.frames = frames
        t = frames.shape[0]
        if (self.waveform is None) != (self.sample_rate is None):
            raise ClipError(f"clip {self.id!r}: waveform and sample_rate must be given together")
        if self.waveform is not None:
            wav = np.asarray(self.waveform, dtype=np.float32)
            if wav.ndim != 1:
                raise ClipError(f"clip {self.id!r}: waveform must be mono [N], got {wav.shape}")
            self.waveform = wav
            self.sample_rate = int(self.sample_rate)
        if self.log_mel is not None:
            mel = np.asarray(self.log_mel, dtype=np.float32)
            if mel.shape != (t, 1, 96, 64):
                raise ClipError(
                    f"clip {self.id!r}: log_mel must be [T={t}, 1, 96, 64], got {mel.shape}"
                )
            self.log_mel = mel
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.shape != frames.shape[:3]:
                raise ClipError(
                    f"clip {self.id!r}: masks {masks.shape} do not match frames {frames.shape[:3]}"
                )
            self.masks = masks.astype(np.uint8, copy=False)
        if self.has_label is None:
            self.has_label = np.full(t, self.masks is not None, dtype=bool)
        self.has_label = np.asarray(self.has_label, dtype=bool)
        if self.frame_valid is None:
            self.frame_valid = np.ones(t, dtype=bool)
        self.frame_valid = np.asarray(self.frame_valid, dtype=bool)
        for name in ("has_label", "frame_valid"):
            if getattr(self, name).shape != (t,):
                raise ClipError(f"clip {self.id!r}: {name} must have shape [{t}]")
        if self.has_label.any() and self.masks is None:
            raise ClipError(f"clip {self.id!r}: has_label is set but there are no masks")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """Frame (height, width)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def window(self, start: int, length: int, *, clip_id: str | None = None) -> Clip:
        """Frames ``start .. start + length - 1`` as a clip of exactly ``length`` frames (its id ``clip_id``,
        default this clip's). Past the clip's end the last frame is repeated as padding: ``frame_valid`` and
        ``has_label`` false, an empty mask and the log-mel's last example; the waveform is cut to the
        window's seconds."""
        if not 0 <= start < self.num_frames or length < 1:
            raise ClipError(f"clip {self.id!r}: window ({start}, {length}) outside its {self.num_frames} frames")
        stop = min(start + length, self.num_frames)
        index = np.concatenate([np.arange(start, stop), np.full(length - (stop - start), stop - 1)])
        real = np.arange(length) < stop - start
        masks = None if self.masks is None else self.masks[index] * real[:, None, None].astype(self.masks.dtype)
        waveform = None
        if self.waveform is not None:
            waveform = self.waveform[start * self.sample_rate : stop * self.sample_rate]
        return Clip(
            id=self.id if clip_id is None else clip_id,
            frames=self.frames[index],
            waveform=waveform,
            sample_rate=self.sample_rate,
            log_mel=None if self.log_mel is None else self.log_mel[index],
            masks=masks,
            has_label=self.has_label[index] & real,
            frame_valid=self.frame_valid[index] & real,
            meta=dict(self.meta),
        )

    def binary(self) -> Clip:
        """The binary view of a semantic clip: masks ``min(Y, 1)`` (AVSS-binary)."""
        masks = None if self.masks is None else np.minimum(self.masks, 1).astype(np.uint8)
        return Clip(
            id=self.id,
            frames=self.frames,
            waveform=self.waveform,
            sample_rate=self.sample_rate,
            log_mel=self.log_mel,
            masks=masks,
            has_label=self.has_label.copy(),
            frame_valid=self.frame_valid.copy(),
            meta=dict(self.meta),
        )
