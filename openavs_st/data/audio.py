"""Audio front end: decoding, resampling, and VGGish log-mel examples ``[N, 1, 96, 64]``.

Every AVS backbone here (TPAVI, AVSegFormer, SAMA-AVS) feeds a frozen VGGish with the log-mel examples
of harritaylor/torchvggish (``vggish_input.py``, ``mel_features.py``, ``vggish_params.py``, vendored
unchanged in AVSBench ``avs_scripts/*/torchvggish``). This module recomputes them without torch,
TensorFlow or resampy.

Reference equivalence
---------------------
Identical to torchvggish (same float64 operations in the same order, so bit-identical on 16 kHz input):

- 16-bit PCM wav is read as ``int16 / 32768`` and channels are averaged to mono
  (``wavfile_to_examples``, ``waveform_to_examples``);
- 25 ms window (400 samples), 10 ms hop (160), FFT 512 (next power of two), periodic Hann window,
  magnitude spectrum (``mel_features.stft_magnitude``);
- 64 HTK-mel triangles between 125 and 7500 Hz, built as ``mel_features.spectrogram_to_mel_matrix``
  (linear in mel, DC row zeroed), ``log(mel + 0.01)``;
- non-overlapping 96-frame (0.96 s) examples, incomplete tail dropped (``mel_features.frame``).

Differs:

- **Resampler.** torchvggish resamples to 16 kHz with ``resampy.resample`` (``kaiser_best`` filter).
  :func:`resample` is a scipy polyphase filter (``resample_poly``) whose taps are resampy's kernel: the
  same Kaiser-windowed sinc (50 zero crossings, roll-off 0.917347, beta 12.9846, recovered exactly from
  resampy's ``data/kaiser_best.npz``) with resampy's integer table step kept, evaluated exactly where
  resampy interpolates its table linearly; output length is resampy's ``floor(N * sr_out / sr_in)``.
  Measured by ``benchmarks/audio_resampler.py`` (``benchmarks/results/audio_resampler.md``) against
  resampy 0.4.3 on 44.1/48 kHz tones, white noise, chirps and ten CC0 animal mp3s: waveform
  max |Δ| ≤ 1.5e-7; log-mel max |Δ| ≤ 1.1e-3, reached only in near-silent bands (log-mel ≈ -4.6, just
  above the log(0.01) floor; ≤ 4.8e-7 wherever the log-mel is > 0), ≤ 2.1e-5 on the real clips; and
  about 3 to 11 times faster.
- Non-16-bit files (24-bit, float, mp3, aac …) are decoded to float directly; torchvggish would first
  quantise them to int16 (``sf.read(dtype='int16')``), a difference of at most 2⁻¹⁶.
- AVSBench S4/MS3 wavs were extracted from the mp4s with moviepy at 16 kHz; decoding the mp4 audio
  here resamples it with :func:`resample` instead, so log-mels from a raw video are close to, not
  bit-identical with, the distributed ``.pkl`` files. Their own 16 kHz 16-bit wavs give identical
  log-mels.

Short and long audio (:func:`log_mel_examples`): torchvggish yields no example at all for audio shorter
than one example (15 600 samples at 16 kHz = 0.975 s), and AVSBench's padding then fails. Here such
audio is zero-padded (silence appended) to exactly one example first, so every waveform, even an empty
one, gives at least one example; the result is padded to ``num_frames`` by repeating the last example
(S4/MS3, ``preprocess_s4.py``) or with zero examples (AVSS, ``avss/torchvggish/vggish.py``), and
truncated when longer (where the original scripts would fail).
"""

from __future__ import annotations

import functools
import math
import pickle
import warnings
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import resample_poly

from openavs_st.data.clip import ClipError

# VGGish front-end constants (torchvggish/vggish_params.py).
SAMPLE_RATE = 16000
STFT_WINDOW_SAMPLES = 400  # round(16000 * 0.025)
STFT_HOP_SAMPLES = 160  # round(16000 * 0.010)
FFT_LENGTH = 512  # 2 ** ceil(log2(400)), mel_features.log_mel_spectrogram
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s examples, hop 0.96 s (no overlap)
EXAMPLE_SAMPLES = STFT_WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * STFT_HOP_SAMPLES  # 15 600: one example

# HTK mel scale (mel_features.py: _MEL_BREAK_FREQUENCY_HERTZ, _MEL_HIGH_FREQUENCY_Q).
MEL_BREAK_FREQUENCY_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0

# resampy's default "kaiser_best" filter (resampy/filters.py docstring; exact values recovered by
# fitting resampy/data/kaiser_best.npz, residual 5e-15).
KAISER_BEST_ZEROS = 50
KAISER_BEST_ROLLOFF = 0.9173473712608761
KAISER_BEST_BETA = 12.984585247048491
KAISER_BEST_TABLE_SIZE = 2**13  # table entries per zero crossing ("precision = 13")

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
PadMode = Literal["repeat", "zeros"]
PAD_MODES = ("repeat", "zeros")
_STFT_CHUNK_FRAMES = 4096  # bounds the memory of one vectorised STFT step on long audio


# ------------------------------------------------------------------------------------------ decoding


def load_audio(path: str | Path, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file (or the first audio stream of a video) at its native sample rate.

    wav/flac/ogg are read with soundfile (16-bit PCM exactly as ``int16 / 32768``, as torchvggish's
    ``sf.read(dtype='int16') / 32768``); anything else (mp3, mp4, m4a, webm, mkv …), or a soundfile
    failure, is decoded with PyAV.

    Args:
        path: the audio or video file.
        mono: average the channels (as VGGish does) and return ``[N]``; ``False`` returns ``[N, C]``.

    Returns:
        ``(waveform, sample_rate)``: float32 ``[N]`` (or ``[N, C]``) in [-1, 1], and the rate in Hz.

    Raises:
        ClipError: naming the file, if it is missing, undecodable, or has no audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"audio file not found: {path}")
    samples: np.ndarray | None = None
    soundfile_error = ""
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            samples, sample_rate = _read_soundfile(path)
        except RuntimeError as exc:  # soundfile.LibsndfileError: not a format libsndfile reads
            soundfile_error = f" (soundfile: {exc})"
    if samples is None:
        samples, sample_rate = _read_pyav(path, soundfile_error)
    return (to_mono(samples) if mono else samples.astype(np.float32)), sample_rate


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """``([N, C] float64, sample_rate)`` through libsndfile; 16-bit PCM as exactly ``int16 / 32768``."""
    if sf.info(str(path)).subtype == "PCM_16":
        data, sample_rate = sf.read(str(path), dtype="int16", always_2d=True)
        return data / 32768.0, int(sample_rate)
    data, sample_rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data, int(sample_rate)


def _read_pyav(path: Path, soundfile_error: str = "") -> tuple[np.ndarray, int]:
    """``([N, C] float32, sample_rate)`` of the first audio stream, decoded with PyAV."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ClipError(f"{path}: no audio stream{soundfile_error}")
            stream = container.streams.audio[0]
            accumulator = AudioAccumulator(source=str(path))
            for frame in container.decode(stream):
                accumulator.add(frame)
            sample_rate = accumulator.sample_rate or stream.rate
    except av.FFmpegError as exc:
        raise ClipError(f"cannot decode audio from {path}: {exc}{soundfile_error}") from exc
    if not sample_rate:
        raise ClipError(f"{path}: the audio stream has no sample rate")
    return accumulator.samples(), int(sample_rate)


SILENCE_PEAK = 1.0 / 32768.0  # one step of 16-bit audio: quieter than this is digital silence


def is_silent(wave: np.ndarray | None) -> bool:
    """True for audio with no samples, or whose every sample is below one 16-bit step (digital silence: an
    empty or all-zero track, or the zero padding past the end of a clip's audio)."""
    return wave is None or not np.size(wave) or float(np.max(np.abs(wave))) < SILENCE_PEAK


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``[N]`` or ``[N, C]`` → float32 ``[N]``, averaging channels in float64 (torchvggish ``np.mean``)."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        return samples.astype(np.float32)
    if samples.ndim != 2:
        raise ValueError(f"waveform must be [N] or [N, C], got shape {samples.shape}")
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


# Full scale of the integer sample formats (FFmpeg sample format names without the planar "p").
_INTEGER_FULL_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


def audio_frame_to_array(frame: av.AudioFrame) -> np.ndarray:
    """A decoded PyAV audio frame as float32 ``[n_samples, channels]`` in [-1, 1]."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    kind = frame.format.name.rstrip("p")
    if kind == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if kind in _INTEGER_FULL_SCALE:
        return (data / _INTEGER_FULL_SCALE[kind]).astype(np.float32)
    return data.astype(np.float32)


class AudioAccumulator:
    """Collects decoded PyAV audio frames (e.g. interleaved with video) into one waveform."""

    def __init__(self, source: str) -> None:
        self.source = source  # the file, for error messages
        self._chunks: list[np.ndarray] = []
        self.sample_rate: int | None = None

    def add(self, frame: av.AudioFrame) -> None:
        """Append one decoded frame (its rate must match the earlier frames)."""
        if self.sample_rate is None:
            self.sample_rate = int(frame.sample_rate)
        elif frame.sample_rate != self.sample_rate:
            raise ClipError(
                f"{self.source}: audio sample rate changes mid-stream ({self.sample_rate} → {frame.sample_rate} Hz)"
            )
        if self._chunks and frame.layout.nb_channels != self._chunks[0].shape[1]:
            raise ClipError(f"{self.source}: audio channel count changes mid-stream")
        self._chunks.append(audio_frame_to_array(frame))

    def samples(self) -> np.ndarray:
        """float32 ``[N, C]`` (``[0, 1]`` if nothing was decoded)."""
        if not self._chunks:
            return np.zeros((0, 1), dtype=np.float32)
        return np.concatenate(self._chunks, axis=0)


# ---------------------------------------------------------------------------------------- resampling


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with resampy's ``kaiser_best`` windowed-sinc filter (no resampy needed).

    Args:
        wave: ``[N]`` or ``[N, C]`` (time first) floating-point samples.
        sr_in: input rate in Hz.
        sr_out: output rate in Hz.

    Returns:
        ``[floor(N * sr_out / sr_in)]`` (or ``[·, C]``) samples, float32 for float32 input, else float64;
        a copy when the rates are equal.
    """
    if int(sr_in) != sr_in or int(sr_out) != sr_out or sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive integers, got {sr_in} → {sr_out}")
    wave = np.asarray(wave)
    out_dtype = np.float32 if wave.dtype == np.float32 else np.float64
    if sr_in == sr_out:
        return wave.astype(out_dtype, copy=True)
    gcd = math.gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // gcd, int(sr_in) // gcd
    n_out = wave.shape[0] * up // down
    if wave.shape[0] == 0:
        return np.zeros((0, *wave.shape[1:]), dtype=out_dtype)
    out = resample_poly(wave.astype(np.float64), up, down, axis=0, window=_kaiser_best_taps(up, down))
    return out[:n_out].astype(out_dtype)


@functools.lru_cache(maxsize=16)
def _kaiser_best_taps(up: int, down: int) -> np.ndarray:
    """FIR taps at rate ``up * sr_in`` reproducing resampy's kaiser_best interpolation, quirks included.

    resampy (``resampy/core.py``, ``interpn.py``) weights input sample ``x[n]`` for an output at input
    time ``t`` by ``s * w(u)`` with ``s = min(1, sr_out / sr_in)`` and
    ``w(u) = rolloff * sinc(rolloff * u) * kaiser(u / zeros)`` for ``u <= zeros``. It walks its table
    with an integer step ``floor(s * 8192)``, so the ``i``-th sample of a wing sits at
    ``u = s * phase + i * floor(s * 8192) / 8192`` rather than ``s * (phase + i)``; this is kept, as it
    moves the transition band measurably (1e-3 on white noise at 48 kHz) when ``s * 8192`` is not an
    integer. Tap ``j`` is the offset ``j / up`` input samples (``t - n``; left wing ``j >= 0``, right
    wing ``j < 0``); ``resample_poly`` multiplies the taps by ``up``, hence the ``/ up``.
    """
    scale = min(1.0, up / down)
    table_step = math.floor(scale * KAISER_BEST_TABLE_SIZE) / KAISER_BEST_TABLE_SIZE
    half_length = int(KAISER_BEST_ZEROS * up / scale) + up
    offsets = np.arange(-half_length, half_length + 1)
    distance = np.abs(offsets)  # in units of 1 / up input samples
    wing_index = np.where(offsets >= 0, distance // up, (distance - 1) // up)
    u = scale * (distance - wing_index * up) / up + wing_index * table_step
    taper = np.i0(KAISER_BEST_BETA * np.sqrt(np.clip(1.0 - (u / KAISER_BEST_ZEROS) ** 2, 0.0, None)))
    taper /= np.i0(KAISER_BEST_BETA)
    kernel = scale * KAISER_BEST_ROLLOFF * np.sinc(KAISER_BEST_ROLLOFF * u) * taper
    taps = np.where(u <= KAISER_BEST_ZEROS, kernel, 0.0) / up
    taps.flags.writeable = False
    return taps


# ----------------------------------------------------------------------------------------- log-mel


def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale ``1127 ln(1 + f / 700)`` (``mel_features.hertz_to_mel``)."""
    return MEL_HIGH_FREQUENCY_Q * np.log(1.0 + np.asarray(frequencies_hz, dtype=np.float64) / MEL_BREAK_FREQUENCY_HZ)


@functools.lru_cache(maxsize=8)
def spectrogram_to_mel_matrix(
    num_mel_bins: int = NUM_MEL_BINS,
    num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: float = SAMPLE_RATE,
    lower_edge_hz: float = MEL_MIN_HZ,
    upper_edge_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """Mel weights ``[num_spectrogram_bins, num_mel_bins]`` (read-only), ``mel = spectrogram @ W``.

    As ``mel_features.spectrogram_to_mel_matrix``: band ``i`` is a triangle, linear in mel, over mel
    edges ``linspace(mel(lower), mel(upper), num_mel_bins + 2)[i : i + 3]`` peaking at the middle
    edge; the DC row is zero (HTK excludes the DC bin).
    """
    nyquist_hz = sample_rate / 2.0
    if not 0.0 <= lower_edge_hz < upper_edge_hz <= nyquist_hz:
        raise ValueError(
            f"mel edges must satisfy 0 <= lower ({lower_edge_hz}) < upper ({upper_edge_hz}) <= Nyquist ({nyquist_hz})"
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hz, num_spectrogram_bins))[:, None]
    edges_mel = np.linspace(hertz_to_mel(lower_edge_hz), hertz_to_mel(upper_edge_hz), num_mel_bins + 2)
    lower, center, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.flags.writeable = False
    return weights


def periodic_hann(window_length: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / N)`` (``mel_features.periodic_hann``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / window_length * np.arange(window_length))


def waveform_16k(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float64 ``[M]`` at 16 kHz from ``[N]`` or ``[N, C]`` samples at ``sample_rate``."""
    mono = np.asarray(wave, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    elif mono.ndim != 1:
        raise ValueError(f"waveform must be [N] or [N, C], got shape {mono.shape}")
    return resample(mono, sample_rate, SAMPLE_RATE)


def log_mel_frames(wave_16k: np.ndarray, *, log_offset: float = LOG_OFFSET) -> np.ndarray:
    """float64 ``[F, 64]`` log-mel frames ``log(mel + log_offset)`` of a 16 kHz waveform,
    ``F = 1 + (M - 400) // 160`` (0 if ``M < 400``). VGGish's offset is 0.01; YAMNet shares this front
    end with 0.001 (:mod:`openavs_st.data.yamnet`)."""
    if wave_16k.shape[0] < STFT_WINDOW_SAMPLES:
        return np.zeros((0, NUM_MEL_BINS))
    frames = sliding_window_view(wave_16k, STFT_WINDOW_SAMPLES)[::STFT_HOP_SAMPLES]
    window = periodic_hann(STFT_WINDOW_SAMPLES)
    mel_matrix = spectrogram_to_mel_matrix()
    chunks = []
    for start in range(0, frames.shape[0], _STFT_CHUNK_FRAMES):
        magnitude = np.abs(np.fft.rfft(frames[start : start + _STFT_CHUNK_FRAMES] * window, FFT_LENGTH))
        chunks.append(np.log(np.dot(magnitude, mel_matrix) + log_offset))
    return np.concatenate(chunks, axis=0)


def _examples_from_16k(wave_16k: np.ndarray) -> np.ndarray:
    """float32 ``[N, 1, 96, 64]``: complete non-overlapping 96-frame examples of a 16 kHz waveform."""
    log_mel = log_mel_frames(wave_16k)
    num_examples = log_mel.shape[0] // EXAMPLE_FRAMES
    examples = log_mel[: num_examples * EXAMPLE_FRAMES].reshape(num_examples, 1, EXAMPLE_FRAMES, NUM_MEL_BINS)
    return examples.astype(np.float32)


def vggish_log_mel(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """VGGish input examples, as torchvggish ``waveform_to_examples``.

    Args:
        wave: ``[N]`` or ``[N, C]`` samples in [-1, 1] (channels averaged).
        sample_rate: rate of ``wave`` in Hz (resampled to 16 kHz if different).

    Returns:
        float32 ``[N_ex, 1, 96, 64]`` with ``N_ex = floor(frames / 96)``; ``N_ex = 0`` for audio shorter
        than 0.975 s (as torchvggish; :func:`log_mel_examples` defines a padded result instead).
    """
    return _examples_from_16k(waveform_16k(wave, sample_rate))


def pad_examples(examples: np.ndarray, num_frames: int, *, pad: PadMode = "repeat") -> np.ndarray:
    """Pad ``[N, 1, 96, 64]`` examples to ``[num_frames, 1, 96, 64]`` or truncate them.

    ``pad="repeat"`` repeats the last example (AVSBench S4/MS3 ``preprocess_s4.py``); ``pad="zeros"``
    appends all-zero examples (AVSS ``avss/torchvggish/vggish.py::_preprocess``).
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    examples = np.asarray(examples, dtype=np.float32)
    missing = num_frames - examples.shape[0]
    if missing <= 0:
        return examples[:num_frames]
    if pad == "repeat":
        if examples.shape[0] == 0:
            raise ValueError("cannot pad by repeating: there is no example to repeat")
        filler = np.repeat(examples[-1:], missing, axis=0)
    else:
        filler = np.zeros((missing, *examples.shape[1:]), dtype=np.float32)
    return np.concatenate([examples, filler], axis=0)


def log_mel_examples(wave: np.ndarray, sample_rate: int, num_frames: int, *, pad: PadMode = "repeat") -> np.ndarray:
    """Exactly ``num_frames`` VGGish examples ``[num_frames, 1, 96, 64]`` float32 for a clip.

    Audio shorter than one example (0.975 s) is first zero-padded to one example, so the result is
    always defined; then :func:`pad_examples` pads (``"repeat"``: S4/MS3, ``"zeros"``: AVSS) or
    truncates to ``num_frames``.
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    wave_16k = waveform_16k(wave, sample_rate)
    if wave_16k.shape[0] < EXAMPLE_SAMPLES:
        wave_16k = np.pad(wave_16k, (0, EXAMPLE_SAMPLES - wave_16k.shape[0]))
    return pad_examples(_examples_from_16k(wave_16k), num_frames, pad=pad)


# ------------------------------------------------------------------------------- AVSBench pickles


def load_log_mel_pickle(path: str | Path, *, allow_pickle: bool) -> np.ndarray:
    """Read an AVSBench precomputed log-mel file (``audio_log_mel/**/*.pkl``).

    AVSBench pickles a torch tensor ``[5, 1, 96, 64]`` created with ``requires_grad=True``
    (``preprocess_s4.py``: ``pickle.dump``); ``torch.save``d tensors are accepted too. Unpickling can
    execute arbitrary code, so nothing is read unless ``allow_pickle=True``; even then a safe
    ``torch.load(weights_only=True)`` is tried first, and full unpickling is the fallback.

    Returns:
        float32 ``[N, 1, 96, 64]`` (detached from autograd).

    Raises:
        ClipError: naming the file, without the opt-in, or if it is missing, unreadable, or not a
            ``[N, 1, 96, 64]`` tensor/array.
    """
    import torch

    path = Path(path)
    if not allow_pickle:
        raise ClipError(
            f"{path}: refusing to read a pickled log-mel file, because unpickling can execute arbitrary "
            "code. Pass allow_pickle=True only for files from a source you trust, or compute the "
            "log-mels from the wav instead."
        )
    if not path.is_file():
        raise ClipError(f"log-mel file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4" when the file is a plain pickle
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # weights_only refuses plain pickles; any failure falls through to the opt-in
        try:
            with path.open("rb") as fh:
                obj = pickle.load(fh)  # full unpickling: only reached with the explicit opt-in above
        except Exception as exc:
            raise ClipError(f"cannot unpickle log-mel file {path}: {exc}") from exc
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if not isinstance(obj, np.ndarray) or obj.ndim != 4 or obj.shape[1:] != (1, EXAMPLE_FRAMES, NUM_MEL_BINS):
        shape = getattr(obj, "shape", type(obj).__name__)
        raise ClipError(f"{path}: expected a log-mel tensor [N, 1, 96, 64], got {shape}")
    return obj.astype(np.float32)
