"""Readers for the official AVSBench layouts: S4 (single source), MS3 (multi-source) and AVSS (V2).

Each reader is a sequence of :class:`~openavs_st.data.clip.Clip` for one split and knows which files a
clip needs (``expected_files``), so ``python -m openavs_st.data.check`` can report every missing or
corrupt file before a long job. Layouts follow the original loaders of the AVSBench repository
(github.com/OpenNLPLab/AVSBench: ``avs_scripts/avs_s4/dataloader.py``, ``avs_ms3/dataloader.py``,
``avss/color_dataloader.py``) and the released folders its ``README.md`` describes:

S4 (``root`` = ``Single-source/`` or its parent)::

    s4_meta_data.csv                      columns: name, start, category, split (positional)
    s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
    s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png   train: k=1 only; val/test: k=1..5
    s4_data/audio_wav/{split}/{category}/{name}.wav
    s4_data/audio_log_mel/{split}/{category}/{name}.pkl          (pickles: opt-in only)

MS3 (``root`` = ``Multi-sources/`` or its parent)::

    ms3_meta_data.csv                     columns: video_id, split, ...
    ms3_data/visual_frames/{vid}/{vid}.mp4_{1..5}.png   (no split folder, ".mp4_" infix)
    ms3_data/gt_masks/{split}/{vid}/{vid}_{1..5}.png    (all 5 frames, train included)
    ms3_data/audio_wav/{split}/{vid}.wav
    ms3_data/audio_log_mel/{split}/{vid}.pkl

AVSS / V2 (``root`` = the released folder holding ``metadata.csv``, or its parent ``avs_released``)::

    metadata.csv                          columns used: uid, label (v1s|v1m|v2), split
    label2idx.json                        71 classes, index 0 = background
    {label}/{uid}/frames/{0..T-1}.jpg
    {label}/{uid}/audio.wav
    {label}/{uid}/labels_rgb/{0..}.png    colour masks in the PASCAL bit-interleaved palette
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from openavs_st.data.clip import Clip, ClipError

AUDIO_SOURCES = ("wav", "pkl", "none")
SPLITS = ("train", "val", "test")

# AVSS: 70 categories + background (avss/config.py NUM_CLASSES = 71).
AVSS_NUM_CLASSES = 71
AVSS_NUM_FRAMES = 10
# The 71 AVSS classes in index order: AVSBench-semantic's label2idx.json (OpenNLPLab/AVSBench, AVSS release)
# numbers 'background' 0 and the 70 object classes 1..70 in alphabetical order (hyphens as in the file).
AVSS_CLASSES = (
    "background", "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy", "bus", "car",
    "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck", "elephant", "emergency-car",
    "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun", "guzheng", "hair-dryer", "handpan",
    "harmonica", "harp", "helicopter", "hen", "horse", "keyboard", "leopard", "lion", "man", "marimba",
    "missile-rocket", "motorcycle", "mower", "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep",
    "sitar", "sorna", "squirrel", "tabla", "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet",
    "tuba", "ukulele", "utv", "vacuum-cleaner", "violin", "wolf", "woman",
)
assert len(AVSS_CLASSES) == AVSS_NUM_CLASSES


# --------------------------------------------------------------------------------------------- io


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """An image file converted to PIL ``mode`` as uint8 (``RGB``: ``[H, W, 3]``, ``L``: ``[H, W]``).

    Raises :class:`ClipError` naming the file when it is missing or unreadable.
    """
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode), dtype=np.uint8)
    except FileNotFoundError:
        raise ClipError(f"missing file: {path}") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ClipError(f"unreadable image {path}: {exc}") from None


def read_binary_mask(path: Path, *, threshold: int) -> np.ndarray:
    """A 0/255 mask PNG as ``[H, W]`` uint8 {0, 1}: pixel (as luminance) ``> threshold``.

    S4's loader uses PIL ``convert('1')`` (cut at 128) and MS3's ``convert('P')`` + ``ToTensor`` (any
    non-zero index); on the released 0/255 masks both equal these thresholds.
    """
    return (read_image(path, "L") > threshold).astype(np.uint8)


def verify_image(path: Path) -> str | None:
    """``None`` if ``path`` is a fully decodable image, else a short description of the problem."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return f"corrupt ({exc})"
    return None


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; :class:`ClipError` naming the file if missing or empty."""
    if not path.is_file():
        raise ClipError(f"missing metadata file: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if not rows:
        raise ClipError(f"empty metadata file: {path}")
    return rows[0], rows[1:]


# ----------------------------------------------------------------------------------------- audio


def clip_audio(
    wav_path: Path | None,
    pkl_path: Path | None,
    *,
    source: str,
    num_frames: int,
    pad: str,
    allow_pickle: bool,
) -> tuple[np.ndarray | None, int | None, np.ndarray | None]:
    """(waveform, sample_rate, log_mel) for a clip from its wav or its precomputed pickle."""
    from openavs_st.data import audio as audio_io

    if source == "none":
        return None, None, None
    if source == "pkl":
        if pkl_path is None:
            raise ClipError("this dataset has no precomputed log-mel pickles; use audio='wav'")
        mel = audio_io.load_log_mel_pickle(pkl_path, allow_pickle=allow_pickle)
        mel = np.asarray(mel, dtype=np.float32)
        if mel.shape[1:] != (1, 96, 64):
            raise ClipError(f"{pkl_path}: expected log-mel [T, 1, 96, 64], got {mel.shape}")
        return None, None, audio_io.pad_examples(mel, num_frames, pad=pad)
    assert wav_path is not None
    wave, sr = audio_io.load_audio(wav_path)
    return wave, sr, audio_io.log_mel_examples(wave, sr, num_frames=num_frames, pad=pad)


# --------------------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class ClipRecord:
    """One row of a dataset index: enough to find every file of a clip."""

    id: str
    split: str
    category: str = ""
    label: str = ""  # AVSS subset: v1s | v1m | v2
    extra: tuple[tuple[str, str], ...] = ()


class AVSBenchReader(Sequence[Clip]):
    """Common machinery of the AVSBench readers: a split's records, ``expected_files``, loading.

    Args:
        root: dataset folder (see the module docstring for what each reader accepts).
        split: ``train`` | ``val`` | ``test``.
        audio: ``"wav"`` (default: decode the wav and compute VGGish log-mels with our front end),
            ``"pkl"`` (AVSBench's precomputed log-mels; pickles, so only with ``allow_pickle=True``)
            or ``"none"``.
        allow_pickle: explicit opt-in to unpickle the ``.pkl`` log-mel files.
    """

    name = "avsbench"
    num_frames = 5
    audio_pad = "repeat"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        audio: str = "wav",
        allow_pickle: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"{self.name}: unknown split {split!r}; expected one of {SPLITS}")
        if audio not in AUDIO_SOURCES:
            raise ValueError(f"{self.name}: audio must be one of {AUDIO_SOURCES}, got {audio!r}")
        if audio == "pkl" and not allow_pickle:
            raise ValueError(
                f"{self.name}: audio='pkl' reads pickled files, which can execute arbitrary code; "
                "pass allow_pickle=True (data.allow_pickle=true) if you trust them, or use audio='wav'"
            )
        self.root = self.locate_root(Path(root).expanduser())
        self.split = split
        self.audio = audio
        self.allow_pickle = allow_pickle
        self.records = [r for r in self.read_index() if r.split == split]

    # -- to implement
    @classmethod
    def locate_root(cls, root: Path) -> Path:
        raise NotImplementedError

    def read_index(self) -> list[ClipRecord]:
        raise NotImplementedError

    def frame_paths(self, rec: ClipRecord) -> list[Path]:
        raise NotImplementedError

    def mask_paths(self, rec: ClipRecord) -> list[Path]:
        """Mask files that exist for this clip in the original layout, in frame order."""
        raise NotImplementedError

    def wav_path(self, rec: ClipRecord) -> Path:
        raise NotImplementedError

    def pkl_path(self, rec: ClipRecord) -> Path | None:
        return None

    def build_clip(self, rec: ClipRecord) -> Clip:
        raise NotImplementedError

    # -- common
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.build_clip(self.records[index])

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def expected_files(self, rec: ClipRecord) -> list[Path]:
        """Every file the reader will open for ``rec`` (images first, then audio)."""
        files = [*self.frame_paths(rec), *self.mask_paths(rec)]
        if self.audio == "wav":
            files.append(self.wav_path(rec))
        elif self.audio == "pkl":
            pkl = self.pkl_path(rec)
            if pkl is not None:
                files.append(pkl)
        return files

    def load_audio(self, rec: ClipRecord, num_frames: int) -> tuple[Any, Any, Any]:
        wav = self.wav_path(rec) if self.audio == "wav" else None
        pkl = self.pkl_path(rec) if self.audio == "pkl" else None
        return clip_audio(
            wav,
            pkl,
            source=self.audio,
            num_frames=num_frames,
            pad=self.audio_pad,
            allow_pickle=self.allow_pickle,
        )

    def categories(self) -> list[str | None]:
        """Category of every clip (``None`` where the layout has none, e.g. MS3)."""
        return [r.category or dict(r.extra).get("a_obj") or None for r in self.records]

    def log_mel_of(self, index: int) -> np.ndarray:
        """The ``[T, 1, 96, 64]`` log-mel of clip ``index`` without decoding its images."""
        if self.audio == "none":
            raise ClipError(f"{self.name}: audio='none', so there are no log-mels to read")
        return self.load_audio(self.records[index], self.num_frames)[2]

    def meta(self, rec: ClipRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {"dataset": self.name, "split": rec.split, "source": str(self.root)}
        if rec.category:
            meta["category"] = rec.category
        if rec.label:
            meta["label"] = rec.label
        meta.update(dict(rec.extra))
        return meta


def _find_root(root: Path, marker: str, subdirs: tuple[str, ...]) -> Path:
    for candidate in (root, *(root / s for s in subdirs)):
        if (candidate / marker).is_file():
            return candidate
    looked = ", ".join(str(p / marker) for p in (root, *(root / s for s in subdirs)))
    raise ClipError(f"no {marker} found (looked for {looked}); is data.root the dataset folder?")


class S4Reader(AVSBenchReader):
    """AVSBench-object single-source (S4). Train clips carry a mask for frame 1 only."""

    name = "avsbench_s4"

    @classmethod
    def locate_root(cls, root: Path) -> Path:
        return _find_root(root, "s4_meta_data.csv", ("Single-source",))

    def read_index(self) -> list[ClipRecord]:
        path = self.root / "s4_meta_data.csv"
        header, rows = read_csv_rows(path)
        cols = {name: i for i, name in enumerate(header)}
        # The original loader uses positional columns 0 (name) and 2 (category) and the 'split' column.
        i_split = cols.get("split", 3)
        out = []
        for n, row in enumerate(rows, start=2):
            if len(row) <= max(2, i_split):
                raise ClipError(f"{path}: line {n} has {len(row)} columns, expected at least 4")
            out.append(ClipRecord(id=row[0], split=row[i_split], category=row[2]))
        return out

    def _dir(self, kind: str, rec: ClipRecord) -> Path:
        return self.root / "s4_data" / kind / rec.split / rec.category

    def frame_paths(self, rec: ClipRecord) -> list[Path]:
        d = self._dir("visual_frames", rec) / rec.id
        return [d / f"{rec.id}_{k}.png" for k in range(1, self.num_frames + 1)]

    def mask_paths(self, rec: ClipRecord) -> list[Path]:
        d = self._dir("gt_masks", rec) / rec.id
        count = 1 if rec.split == "train" else self.num_frames
        return [d / f"{rec.id}_{k}.png" for k in range(1, count + 1)]

    def wav_path(self, rec: ClipRecord) -> Path:
        return self._dir("audio_wav", rec) / f"{rec.id}.wav"

    def pkl_path(self, rec: ClipRecord) -> Path:
        return self._dir("audio_log_mel", rec) / f"{rec.id}.pkl"

    def build_clip(self, rec: ClipRecord) -> Clip:
        frames = np.stack([read_image(p) for p in self.frame_paths(rec)])
        labelled = [read_binary_mask(p, threshold=127) for p in self.mask_paths(rec)]
        masks = np.zeros(frames.shape[:3], dtype=np.uint8)
        has_label = np.zeros(self.num_frames, dtype=bool)
        for t, m in enumerate(labelled):
            _check_mask_size(m, frames[t], self.mask_paths(rec)[t])
            masks[t], has_label[t] = m, True
        wave, sr, mel = self.load_audio(rec, self.num_frames)
        return Clip(rec.id, frames, wave, sr, mel, masks, has_label, meta=self.meta(rec))


class MS3Reader(AVSBenchReader):
    """AVSBench-object multi-source (MS3). All five frames carry masks in every split."""

    name = "avsbench_ms3"

    @classmethod
    def locate_root(cls, root: Path) -> Path:
        return _find_root(root, "ms3_meta_data.csv", ("Multi-sources",))

    def read_index(self) -> list[ClipRecord]:
        path = self.root / "ms3_meta_data.csv"
        header, rows = read_csv_rows(path)
        if "split" not in header:
            raise ClipError(f"{path}: no 'split' column in header {header}")
        i_split = header.index("split")
        out = []
        for n, row in enumerate(rows, start=2):
            if len(row) <= i_split:
                raise ClipError(f"{path}: line {n} has {len(row)} columns, expected {len(header)}")
            out.append(ClipRecord(id=row[0], split=row[i_split]))
        return out

    def frame_paths(self, rec: ClipRecord) -> list[Path]:
        d = self.root / "ms3_data" / "visual_frames" / rec.id
        return [d / f"{rec.id}.mp4_{k}.png" for k in range(1, self.num_frames + 1)]

    def mask_paths(self, rec: ClipRecord) -> list[Path]:
        d = self.root / "ms3_data" / "gt_masks" / rec.split / rec.id
        return [d / f"{rec.id}_{k}.png" for k in range(1, self.num_frames + 1)]

    def wav_path(self, rec: ClipRecord) -> Path:
        return self.root / "ms3_data" / "audio_wav" / rec.split / f"{rec.id}.wav"

    def pkl_path(self, rec: ClipRecord) -> Path:
        return self.root / "ms3_data" / "audio_log_mel" / rec.split / f"{rec.id}.pkl"

    def build_clip(self, rec: ClipRecord) -> Clip:
        frames = np.stack([read_image(p) for p in self.frame_paths(rec)])
        masks = []
        for t, p in enumerate(self.mask_paths(rec)):
            m = read_binary_mask(p, threshold=0)
            _check_mask_size(m, frames[t], p)
            masks.append(m)
        wave, sr, mel = self.load_audio(rec, self.num_frames)
        return Clip(rec.id, frames, wave, sr, mel, np.stack(masks), meta=self.meta(rec))


def avss_palette(num_classes: int = AVSS_NUM_CLASSES) -> np.ndarray:
    """``[num_classes, 3]`` uint8 PASCAL-VOC bit-interleaved colour map (index 0 = black background).

    Same construction as ``avss/color_dataloader.py::get_v2_pallete``: bit k of the class index
    sets bit (7 − k//3) of channel k % 3.
    """
    pal = np.zeros((num_classes, 3), dtype=np.int64)
    for cls in range(num_classes):
        lab, shift = cls, 7
        while lab > 0:
            for ch in range(3):
                pal[cls, ch] |= ((lab >> ch) & 1) << shift
            lab >>= 3
            shift -= 1
    return pal.astype(np.uint8)


def avss_palette_image(class_map: np.ndarray) -> Image.Image:
    """A ``[H, W]`` class-index map as a palette ("P") image in AVSBench-semantic's colours: its pixel values
    are the class ids (what the AVSS loaders read back), unused palette entries black."""
    image = Image.fromarray(np.asarray(class_map, dtype=np.uint8), mode="P")
    pal = avss_palette().reshape(-1).tolist()
    image.putpalette(pal + [0] * (768 - len(pal)))
    return image


def colour_to_index(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map an ``[H, W, 3]`` colour mask to class indices by exact colour match (unknown → 0)."""
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_codes = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8)
    pal_codes |= palette[:, 2]
    order = np.argsort(pal_codes)
    pos = np.clip(np.searchsorted(pal_codes[order], codes), 0, len(order) - 1)
    idx = order[pos]
    return np.where(pal_codes[idx] == codes, idx, 0).astype(np.uint8)


class AVSSReader(AVSBenchReader):
    """AVSBench-semantic (V2): 10 frames, 71 classes; v1s/v1m clips padded from 5 to 10 frames.

    ``frame_valid`` is the original ``vid_temporal_mask_flag`` (v1s/v1m: 5 real + 5 padding frames).
    In the train split ``has_label`` is the original ``gt_temporal_mask_flag`` (v1s: frame 1 only,
    v1m: first 5, v2: all 10), which is what weights the original losses; in val/test every frame
    with a label file is labelled (the original metrics score all 10 frames, padding included, and
    both flags are kept in ``meta``). Padding frames are black; the transforms zero them after
    normalisation, as the original pads with zero tensors.

    ``binary=True`` gives the AVSS-binary view: masks ``min(Y, 1)``.
    """

    name = "avsbench_avss"
    num_frames = AVSS_NUM_FRAMES
    audio_pad = "zeros"
    subsets = ("v1s", "v1m", "v2")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        audio: str = "wav",
        allow_pickle: bool = False,
        binary: bool = False,
        subsets: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        super().__init__(root, split, audio=audio, allow_pickle=allow_pickle)
        if audio == "pkl":
            raise ValueError("avsbench_avss has no precomputed log-mels; use audio='wav'")
        self.binary = binary
        if subsets is not None:
            unknown = set(subsets) - set(self.subsets)
            if unknown:
                raise ValueError(f"avsbench_avss: unknown subsets {sorted(unknown)}")
            self.records = [r for r in self.records if r.label in subsets]
        self.palette = avss_palette()
        if binary:
            self.name = "avsbench_avss_binary"

    @classmethod
    def locate_root(cls, root: Path) -> Path:
        return _find_root(root, "metadata.csv", ("avs_released", "AVSBench-semantic"))

    def read_index(self) -> list[ClipRecord]:
        path = self.root / "metadata.csv"
        header, rows = read_csv_rows(path)
        missing = {"uid", "label", "split"} - set(header)
        if missing:
            raise ClipError(f"{path}: missing column(s) {sorted(missing)} in header {header}")
        cols = {name: i for i, name in enumerate(header)}
        keep = [c for c in ("vid", "a_obj") if c in cols]
        out = []
        for n, row in enumerate(rows, start=2):
            if len(row) < len(header):
                raise ClipError(f"{path}: line {n} has {len(row)} columns, expected {len(header)}")
            label = row[cols["label"]]
            if label not in self.subsets:
                raise ClipError(f"{path}: line {n}: unknown label {label!r} (expected v1s/v1m/v2)")
            extra = tuple((c, row[cols[c]]) for c in keep)
            out.append(ClipRecord(row[cols["uid"]], row[cols["split"]], label=label, extra=extra))
        return out

    def real_frames(self, rec: ClipRecord) -> int:
        return AVSS_NUM_FRAMES if rec.label == "v2" else 5

    def frame_paths(self, rec: ClipRecord) -> list[Path]:
        d = self.root / rec.label / rec.id / "frames"
        return [d / f"{t}.jpg" for t in range(self.real_frames(rec))]

    def mask_paths(self, rec: ClipRecord) -> list[Path]:
        d = self.root / rec.label / rec.id / "labels_rgb"
        if rec.split == "train":
            # Train clips may carry fewer label files; the original loader lists what is there.
            count = sum(1 for p in d.glob("*.png")) if d.is_dir() else 0
            count = max(count, 1)
        else:
            count = self.real_frames(rec)
        return [d / f"{t}.png" for t in range(count)]

    def wav_path(self, rec: ClipRecord) -> Path:
        return self.root / rec.label / rec.id / "audio.wav"

    @staticmethod
    def temporal_flags(label: str) -> tuple[np.ndarray, np.ndarray]:
        """(vid_temporal_mask_flag, gt_temporal_mask_flag) of the original loader, as bool [10]."""
        vid = np.zeros(AVSS_NUM_FRAMES, dtype=bool)
        gt = np.zeros(AVSS_NUM_FRAMES, dtype=bool)
        if label == "v2":
            vid[:], gt[:] = True, True
        else:
            vid[:5] = True
            gt[: 1 if label == "v1s" else 5] = True
        return vid, gt

    def build_clip(self, rec: ClipRecord) -> Clip:
        real = [read_image(p) for p in self.frame_paths(rec)]
        h, w = real[0].shape[:2]
        for p, f in zip(self.frame_paths(rec), real):
            if f.shape[:2] != (h, w):
                raise ClipError(f"{p}: frame size {f.shape[:2]} differs from frame 0 ({h}, {w})")
        frames = np.zeros((AVSS_NUM_FRAMES, h, w, 3), dtype=np.uint8)
        frames[: len(real)] = np.stack(real)
        masks = np.zeros((AVSS_NUM_FRAMES, h, w), dtype=np.uint8)
        has_file = np.zeros(AVSS_NUM_FRAMES, dtype=bool)
        for t, p in enumerate(self.mask_paths(rec)):
            colour = read_image(p)
            _check_mask_size(colour[..., 0], frames[t], p)
            masks[t], has_file[t] = colour_to_index(colour, self.palette), True
        vid_flag, gt_flag = self.temporal_flags(rec.label)
        has_label = (gt_flag & has_file) if rec.split == "train" else has_file
        wave, sr, mel = self.load_audio(rec, AVSS_NUM_FRAMES)
        meta = self.meta(rec)
        meta["gt_temporal_mask_flag"] = gt_flag.tolist()
        meta["vid_temporal_mask_flag"] = vid_flag.tolist()
        clip = Clip(rec.id, frames, wave, sr, mel, masks, has_label, vid_flag, meta)
        return clip.binary() if self.binary else clip

    def class_names(self) -> list[str]:
        """Category names in index order from ``label2idx.json``."""
        return read_label2idx(self.root / "label2idx.json")


def read_label2idx(path: Path) -> list[str]:
    """The class names of an AVSBench-style ``label2idx.json`` (``{name: index}``) in index order; a
    :class:`ClipError` naming the file when it is missing, unreadable, or its indices are not 0..K-1 or
    1..K. The released AVSBench-semantic file numbers its classes from 1 (``"background": 1`` ...
    ``"woman": 71``); its loaders use only the order (OpenNLPLab/AVSBench ``avss/color_dataloader.py``), so
    the name at position i is class id i either way."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"missing file: {path}")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(f"{path}: unreadable label2idx ({exc})") from None
    if not isinstance(mapping, dict):
        found = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(mapping), "a number")
        raise ClipError(f"{path}: label2idx must be a JSON object {{name: index}}, found {found}")
    bad = [name for name, index in mapping.items() if isinstance(index, bool) or not isinstance(index, int)]
    if bad:
        raise ClipError(f"{path}: label2idx must map names to integer indices, found {bad[0]!r}: {mapping[bad[0]]!r}")
    indices = sorted(mapping.values())
    first = indices[0] if indices else 0
    if first not in (0, 1) or indices != list(range(first, first + len(indices))):
        raise ClipError(f"{path}: the class indices must be 0..{len(indices) - 1} or 1..{len(indices)}, each once")
    return [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]


def _check_mask_size(mask: np.ndarray, frame: np.ndarray, path: Path) -> None:
    if mask.shape[:2] != frame.shape[:2]:
        raise ClipError(f"{path}: mask size {mask.shape[:2]} differs from its frame {frame.shape[:2]}")


READERS: dict[str, type[AVSBenchReader]] = {
    "avsbench_s4": S4Reader,
    "avsbench_ms3": MS3Reader,
    "avsbench_avss": AVSSReader,
}


def open_reader(kind: str, root: str | Path, split: str, **kwargs: Any) -> AVSBenchReader:
    """A reader by dataset name; ``avsbench_avss_binary`` is AVSS with ``binary=True``."""
    if kind == "avsbench_avss_binary":
        kind, kwargs = "avsbench_avss", {**kwargs, "binary": True}
    try:
        cls = READERS[kind]
    except KeyError:
        known = sorted([*READERS, "avsbench_avss_binary"])
        raise KeyError(f"unknown AVSBench dataset {kind!r}; known: {known}") from None
    return cls(root, split, **kwargs)
