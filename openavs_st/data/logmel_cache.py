"""VGGish log-mels of wav files computed once and kept next to them, so that training does not recompute
them every epoch (:class:`openavs_st.data.store.PseudoLabelStore` reads its clips' log-mels this way).

The cache of ``audio/<clip>.wav`` is ``audio/<clip>.logmel.npz``, a plain NumPy archive with

- ``log_mel``: float32 ``[T, 1, 96, 64]``, :func:`openavs_st.data.audio.log_mel_examples` of the wav with
  ``pad="repeat"``;
- ``wav_sha256``: uint8 ``[32]``, the SHA-256 of the wav file it was computed from;
- ``version``: :data:`LOG_MEL_CACHE_VERSION`.

It is used only when the wav's hash, the version and the shape match (so a changed wav, or a changed
front end, is recomputed), and is read with ``np.load(allow_pickle=False)``. A missing, stale or damaged
cache is computed and written atomically (temporary file, then rename: data-loader workers may race; a
temporary file a killed reader left is deleted by the next reader that opens the store); a
folder that cannot be written (a read-only copy of a store) is read without a cache, with one warning.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

from openavs_st.data.clip import ClipError

log = logging.getLogger(__name__)

LOG_MEL_CACHE_SUFFIX = ".logmel.npz"
# Bump when openavs_st.data.audio changes what it computes: caches of another version are redone.
LOG_MEL_CACHE_VERSION = 1
_unwritable_warned: set[Path] = set()


def log_mel_cache_path(wav_path: str | Path) -> Path:
    """The cache file of a wav (``audio/x.wav`` -> ``audio/x.logmel.npz``)."""
    wav_path = Path(wav_path)
    return wav_path.with_name(wav_path.stem + LOG_MEL_CACHE_SUFFIX)


def cached_log_mel(
    wav_path: str | Path,
    num_frames: int,
    wave: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    use_cache: bool = True,
) -> tuple[np.ndarray, bool]:
    """The ``[num_frames, 1, 96, 64]`` log-mel of a wav (pad ``"repeat"``) and whether the cache gave it.

    Args:
        wav_path: the wav.
        num_frames: T.
        wave, sample_rate: the wav decoded already (saves decoding it again on a cache miss).
        use_cache: False computes it without reading or writing the cache.

    Raises:
        ClipError: naming the wav, if it cannot be read or decoded.
    """
    from openavs_st.data.audio import load_audio, log_mel_examples

    wav_path = Path(wav_path)
    cache = log_mel_cache_path(wav_path)
    digest = b""
    if use_cache:
        try:
            digest = hashlib.sha256(wav_path.read_bytes()).digest()
        except OSError as exc:
            raise ClipError(f"cannot read audio file {wav_path}: {exc}") from None
        mel = _read(cache, digest, num_frames)
        if mel is not None:
            return mel, True
    if wave is None or sample_rate is None:
        wave, sample_rate = load_audio(wav_path)
    mel = log_mel_examples(wave, sample_rate, num_frames=num_frames, pad="repeat")
    if use_cache:
        _write(cache, mel, digest)
    return mel, False


def _read(path: Path, digest: bytes, num_frames: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as cached:
            if int(cached["version"]) != LOG_MEL_CACHE_VERSION or cached["wav_sha256"].tobytes() != digest:
                return None
            mel = cached["log_mel"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a damaged cache is redone
        log.debug("ignoring the log-mel cache %s: %s", path, exc)
        return None
    if mel.shape != (num_frames, 1, 96, 64) or mel.dtype != np.float32:
        return None
    return mel


def _write(path: Path, mel: np.ndarray, digest: bytes) -> None:
    from openavs_st.data.store import LOG_MEL_TMP_TAG, atomic_write

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(
                fh,
                log_mel=np.ascontiguousarray(mel, dtype=np.float32),
                wav_sha256=np.frombuffer(digest, dtype=np.uint8),
                version=np.int64(LOG_MEL_CACHE_VERSION),
            )

    try:
        atomic_write(path, write, LOG_MEL_TMP_TAG)
    except OSError as exc:
        if path.parent not in _unwritable_warned:
            _unwritable_warned.add(path.parent)
            log.warning("cannot write log-mel caches into %s (%s); computing log-mels on every read", path.parent, exc)
