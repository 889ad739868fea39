"""A tiny synthetic dataset in the exact AVSBench layouts (S4, MS3, AVSS), for tests and smoke runs.

Every frame shows two or three coloured shapes (circle, square, triangle) on a noisy background.
The audio decides which of them is sounding: each shape class has its own tone, and a second of
audio is the sum of the tones of the shapes sounding during that second. The ground-truth mask is
the union of the sounding shapes, so a model can only solve the task by listening; colours and
positions are random and carry no information.

Files are real (PNG frames and masks, 16-bit wav audio, CSV metadata), so the real readers, the
audio front end and ``openavs_st.data.check`` run on them unchanged::

    python -m openavs_st.data.synthetic out=/tmp/avs_synth            # all three layouts
    python -m openavs_st.data.synthetic out=/tmp/avs_synth layouts=s4 size=224
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from openavs_st.data.avsbench import AVSS_NUM_CLASSES, avss_palette

# Shape classes and their tones (Hz). The tones sit in well separated VGGish mel bands.
SHAPES = ("circle", "square", "triangle")
TONES_HZ = {"circle": 440.0, "square": 1250.0, "triangle": 3000.0}
SAMPLE_RATE = 16000
DEFAULT_SPLITS = {"train": 6, "val": 2, "test": 2}
LAYOUTS = ("s4", "ms3", "avss")
# AVSS class indices of the shapes (any three of the 70 foreground indices).
AVSS_CLASS_OF = {"circle": 1, "square": 2, "triangle": 3}


@dataclass
class SyntheticClip:
    """A generated clip before it is written: frames, per-frame class masks, audio."""

    frames: np.ndarray  # [T, H, W, 3] uint8
    class_masks: np.ndarray  # [T, H, W] uint8: 0 background, 1 + shape index where sounding
    audio: np.ndarray  # [T * SAMPLE_RATE] float32
    sounding: list[list[str]]  # per frame, the sounding shape names


def shape_mask(kind: str, cy: int, cx: int, r: int, size: int) -> np.ndarray:
    """``[size, size]`` bool mask of a shape of half-extent ``r`` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size]
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy * dy + dx * dx <= r * r
    if kind == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if kind == "triangle":  # apex up, base at cy + r
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {kind!r}")


def tone(freqs: list[float], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of sines (random phases) at ``freqs`` with a little noise, peak ≈ 0.6."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    sig = np.zeros_like(t)
    for f in freqs:
        sig += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    sig = sig / max(1, len(freqs)) * 0.6
    return (sig + rng.normal(0.0, 0.01, size=t.shape)).astype(np.float32)


def make_clip(
    rng: np.random.Generator,
    *,
    num_frames: int,
    size: int,
    multi_source: bool,
) -> SyntheticClip:
    """One clip. Single-source: one shape sounds all clip long; multi-source: per second, one or two
    of the visible shapes sound."""
    visible = list(rng.choice(SHAPES, size=3 if multi_source else 2, replace=False))
    r = max(3, size // 8)
    # Non-overlapping centres on a coarse grid.
    cells = [(y, x) for y in (size // 4, 3 * size // 4) for x in (size // 4, 3 * size // 4)]
    places = [cells[i] for i in rng.choice(len(cells), size=len(visible), replace=False)]
    colours = rng.integers(40, 255, size=(len(visible), 3))
    background = rng.integers(0, 90)
    main = visible[0]
    frames, masks, audio, sounding = [], [], [], []
    for _ in range(num_frames):
        if multi_source:
            count = int(rng.integers(1, 3))
            now = [str(s) for s in rng.choice(visible, size=count, replace=False)]
        else:
            now = [str(main)]
        img = np.full((size, size, 3), background, dtype=np.int16)
        img += rng.integers(-12, 13, size=img.shape, dtype=np.int16)
        cls = np.zeros((size, size), dtype=np.uint8)
        for kind, (cy, cx), colour in zip(visible, places, colours):
            jitter = rng.integers(-2, 3, size=2)
            m = shape_mask(str(kind), int(cy + jitter[0]), int(cx + jitter[1]), r, size)
            img[m] = colour
            if kind in now:
                cls[m] = 1 + SHAPES.index(str(kind))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(cls)
        audio.append(tone([TONES_HZ[s] for s in now], 1.0, rng))
        sounding.append(sorted(now))
    return SyntheticClip(np.stack(frames), np.stack(masks), np.concatenate(audio), sounding)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_wav(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")


def save_log_mel_pickle(path: Path, wav_path: Path, num_frames: int, pad: str) -> None:
    """Write the log-mels of a written wav the way AVSBench ships them: a ``torch.save``d tensor
    [T, 1, 96, 64] (computed from the 16-bit file, as AVSBench's preprocessing does)."""
    import torch

    from openavs_st.data.audio import load_audio, log_mel_examples

    wave, sr = load_audio(wav_path)
    mel = log_mel_examples(wave, sr, num_frames=num_frames, pad=pad)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.from_numpy(mel), path)


def clip_ids(prefix: str, splits: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{prefix}_{split}_{i:03d}", split) for split, n in splits.items() for i in range(n)]


def write_s4(root: Path, splits: dict[str, int], size: int, seed: int, pickles: bool) -> Path:
    """S4 layout under ``root/Single-source``; returns that folder."""
    base = root / "Single-source"
    rng = np.random.default_rng(seed)
    rows = []
    for vid, split in clip_ids("s4", splits):
        clip = make_clip(rng, num_frames=5, size=size, multi_source=False)
        category = clip.sounding[0][0]
        rows.append([vid, "0", category, split])
        d = base / "s4_data"
        for t in range(5):
            save_png(d / "visual_frames" / split / category / vid / f"{vid}_{t + 1}.png", clip.frames[t])
            if split != "train" or t == 0:  # S4 train: frame-1 masks only
                mask = (clip.class_masks[t] > 0).astype(np.uint8) * 255
                save_png(d / "gt_masks" / split / category / vid / f"{vid}_{t + 1}.png", mask)
        wav = d / "audio_wav" / split / category / f"{vid}.wav"
        save_wav(wav, clip.audio)
        if pickles:
            save_log_mel_pickle(d / "audio_log_mel" / split / category / f"{vid}.pkl", wav, 5, "repeat")
    write_csv(base / "s4_meta_data.csv", ["name", "start", "category", "split"], rows)
    return base


def write_ms3(root: Path, splits: dict[str, int], size: int, seed: int, pickles: bool) -> Path:
    """MS3 layout under ``root/Multi-sources``; returns that folder."""
    base = root / "Multi-sources"
    rng = np.random.default_rng(seed + 1)
    rows = []
    for vid, split in clip_ids("ms3", splits):
        clip = make_clip(rng, num_frames=5, size=size, multi_source=True)
        rows.append([vid, split])
        d = base / "ms3_data"
        for t in range(5):
            save_png(d / "visual_frames" / vid / f"{vid}.mp4_{t + 1}.png", clip.frames[t])
            mask = (clip.class_masks[t] > 0).astype(np.uint8) * 255
            save_png(d / "gt_masks" / split / vid / f"{vid}_{t + 1}.png", mask)
        wav = d / "audio_wav" / split / f"{vid}.wav"
        save_wav(wav, clip.audio)
        if pickles:
            save_log_mel_pickle(d / "audio_log_mel" / split / f"{vid}.pkl", wav, 5, "repeat")
    write_csv(base / "ms3_meta_data.csv", ["video_id", "split"], rows)
    return base


def write_avss(root: Path, splits: dict[str, int], size: int, seed: int) -> Path:
    """AVSS layout under ``root/avs_released``: a mix of v1s, v1m (5 s) and v2 (10 s) clips."""
    base = root / "avs_released"
    rng = np.random.default_rng(seed + 2)
    palette = avss_palette()
    # synthetic class mask value (0 background, 1 + shape index) -> AVSS class index
    to_avss = np.array([0, *(AVSS_CLASS_OF[s] for s in SHAPES)], dtype=np.int64)
    rows = []
    subsets = ("v1s", "v1m", "v2")
    for n, (uid, split) in enumerate(clip_ids("avss", splits)):
        label = subsets[n % 3]
        num_frames = 10 if label == "v2" else 5
        clip = make_clip(rng, num_frames=num_frames, size=size, multi_source=label != "v1s")
        rows.append([uid, label, split, f"{uid}_vid", "_".join(sorted({s for f in clip.sounding for s in f}))])
        d = base / label / uid
        for t in range(num_frames):
            path = d / "frames" / f"{t}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(clip.frames[t]).save(path, quality=95)
            # Train v1s clips carry one label file, as in the release.
            if split == "train" and label == "v1s" and t > 0:
                continue
            save_png(d / "labels_rgb" / f"{t}.png", palette[to_avss[clip.class_masks[t]]])
        save_wav(d / "audio.wav", clip.audio)
    write_csv(base / "metadata.csv", ["uid", "label", "split", "vid", "a_obj"], rows)
    names = ["background", *SHAPES, *[f"class_{i}" for i in range(len(SHAPES) + 1, AVSS_NUM_CLASSES)]]
    (base / "label2idx.json").write_text(json.dumps({k: i for i, k in enumerate(names)}, indent=1))
    return base


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_synthetic(
    root: str | Path,
    layouts: tuple[str, ...] | list[str] = LAYOUTS,
    *,
    splits: dict[str, int] | None = None,
    size: int = 64,
    seed: int = 0,
    pickles: bool = False,
) -> dict[str, Path]:
    """Write the synthetic dataset under ``root``; returns the dataset folder of each layout.

    Args:
        layouts: any of ``s4``, ``ms3``, ``avss``.
        splits: clips per split (default 6 train, 2 val, 2 test).
        size: frame side in pixels (AVSBench ships 224).
        pickles: also write AVSBench-style ``audio_log_mel/*.pkl`` (S4/MS3).
    """
    root = Path(root)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        raise ValueError(f"unknown layouts {sorted(unknown)}; expected some of {LAYOUTS}")
    out: dict[str, Path] = {}
    if "s4" in layouts:
        out["s4"] = write_s4(root, splits, size, seed, pickles)
    if "ms3" in layouts:
        out["ms3"] = write_ms3(root, splits, size, seed, pickles)
    if "avss" in layouts:
        out["avss"] = write_avss(root, splits, size, seed)
    return out


def ensure_synthetic(root: str | Path) -> Path:
    """The synthetic S4 dataset under ``root`` (24 train, 8 val, 8 test clips at 64x64), written if it is
    not there yet; what ``data=synthetic`` trains on."""
    root = Path(root)
    if not (root / "Single-source" / "s4_meta_data.csv").is_file():
        write_synthetic(root, ("s4",), splits={"train": 24, "val": 8, "test": 8}, size=64, seed=0)
    return root

def main(argv: list[str] | None = None) -> int:
    """``python -m openavs_st.data.synthetic out=DIR [layouts=s4,ms3,avss] [size=64] [seed=0]
    [train=6] [val=2] [test=2] [pickles=false]``"""
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    if "out" not in args:
        print(main.__doc__, file=sys.stderr)
        return 2
    splits = {s: int(args.get(s, DEFAULT_SPLITS[s])) for s in DEFAULT_SPLITS}
    paths = write_synthetic(
        args["out"],
        tuple(args.get("layouts", ",".join(LAYOUTS)).split(",")),
        splits=splits,
        size=int(args.get("size", 64)),
        seed=int(args.get("seed", 0)),
        pickles=args.get("pickles", "false").lower() in ("1", "true", "yes"),
    )
    for layout, path in paths.items():
        print(f"{layout}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
