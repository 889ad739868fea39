"""Video front end: a video file → one :class:`Clip` (one frame per second + audio + log-mels), and back.

Frame sampling follows AVSBench ``preprocess_scripts/preprocess_s4.py`` (``video_frame_sample`` with
``sample_num = 16``, keeping sub-sample 15): for second ``l`` of a constant-frame-rate video the kept
decoded frame has index ``int(l * F + 15/16 * F)`` with ``F = round(fps)`` (the script rounds the frame
rate: 25 fps → frames 23, 48, 73, …; 29.97 fps → 28, 58, …), i.e. ~0.94 s into each second, and an
index past the end takes the last frame. For variable-frame-rate video the frame index means nothing,
so the first frame shown at or after ``l + 15/16`` s (from the first frame) is kept, or the last frame
if the video ends before that instant; a stream that declares no frame rate is sampled the same way.

The number of seconds T is the whole seconds of video, counting a clip that is short by less than one
frame as complete (trimmed 5 s clips at 29.97 fps often have 149 frames = 4.97 s) and at least 1;
``num_frames`` overrides it (padding repeats the last frame and is marked in ``frame_valid``).
Only the kept frames are converted to RGB, so memory stays at about two frames per second of video.

The audio track becomes the clip's mono waveform (native rate) and its VGGish log-mels
(:func:`openavs_st.data.audio.log_mel_examples`, S4/MS3 ``"repeat"`` padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from openavs_st.data import audio as audio_io
from openavs_st.data.clip import Clip, ClipError

MissingAudio = Literal["error", "silence"]
SAMPLING_FRACTION = Fraction(15, 16)  # preprocess_s4.py: sub-sample i = 15 of sample_num = 16 per second
SAMPLING_SECONDS = float(SAMPLING_FRACTION) - 1e-9  # VFR rule; slack for timestamps rounded to the time base
VFR_TOLERANCE = 0.25  # frame intervals deviating more than this fraction from the median → variable rate
VIDEO_CODECS = ("libx264", "mpeg4")  # first one this FFmpeg build can encode wins
WEBM_CODECS = ("libvpx-vp9", "libvpx")
AUDIO_CODEC = {".webm": "libopus"}  # default: aac


@dataclass
class _FrameSampler:
    """Streams decoded frames, keeping only those that either sampling rule can choose.

    CFR rule: decoded frame ``l * F + floor(15 F / 16)`` (disabled when the stream declares no rate).
    VFR rule: first frame at or after ``l + 15/16`` s after the first frame. Seconds
    ``l >= max_seconds`` are not kept. Frames are converted to RGB (and resized) only when kept.
    """

    frames_per_second: int | None  # F = round(fps), as preprocess_s4.py
    max_seconds: int | None
    size: tuple[int, int] | None
    count: int = 0
    times: list[float] = field(default_factory=list)  # presentation time of every frame (NaN: unknown)
    by_index: dict[int, np.ndarray] = field(default_factory=dict)  # second → frame (CFR rule)
    by_time: dict[int, np.ndarray] = field(default_factory=dict)  # second → frame (VFR rule)
    last_frame: av.VideoFrame | None = None
    _next_index_second: int = 0
    _next_time_second: int = 0

    def index_of_second(self, second: int) -> int:
        """Decoded-frame index kept for ``second`` under the constant-frame-rate rule."""
        assert self.frames_per_second is not None
        offset = self.frames_per_second * SAMPLING_FRACTION.numerator // SAMPLING_FRACTION.denominator
        return second * self.frames_per_second + offset

    def add(self, frame: av.VideoFrame) -> None:
        index = self.count
        self.count += 1
        self.times.append(math.nan if frame.time is None else float(frame.time))
        self.last_frame = frame
        image: np.ndarray | None = None
        while (
            self.frames_per_second is not None
            and self._wanted(self._next_index_second)
            and self.index_of_second(self._next_index_second) == index
        ):
            image = self.rgb(frame) if image is None else image
            self.by_index[self._next_index_second] = image
            self._next_index_second += 1
        elapsed = self.times[-1] - self.times[0]  # NaN when a timestamp is unknown
        while self._wanted(self._next_time_second) and elapsed >= self._next_time_second + SAMPLING_SECONDS:
            image = self.rgb(frame) if image is None else image
            self.by_time[self._next_time_second] = image
            self._next_time_second += 1

    def _wanted(self, second: int) -> bool:
        return self.max_seconds is None or second < self.max_seconds

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB, resized to ``size`` if set."""
        image = frame.to_ndarray(format="rgb24")
        if self.size is not None:
            height, width = self.size
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)  # as preprocess_s4.py
        return image


def read_video_clip(
    path: str | Path,
    *,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    missing_audio: MissingAudio = "error",
    clip_id: str | None = None,
) -> Clip:
    """Decode a video file into a :class:`Clip` sampled like AVSBench (see the module docstring).

    Args:
        path: any container/codec PyAV's FFmpeg reads (mp4, mkv, webm, avi …).
        num_frames: T to return; default: whole seconds of video. More pads by repeating the last frame
            (``frame_valid`` False there); fewer truncates.
        size: ``(H, W)`` to resize frames to (bilinear, ``cv2.resize`` as AVSBench); default native.
        missing_audio: ``"error"`` (default) raises for a file without audio; ``"silence"`` gives a zero
            waveform at 16 kHz as long as the video.
        clip_id: the clip id; default: the file stem.

    Returns:
        Clip with frames ``[T, H, W, 3]`` uint8, mono float32 waveform at the track's rate, ``log_mel``
        ``[T, 1, 96, 64]``, ``frame_valid`` ``[T]``, meta ``source``, ``fps``, ``duration``,
        ``variable_frame_rate``, ``audio_missing``.

    Raises:
        ClipError: naming the file, if it is missing, unreadable/corrupt, has no video stream or no
            decodable frame, or has no audio stream and ``missing_audio="error"``.
    """
    path = Path(path)
    if num_frames is not None and (int(num_frames) != num_frames or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (H, W) with positive sides, got {size!r}")
    if missing_audio not in ("error", "silence"):
        raise ValueError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
    if not path.is_file():
        raise ClipError(f"video file not found: {path}")

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path}: no video stream")
            video_stream = container.streams.video[0]
            audio_stream = container.streams.audio[0] if container.streams.audio else None
            if audio_stream is None and missing_audio == "error":
                raise ClipError(f"{path}: no audio stream (pass missing_audio='silence' to read it with silent audio)")
            video_stream.thread_type = "AUTO"
            declared_fps = video_stream.average_rate or video_stream.guessed_rate
            sampler = _FrameSampler(
                frames_per_second=max(1, round(float(declared_fps))) if declared_fps else None,
                max_seconds=num_frames,
                size=None if size is None else (int(size[0]), int(size[1])),
            )
            audio = audio_io.AudioAccumulator(source=str(path))
            streams = [s for s in (video_stream, audio_stream) if s is not None]
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        sampler.add(frame)
                    else:
                        audio.add(frame)
    except av.FFmpegError as exc:
        raise ClipError(f"cannot read video {path}: corrupt or unsupported ({exc})") from exc
    if sampler.last_frame is None:
        raise ClipError(f"{path}: the video stream has no decodable frame")

    timing = _timing(sampler.times, declared_fps)
    if timing is None:
        raise ClipError(f"{path}: the video stream has neither a frame rate nor frame timestamps")
    use_index_rule = not timing.variable and sampler.frames_per_second is not None
    chosen = sampler.by_index if use_index_rule else sampler.by_time
    # Whole seconds, a clip short of one by less than a frame counting as complete: 149 frames at 29.97 fps
    # (4.97 s) give 5, 5 frames at 1 fps (5 s) give 5, 9 frames at 2 fps (4.5 s) give 4.
    seconds = max(1, math.floor(timing.duration + timing.period - 1e-6))
    num_out = seconds if num_frames is None else int(num_frames)
    num_real = min(seconds, num_out)
    last_image = sampler.rgb(sampler.last_frame)
    frames = [chosen.get(second, last_image) for second in range(num_real)]
    frames += [frames[-1]] * (num_out - num_real)
    frame_valid = np.arange(num_out) < num_real

    if audio_stream is None:
        sample_rate = audio_io.SAMPLE_RATE
        waveform = np.zeros(round(timing.duration * sample_rate), dtype=np.float32)
    else:
        sample_rate = audio.sample_rate or int(audio_stream.rate)
        waveform = audio_io.to_mono(audio.samples())
    return Clip(
        id=clip_id if clip_id is not None else path.stem,
        frames=np.stack(frames),
        waveform=waveform,
        sample_rate=sample_rate,
        log_mel=audio_io.log_mel_examples(waveform, sample_rate, num_out, pad="repeat"),
        frame_valid=frame_valid,
        meta={
            "source": str(path),
            "fps": timing.fps,
            "duration": timing.duration,
            "variable_frame_rate": timing.variable,
            "audio_missing": audio_stream is None,
        },
    )


@dataclass(frozen=True)
class _Timing:
    fps: float
    period: float  # seconds per frame (median interval)
    duration: float  # first frame shown → last frame ends
    variable: bool


def _timing(times: list[float], declared_fps: Fraction | None) -> _Timing | None:
    """Frame rate, duration and CFR/VFR decision from the frames' timestamps, else the declared rate.

    ``None`` when neither is known.
    """
    stamps = np.asarray(times, dtype=np.float64)
    intervals = np.diff(stamps)
    if intervals.size and not np.isnan(stamps).any() and np.median(intervals) > 0:
        period = float(np.median(intervals))
        variable = bool(np.any(np.abs(intervals - period) > VFR_TOLERANCE * period))
        if variable:
            fps = intervals.size / float(stamps[-1] - stamps[0])
        else:
            fps = float(declared_fps) if declared_fps else 1.0 / period
        return _Timing(fps=fps, period=period, duration=float(stamps[-1] - stamps[0]) + period, variable=variable)
    if not declared_fps:
        return None
    fps = float(declared_fps)
    return _Timing(fps=fps, period=1.0 / fps, duration=stamps.size / fps, variable=False)


# --------------------------------------------------------------------------------------------- write


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float | Fraction,
    audio: tuple[np.ndarray, int] | None = None,
    *,
    timestamps: Sequence[float] | None = None,
) -> Path:
    """Encode RGB frames (and optionally audio) into a video file.

    Video: H.264 (libx264, CRF 18, yuv420p) or MPEG-4 part 2 where x264 is unavailable; VP9 for
    ``.webm``. yuv420p needs even sides, so an odd height/width gets one replicated row/column.
    Audio: AAC (Opus for ``.webm``).

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov, .webm …).
        frames: ``[T, H, W, 3]`` uint8 RGB.
        fps: frame rate (e.g. 25, 29.97, ``Fraction(30000, 1001)``).
        audio: ``(waveform [N] or [N, C] float in [-1, 1], sample_rate)`` or ``None``.
        timestamps: optional presentation time in seconds of each frame (variable frame rate,
            strictly increasing); default ``t / fps``.

    Returns:
        ``path``.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty uint8 array [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if timestamps is not None and (
        len(timestamps) != frames.shape[0] or np.any(np.diff(np.asarray(timestamps, dtype=np.float64)) <= 0)
    ):
        raise ValueError("timestamps must give one strictly increasing time per frame")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = _even_sized(frames)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        video_stream = _add_video_stream(container, suffix, rate, frames.shape[1:3])
        # Every stream must exist before the first packet is muxed (the header is written then).
        audio_stream, audio_frame = (None, None) if audio is None else _add_audio(container, suffix, *audio)
        time_base = Fraction(1, 90000) if timestamps is not None else 1 / rate
        video_stream.codec_context.time_base = time_base
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.time_base = time_base
            frame.pts = index if timestamps is None else round(timestamps[index] / time_base)
            container.mux(video_stream.encode(frame))
        container.mux(video_stream.encode(None))
        if audio_stream is not None:
            container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode(None))
    return path


def _even_sized(frames: np.ndarray) -> np.ndarray:
    """Replicate the last row/column where height/width is odd (yuv420p needs even sides)."""
    pad_rows, pad_cols = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_rows or pad_cols):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")


def _add_video_stream(
    container: av.container.OutputContainer, suffix: str, rate: Fraction, size: tuple[int, int]
) -> av.VideoStream:
    candidates = WEBM_CODECS if suffix == ".webm" else VIDEO_CODECS
    for codec in candidates:
        try:
            av.Codec(codec, "w")
        except av.FFmpegError:
            continue
        options = {"crf": "18"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=rate, options=options)
        if codec == "mpeg4":
            stream.bit_rate = 8_000_000
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        return stream
    raise RuntimeError(f"{container.name}: this FFmpeg build encodes none of {candidates}")


def _add_audio(
    container: av.container.OutputContainer, suffix: str, wave: np.ndarray, sample_rate: int
) -> tuple[av.AudioStream, av.AudioFrame]:
    """The audio stream and ``[N]`` / ``[N, C]`` samples as one planar-float frame (PyAV re-chunks it).

    AAC (Opus for .webm). A rate the encoder does not support (e.g. 44.1 kHz for Opus) is resampled to
    48 kHz first.
    """
    codec = AUDIO_CODEC.get(suffix, "aac")
    samples = np.asarray(wave, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if samples.ndim != 2 or samples.shape[1] not in (1, 2):
        raise ValueError(f"audio must be [N] or [N, C] with C in (1, 2), got {samples.shape}")
    supported_rates = av.Codec(codec, "w").audio_rates
    if supported_rates and int(sample_rate) not in supported_rates:
        target_rate = 48000 if 48000 in supported_rates else max(supported_rates)
        samples = audio_io.resample(samples, int(sample_rate), target_rate)
        sample_rate = target_rate
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    stream = container.add_stream(codec, rate=int(sample_rate), layout=layout)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout=layout)
    frame.sample_rate = int(sample_rate)
    frame.pts = 0
    return stream, frame
