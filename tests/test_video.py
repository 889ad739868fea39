"""Video front end: AVSBench frame sampling, audio track, padding, errors, writing."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from openavs_st.data.clip import ClipError
from openavs_st.data.video import read_video_clip, write_video

HEIGHT, WIDTH = 32, 48


def index_colour(index: int) -> np.ndarray:
    """RGB encoding a frame index (up to 255) in steps of 16, robust to lossy coding."""
    return np.array([(index % 16) * 16 + 8, (index // 16) * 16 + 8, 128], dtype=np.uint8)


def decode_index(frames: np.ndarray) -> list[int]:
    pixel = frames[:, HEIGHT // 2, WIDTH // 2].astype(np.float64)
    return [int(round((r - 8) / 16) + 16 * round((g - 8) / 16)) for r, g, _ in pixel]


def coded_frames(count: int) -> np.ndarray:
    return np.stack([np.broadcast_to(index_colour(i), (HEIGHT, WIDTH, 3)) for i in range(count)])


def tone(freq_hz: float, seconds: float, sample_rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq_hz * np.arange(round(seconds * sample_rate)) / sample_rate)


@pytest.mark.parametrize("fps", [25, 10, Fraction(30000, 1001)], ids=["25fps", "10fps", "29.97fps"])
def test_the_frame_at_fifteen_sixteenths_of_each_second_is_chosen(tmp_path: Path, fps: Fraction | int) -> None:
    count = math.floor(5 * fps)
    path = write_video(tmp_path / "coded.mp4", coded_frames(count), fps, audio=(tone(1000.0, 5.0, 44100), 44100))
    clip = read_video_clip(path)
    rounded = round(float(fps))  # preprocess_s4.py: frame_interval = int(round(fps))
    assert clip.frames.shape == (5, HEIGHT, WIDTH, 3)
    assert decode_index(clip.frames) == [int(second * rounded + 15 / 16 * rounded) for second in range(5)]
    assert clip.id == "coded" and clip.frame_valid.all()
    assert clip.meta["fps"] == pytest.approx(float(fps), rel=1e-3)
    assert clip.meta["duration"] == pytest.approx(count / float(fps))
    assert clip.meta["variable_frame_rate"] is False and clip.meta["source"] == str(path)
    assert clip.sample_rate == 44100 and clip.waveform.ndim == 1
    assert abs(clip.waveform.size - 5 * 44100) < 2048  # AAC frames are 1024 samples
    assert clip.log_mel.shape == (5, 1, 96, 64) and np.isfinite(clip.log_mel).all()


def test_the_audio_track_gives_the_tone_band_brightest(tmp_path: Path) -> None:
    band = 35
    centres = np.linspace(1127 * math.log(1 + 125 / 700), 1127 * math.log(1 + 7500 / 700), 66)[1:-1]
    freq = 700 * (math.exp(centres[band] / 1127) - 1)
    path = write_video(tmp_path / "tone.mp4", coded_frames(50), 10, audio=(tone(freq, 5.0, 16000), 16000))
    clip = read_video_clip(path)
    assert int(np.argmax(clip.log_mel[:, 0].mean(axis=(0, 1)))) == band


def test_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.15, 0.5, 0.93, 0.95, 1.2, 1.9, 1.94, 2.5, 2.95, 3.0]
    path = write_video(
        tmp_path / "vfr.mp4", coded_frames(len(times)), 10, audio=(np.zeros(48000), 16000), timestamps=times
    )
    clip = read_video_clip(path)
    assert clip.meta["variable_frame_rate"] is True
    # First frame at or after l + 15/16 s: 0.95 s (frame 5), 1.94 s (frame 8), 2.95 s (frame 10).
    assert decode_index(clip.frames) == [5, 8, 10]


def test_the_last_frame_is_used_when_the_video_ends_before_the_sampling_instant(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", coded_frames(5), 10, audio=(np.zeros(8000), 16000))  # 0.5 s
    clip = read_video_clip(path)
    assert clip.frames.shape[0] == 1  # at least one second
    assert decode_index(clip.frames) == [4]


def test_num_frames_pads_with_the_last_frame_or_truncates_and_size_resizes(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", coded_frames(30), 10, audio=(tone(500.0, 3.0, 16000), 16000))
    native = read_video_clip(path)
    padded = read_video_clip(path, num_frames=5, size=(20, 36), clip_id="padded")
    assert padded.id == "padded" and padded.frames.shape == (5, 20, 36, 3)
    assert padded.frame_valid.tolist() == [True, True, True, False, False]
    for t in range(3):
        np.testing.assert_array_equal(padded.frames[t], cv2.resize(native.frames[t], (36, 20)))
    np.testing.assert_array_equal(padded.frames[3], padded.frames[2])
    np.testing.assert_array_equal(padded.frames[4], padded.frames[2])
    assert padded.log_mel.shape == (5, 1, 96, 64)
    np.testing.assert_array_equal(padded.log_mel[3], padded.log_mel[2])  # "repeat" padding
    truncated = read_video_clip(path, num_frames=2)
    assert decode_index(truncated.frames) == [9, 19] and truncated.frame_valid.all()
    assert truncated.log_mel.shape == (2, 1, 96, 64)


def test_video_without_audio_raises_unless_silence_is_asked_for(tmp_path: Path) -> None:
    path = write_video(tmp_path / "mute.mp4", coded_frames(40), 10)
    with pytest.raises(ClipError, match=r"mute\.mp4: no audio stream"):
        read_video_clip(path)
    clip = read_video_clip(path, missing_audio="silence")
    assert clip.meta["audio_missing"] is True
    assert clip.sample_rate == 16000 and clip.waveform.shape == (4 * 16000,) and not clip.waveform.any()
    np.testing.assert_array_equal(clip.log_mel, np.full((4, 1, 96, 64), np.log(0.01), dtype=np.float32))


def test_audio_only_file_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        samples = tone(440.0, 1.0, 16000).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ClipError, match=r"sound\.m4a: no video stream"):
        read_video_clip(path)


def test_corrupt_and_missing_videos_raise_naming_the_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "whole.mp4", coded_frames(50), 25, audio=(np.zeros(32000), 16000))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipError, match=r"truncated\.mp4"):
        read_video_clip(truncated)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ClipError, match=r"garbage\.mp4"):
        read_video_clip(garbage)
    with pytest.raises(ClipError, match=r"nowhere\.mp4"):
        read_video_clip(tmp_path / "nowhere.mp4")


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_other_containers_round_trip(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", coded_frames(50), 25, audio=(tone(700.0, 2.0, 44100), 44100))
    clip = read_video_clip(path)
    assert decode_index(clip.frames) == [23, 48]
    assert clip.log_mel.shape == (2, 1, 96, 64) and clip.waveform.size > 0


def test_write_video_pads_odd_sizes_and_rejects_bad_frames(tmp_path: Path) -> None:
    frames = np.zeros((10, 15, 21, 3), np.uint8)
    frames[:, :, :, 0] = 200
    path = write_video(tmp_path / "odd.mp4", frames, 10, audio=(np.zeros(16000), 16000))
    clip = read_video_clip(path)
    assert clip.frames.shape == (1, 16, 22, 3)
    assert np.abs(clip.frames[0, :15, :21].astype(int) - frames[0]).max() <= 8
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32), 10)
    with pytest.raises(ValueError, match="timestamps"):
        write_video(tmp_path / "bad.mp4", frames, 10, timestamps=[0.0] * 10)
