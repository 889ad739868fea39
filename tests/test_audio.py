"""Audio front end: decoding, resampling, VGGish log-mel examples, AVSBench log-mel pickles."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from openavs_st.data.audio import (
    load_audio,
    load_log_mel_pickle,
    log_mel_examples,
    resample,
    spectrogram_to_mel_matrix,
    vggish_log_mel,
)
from openavs_st.data.clip import ClipError

# The HTK mel scale and VGGish's band layout, written out here independently of the module.
MEL_LOW, MEL_HIGH = 1127.0 * math.log(1 + 125 / 700), 1127.0 * math.log(1 + 7500 / 700)
BAND_CENTRES_MEL = np.linspace(MEL_LOW, MEL_HIGH, 66)[1:-1]


def mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (np.exp(np.asarray(m, dtype=np.float64) / 1127.0) - 1)


def tone(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(round(seconds * sample_rate)) / sample_rate)


def brightest_band(examples: np.ndarray) -> int:
    return int(np.argmax(examples[:, 0].mean(axis=(0, 1))))


def write_with_pyav(path: Path, codec: str, samples: np.ndarray, sample_rate: int, fmt: str, layout: str) -> None:
    """Encode ``samples`` (already in the frame layout PyAV expects for ``fmt``) as one audio stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("band", [12, 30, 50])
def test_16k_sine_wav_gives_five_examples_with_its_band_brightest(tmp_path: Path, band: int) -> None:
    freq = float(mel_to_hz(BAND_CENTRES_MEL[band]))
    path = tmp_path / "tone.wav"
    sf.write(path, tone(freq, 5.0, 16000), 16000, subtype="PCM_16")
    wave, sr = load_audio(path)
    examples = vggish_log_mel(wave, sr)
    assert sr == 16000 and examples.shape == (5, 1, 96, 64) and examples.dtype == np.float32
    assert np.isfinite(examples).all()
    assert brightest_band(examples) == band


def test_44k_stereo_wav_is_averaged_resampled_and_keeps_the_tone_band(tmp_path: Path) -> None:
    freq = float(mel_to_hz(BAND_CENTRES_MEL[40]))
    left = tone(freq, 5.0, 44100, 0.6)
    right = tone(freq, 5.0, 44100, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    ints, _ = sf.read(path, dtype="int16")
    wave, sr = load_audio(path)
    assert sr == 44100 and wave.dtype == np.float32
    np.testing.assert_array_equal(wave, (ints[:, 0].astype(np.int64) + ints[:, 1]) / 65536.0)
    examples = vggish_log_mel(wave, sr)
    assert examples.shape == (5, 1, 96, 64) and np.isfinite(examples).all()
    assert brightest_band(examples) == 40


@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_wav_reads_exactly_int16_over_32768(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(-32768, 32768, size=(4000, channels), dtype=np.int16)
    ints[:2, 0] = (-32768, 32767)  # both extremes
    path = tmp_path / "pcm16.wav"
    sf.write(path, ints, 22050, subtype="PCM_16")
    multi, sr = load_audio(path, mono=False)
    assert sr == 22050 and multi.shape == (4000, channels)
    np.testing.assert_array_equal(multi, ints / 32768.0)
    mono, _ = load_audio(path)
    np.testing.assert_array_equal(mono, ints.astype(np.float64).mean(axis=1) / 32768.0)


def test_flac_reads_the_same_samples_as_wav(tmp_path: Path) -> None:
    ints = np.random.default_rng(1).integers(-20000, 20000, size=8000, dtype=np.int16)
    sf.write(tmp_path / "a.wav", ints, 16000, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", ints, 16000, subtype="PCM_16")
    wav, _ = load_audio(tmp_path / "a.wav")
    flac, sr = load_audio(tmp_path / "a.flac")
    assert sr == 16000
    np.testing.assert_array_equal(flac, wav)


def test_mp3_is_decoded_with_its_rate_length_and_pitch(tmp_path: Path) -> None:
    source = tone(440.0, 2.0, 44100).astype(np.float32)
    path = tmp_path / "tone.mp3"
    write_with_pyav(path, "libmp3lame", source[None], 44100, "fltp", "mono")
    wave, sr = load_audio(path)
    assert sr == 44100 and wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - source.size) <= 2 * 1152 + 529  # mp3 frame padding and encoder delay
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * sr / wave.size - 440.0) < 2.0


def test_pcm16_through_pyav_is_exactly_int16_over_32768(tmp_path: Path) -> None:
    ints = np.random.default_rng(2).integers(-32768, 32768, size=(3000, 2), dtype=np.int16)
    path = tmp_path / "pcm.mka"
    write_with_pyav(path, "pcm_s16le", ints.reshape(1, -1), 16000, "s16", "stereo")
    multi, sr = load_audio(path, mono=False)
    assert sr == 16000
    np.testing.assert_array_equal(multi, ints / 32768.0)


def test_unreadable_audio_raises_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(ClipError, match=r"missing\.wav"):
        load_audio(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all" * 50)
    with pytest.raises(ClipError, match=r"garbage\.wav"):
        load_audio(garbage)


def test_video_without_audio_stream_raises_for_audio(tmp_path: Path) -> None:
    from openavs_st.data.video import write_video

    path = write_video(tmp_path / "silent.mp4", np.zeros((5, 16, 16, 3), np.uint8), 5)
    with pytest.raises(ClipError, match=r"silent\.mp4: no audio stream"):
        load_audio(path)


def test_mel_matrix_triangles_peak_at_band_centres_and_skip_dc() -> None:
    weights = spectrogram_to_mel_matrix()
    assert weights.shape == (257, 64)
    bins_hz = np.linspace(0, 8000, 257)
    assert not weights[0].any()  # HTK excludes the DC bin
    assert (weights >= 0).all() and (weights <= 1).all()
    # Each band peaks at the FFT bin nearest (in mel) to its centre.
    nearest = np.argmin(np.abs(mel(bins_hz)[:, None] - BAND_CENTRES_MEL[None, :]), axis=0)
    np.testing.assert_array_equal(np.argmax(weights, axis=0), nearest)
    # Nothing outside 125-7500 Hz; adjacent triangles partition unity between the first and last centre.
    outside = (bins_hz <= 125) | (bins_hz >= 7500)
    assert not weights[outside].any()
    inside = (mel(bins_hz) >= BAND_CENTRES_MEL[0]) & (mel(bins_hz) <= BAND_CENTRES_MEL[-1])
    np.testing.assert_allclose(weights[inside].sum(axis=1), 1.0, atol=1e-12)
    # With a bin exactly on a band centre the triangle reaches 1 there (and only that band is non-zero).
    centre_hz = float(mel_to_hz(BAND_CENTRES_MEL[20]))
    exact = spectrogram_to_mel_matrix(num_spectrogram_bins=9, sample_rate=16 * centre_hz)  # bin 1 = centre
    assert exact.shape == (9, 64)
    assert exact[1, 20] == pytest.approx(1.0, abs=1e-9)
    assert np.count_nonzero(exact[1] > 1e-9) == 1


def test_pad_repeat_and_zeros_and_truncation() -> None:
    wave = tone(1000.0, 2.5, 16000)  # 248 STFT frames -> 2 complete examples
    raw = vggish_log_mel(wave, 16000)
    assert raw.shape == (2, 1, 96, 64)
    repeat = log_mel_examples(wave, 16000, 5, pad="repeat")
    zeros = log_mel_examples(wave, 16000, 5, pad="zeros")
    assert repeat.shape == zeros.shape == (5, 1, 96, 64)
    np.testing.assert_array_equal(repeat[:2], raw)
    np.testing.assert_array_equal(zeros[:2], raw)
    for t in range(2, 5):
        np.testing.assert_array_equal(repeat[t], raw[-1])
    assert not zeros[2:].any()
    five_seconds = tone(300.0, 5.0, 16000)
    np.testing.assert_array_equal(log_mel_examples(five_seconds, 16000, 3), vggish_log_mel(five_seconds, 16000)[:3])
    with pytest.raises(ValueError, match="pad"):
        log_mel_examples(wave, 16000, 5, pad="edge")  # type: ignore[arg-type]


def test_audio_shorter_than_one_example_is_padded_with_silence() -> None:
    short = tone(1000.0, 0.5, 16000)
    assert vggish_log_mel(short, 16000).shape == (0, 1, 96, 64)  # as torchvggish: no complete example
    examples = log_mel_examples(short, 16000, 5, pad="zeros")
    padded = np.concatenate([short, np.zeros(15600 - short.size)])
    np.testing.assert_array_equal(examples[:1], vggish_log_mel(padded, 16000))
    assert not examples[1:].any()
    empty = log_mel_examples(np.zeros(0, np.float32), 44100, 2, pad="repeat")
    np.testing.assert_array_equal(empty, np.full((2, 1, 96, 64), np.log(0.01), dtype=np.float32))


def test_resample_keeps_a_tone_and_removes_what_is_above_the_new_nyquist() -> None:
    t_in = np.arange(3 * 44100) / 44100
    out = resample(np.sin(2 * np.pi * 1000 * t_in), 44100, 16000)
    assert out.shape == (3 * 44100 * 16000 // 44100,) and out.dtype == np.float64
    expected = np.sin(2 * np.pi * 1000 * np.arange(out.size) / 16000)
    np.testing.assert_allclose(out[2000:-2000], expected[2000:-2000], atol=1e-4)  # away from the edges
    alias = resample(np.sin(2 * np.pi * 12000 * np.arange(48000) / 48000).astype(np.float32), 48000, 16000)
    assert alias.dtype == np.float32
    assert np.sqrt(np.mean(alias[2000:-2000] ** 2)) < 1e-4  # a 12 kHz tone cannot survive at 16 kHz
    stereo = np.stack([t_in, -t_in], axis=1)
    assert resample(stereo, 44100, 16000).shape == (out.size, 2)
    same = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(resample(same, 16000, 16000), same)
    with pytest.raises(ValueError, match="sample rates"):
        resample(same, 0, 16000)


def test_log_mel_pickle_is_refused_without_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "clip.pkl"
    torch.save(torch.zeros(5, 1, 96, 64), path)
    with pytest.raises(ClipError, match=r"clip\.pkl.*arbitrary code"):
        load_log_mel_pickle(path, allow_pickle=False)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_log_mel_pickle_reads_avsbench_tensors_with_opt_in(tmp_path: Path, writer: str) -> None:
    values = torch.randn(5, 1, 96, 64, requires_grad=True)  # as preprocess_s4.py creates them
    path = tmp_path / "clip.pkl"
    if writer == "torch.save":
        torch.save(values, path)
    else:
        with path.open("wb") as fh:
            pickle.dump(values, fh)
    mel = load_log_mel_pickle(path, allow_pickle=True)
    assert isinstance(mel, np.ndarray) and mel.dtype == np.float32 and mel.shape == (5, 1, 96, 64)
    np.testing.assert_array_equal(mel, values.detach().numpy())


def test_log_mel_pickle_with_wrong_content_raises_naming_the_file(tmp_path: Path) -> None:
    wrong_shape = tmp_path / "wrong.pkl"
    torch.save(torch.zeros(5, 96, 64), wrong_shape)
    with pytest.raises(ClipError, match=r"wrong\.pkl.*\[N, 1, 96, 64\]"):
        load_log_mel_pickle(wrong_shape, allow_pickle=True)
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ClipError, match=r"corrupt\.pkl"):
        load_log_mel_pickle(corrupt, allow_pickle=True)
    with pytest.raises(ClipError, match=r"absent\.pkl"):
        load_log_mel_pickle(tmp_path / "absent.pkl", allow_pickle=True)
