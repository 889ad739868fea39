"""Negative audio for robustness (AVSBench-Robust): silence, white noise and off-screen sound.

A negative pair keeps a clip's frames but replaces its audio with something that no visible object
produces; the correct segmentation is then empty. Three kinds, as in AVSBench-Robust
(arXiv 2502.00358, ``dataset_generation/audio_processing.py``):

- ``silence``: an all-zero waveform;
- ``noise``: uniform white noise in [-1, 1], drawn per clip from a seeded generator;
- ``offscreen``: the audio of another clip of the same split whose category differs (any other
  clip when the source has no categories, e.g. MS3).

Deviation from the original, on purpose: every negative goes through the same VGGish front end as
the positives. AVSBench-Robust computes negatives with a different librosa pipeline (22.05 kHz,
per-second z-score, 44 of 96 frames filled) while positives keep VGGish features, which lets a
model tell negatives apart by feature statistics alone; its "white noise" is also a 20 s
full-scale int16 reinterpretation of float64 bytes. Here the two kinds of audio differ only in
content.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from openavs_st.data.audio import log_mel_examples

NEGATIVE_KINDS = ("silence", "noise", "offscreen")
SAMPLE_RATE = 16000


def silence_log_mel(num_frames: int) -> np.ndarray:
    """VGGish log-mels ``[T, 1, 96, 64]`` of T seconds of digital silence."""
    return log_mel_examples(np.zeros(num_frames * SAMPLE_RATE, np.float32), SAMPLE_RATE, num_frames=num_frames)


def noise_log_mel(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """VGGish log-mels ``[T, 1, 96, 64]`` of T seconds of uniform white noise in [-1, 1]."""
    wave = rng.uniform(-1.0, 1.0, num_frames * SAMPLE_RATE).astype(np.float32)
    return log_mel_examples(wave, SAMPLE_RATE, num_frames=num_frames)


def offscreen_partner(index: int, categories: list[str | None], rng: np.random.Generator) -> int:
    """Another clip index whose category differs from ``index``'s (any other clip if none does)."""
    n = len(categories)
    if n < 2:
        raise ValueError("off-screen negatives need at least two clips in the split")
    own = categories[index]
    pool = [j for j in range(n) if j != index and (own is None or categories[j] != own)]
    if not pool:
        pool = [j for j in range(n) if j != index]
    return int(pool[rng.integers(len(pool))])


class NegativeAudio:
    """Makes the log-mel of a negative pair for clip ``index`` of a source.

    Args:
        categories: category of every clip of the source (``None`` where unknown).
        log_mel_of: returns the ``[T, 1, 96, 64]`` log-mel of clip ``j`` (for off-screen audio).
        num_frames: T.
        seed: base seed; the audio for (index, kind, draw) is deterministic.
    """

    def __init__(
        self,
        categories: list[str | None],
        log_mel_of: Callable[[int], np.ndarray],
        num_frames: int,
        seed: int = 0,
    ) -> None:
        self.categories = categories
        self.log_mel_of = log_mel_of
        self.num_frames = num_frames
        self.seed = seed
        self._silence = silence_log_mel(num_frames)

    def __call__(self, index: int, kind: str, draw: int = 0) -> np.ndarray:
        if kind not in NEGATIVE_KINDS:
            raise ValueError(f"unknown negative kind {kind!r}; expected one of {NEGATIVE_KINDS}")
        rng = np.random.default_rng([self.seed, index, NEGATIVE_KINDS.index(kind), draw])
        if kind == "silence":
            return self._silence.copy()
        if kind == "noise":
            return noise_log_mel(self.num_frames, rng)
        partner = offscreen_partner(index, self.categories, rng)
        mel = np.asarray(self.log_mel_of(partner), dtype=np.float32)
        if mel.shape[0] != self.num_frames:
            raise ValueError(f"off-screen clip {partner} has {mel.shape[0]} frames, expected {self.num_frames}")
        return mel
