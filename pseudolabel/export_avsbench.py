"""``python -m pseudolabel.export_avsbench store=STORE out=DIR layout=s4|ms3|avss``: write a pseudo-label
store in the folder layout of an official AVSBench track, so the original loaders (and every AVS codebase
that copies them) train on the pseudo-labels unchanged.

The layouts follow the original loaders of github.com/OpenNLPLab/AVSBench (``avs_scripts/avs_s4/
dataloader.py``, ``avs_scripts/avs_ms3/dataloader.py``, ``avs_scripts/avss/color_dataloader.py``) and its
preprocessing (``preprocess_scripts/preprocess_s4.py``); ``openavs_st.data.avsbench`` reads the same
folders. With ``root`` = ``out``:

- ``layout=s4``: ``Single-source/s4_meta_data.csv`` (columns ``name,start,category,split``: the loader
  takes the name and category by position 0 and 2 and the split by name),
  ``s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png``, masks
  ``s4_data/gt_masks/{split}/{category}/{name}/{name}_{1..5}.png`` (1-bit PNG, read with ``convert('1')``;
  all five frames are written, the original train loader reads ``_1``),
  ``s4_data/audio_wav/{split}/{category}/{name}.wav``.
- ``layout=ms3``: ``Multi-sources/ms3_meta_data.csv`` (``video_id,split``),
  ``ms3_data/visual_frames/{vid}/{vid}.mp4_{1..5}.png`` (no split folder), masks
  ``ms3_data/gt_masks/{split}/{vid}/{vid}_{1..5}.png`` (0/255 single channel, read with ``convert('P')``),
  ``ms3_data/audio_wav/{split}/{vid}.wav``.
- ``layout=avss``: ``AVSBench-semantic/metadata.csv`` (read by the names ``uid``, ``label``, ``split``;
  ``vid`` and ``a_obj`` too), ``label2idx.json`` (71 classes), ``{label}/{uid}/frames/{0..T-1}.jpg``,
  ``{label}/{uid}/labels_rgb/{t}.png`` (palette PNG in AVSBench's 71-colour map; the loader converts it to
  RGB and matches colours) and ``{label}/{uid}/audio.wav``.

Rules:

- **Clip length.** S4/MS3 clips have T = 5 frames. A store clip of 5 frames keeps its id; a longer one is
  cut into consecutive windows of 5 (frames ``[0, 5)``, ``[5, 10)`` ...; ids ``<clip>@<first frame>``, as
  ``data=pseudo`` names windows), the frames left over are dropped, and its wav is cut to the window's
  seconds. AVSS: a clip of 10 frames is a ``v2`` clip, one of 5 a ``v1m`` clip (all five frames labelled,
  so the loader's ``gt_temporal_mask_flag`` covers every pseudo-label), a longer one windows of 10 (``v2``)
  and then one of 5 (``v1m``) if 5 frames remain. ``clip_length=skip`` exports only clips of exactly T (5;
  AVSS 5 or 10) frames instead. Clips shorter than 5 frames, or without audio, are skipped. Trailing frames
  a labeler marked invalid (``frames_info[t].valid`` false: padding) are dropped first. Skips are counted,
  printed and listed in the marker file.
- **Category** (S4 folders): the record's ``meta.category``, else ``unknown`` (``/`` and other characters
  that cannot be in a folder name become ``_``).
- **Size.** ``resize=layout`` (default): S4/MS3 frames are resized to 224x224 as AVSBench's preprocessing
  does (``cv2.resize``, bilinear; masks nearest), AVSS frames keep their size (its loader resizes).
  ``resize=none`` keeps every size, ``resize=N`` makes N x N.
- **Frames and audio.** S4/MS3 frames are PNG (lossless). AVSS frames are JPEG: a store's ``.jpg`` frame is
  copied byte for byte (when not resized), any other is encoded at ``jpeg_quality`` (95). A clip exported
  whole gets a byte copy of its wav; a window gets the window's samples (16-bit PCM at the store's rate).
- **Masks.** S4/MS3 take the store's binary masks. AVSS takes a semantic store's class-index maps (labelled
  with ``labeler.semantic=avss``: the class ids the labeler gave, its ``label2idx.json`` copied); from a
  binary store every foreground pixel gets class ``avss_class`` (default 1). ``label2idx=PATH`` copies that
  class list instead; without either, ``label2idx.json`` names the classes ``background, class_1 .. class_70``.
- **Pickles.** ``write_pickles=true`` (S4/MS3 only; never the default, because unpickling can run code)
  also writes ``audio_log_mel/...pkl``: a pickled float32 torch tensor ``[5, 1, 96, 64]`` of the exported
  wav's VGGish log-mel, the last example repeated as padding, as ``preprocess_s4.py`` writes them and the
  loaders' ``pickle.load(...).detach()`` reads them. The original S4/MS3 loaders read these pickles for
  every clip, so they need ``write_pickles=true``; codebases that compute log-mels from ``audio_wav/`` do not.
- **Marker.** ``out/PSEUDO_LABELS.json`` records that the masks are pseudo-labels, which labeler(s) and
  configuration made them (the store's ``pseudolabel_config*.yaml``, secrets scrubbed), the rules above and
  the skipped clips. Every exported clip goes into the split ``split`` (default ``train``).
- **Atomicity.** The export is written into ``.<out>.partial`` next to ``out`` and renamed into place at the
  end: a killed export leaves no half-written dataset (the next run starts over). ``out`` must not exist,
  be empty, or hold an earlier export (a ``PSEUDO_LABELS.json`` and dataset folders, nothing else), which is
  replaced.

Exit status 2 for a configuration error (missing store, unknown layout, an ``out`` folder that is not
empty and not an earlier export ...), with a message naming the key or path.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from openavs_st.data.synthetic import write_csv
from pseudolabel.cli import run_entry
from pseudolabel.components import config_number

MARKER = "PSEUDO_LABELS.json"
LAYOUTS = ("s4", "ms3", "avss")
DATASET_FOLDER = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench-semantic"}
CLIP_LENGTH_RULES = ("window", "skip")
S4_MS3_FRAMES = 5
AVSBENCH_FRAME_SIZE = 224  # preprocess_s4.py: cv2.resize(im, (224, 224))
UNKNOWN_CATEGORY = "unknown"


class ExportError(ValueError):
    """A problem with the export's inputs; the message names the key or path."""


@dataclass(frozen=True)
class Item:
    """One exported clip: frames ``[start, start + length)`` of a store record, under ``name``."""

    record: dict[str, Any]
    name: str
    start: int
    length: int
    label: str = ""  # AVSS subset: v1m | v2
    whole: bool = False  # the item is the whole clip (padding frames aside): its wav is copied as it is


# ------------------------------------------------------------------------------------------ planning


def usable_length(record: dict[str, Any]) -> int:
    """The record's frame count without trailing frames its ``frames_info`` marks invalid (padding)."""
    length = int(record["num_frames"])
    info = record.get("frames_info") or []
    if len(info) == length:
        while length and not info[length - 1].get("valid", True):
            length -= 1
    return length


def windows(length: int, layout: str, rule: str) -> list[tuple[int, int, str]]:
    """``(start, length, avss label)`` of the windows a clip of ``length`` frames is exported as."""
    if layout != "avss":
        if rule == "skip":
            return [(0, S4_MS3_FRAMES, "")] if length == S4_MS3_FRAMES else []
        return [(s, S4_MS3_FRAMES, "") for s in range(0, length - S4_MS3_FRAMES + 1, S4_MS3_FRAMES)]
    if rule == "skip":
        return [(0, length, "v2" if length == 10 else "v1m")] if length in (5, 10) else []
    out = [(s, 10, "v2") for s in range(0, length - 9, 10)]
    rest = length - 10 * len(out)
    if rest >= 5:
        out.append((length - rest, 5, "v1m"))
    return out


def plan(records: list[dict[str, Any]], layout: str, rule: str) -> tuple[list[Item], dict[str, str]]:
    """The items to export and the skipped clips with their reason."""
    items: list[Item] = []
    skipped: dict[str, str] = {}
    for rec in records:
        cid, length = rec["id"], usable_length(rec)
        if not rec.get("audio"):
            skipped[cid] = "no audio (the loaders need a wav)"
            continue
        spans = windows(length, layout, rule)
        if not spans:
            need = "5 or 10" if layout == "avss" else "5"
            why = f"exactly {need}" if rule == "skip" else "at least 5"
            skipped[cid] = f"{length} frames; layout {layout} needs {why} (clip_length={rule})"
            continue
        whole = len(spans) == 1 and spans[0][:2] == (0, length)
        for start, span, label in spans:
            items.append(Item(rec, cid if whole else f"{cid}@{start}", start, span, label, whole))
    dupes = sorted(name for name, count in Counter(it.name for it in items).items() if count > 1)
    if dupes:
        raise ExportError(f"exported clip names collide: {dupes[:5]} (a clip id equals another clip's window name)")
    return items, skipped


def safe_folder(name: Any) -> str:
    """A category as one folder name: ``unknown`` when empty, unsafe characters replaced by ``_``."""
    text = re.sub(r"[\\/\0:]+", "_", str(name or "").strip())
    return UNKNOWN_CATEGORY if text in ("", ".", "..") else text


def resize_target(resize: Any, layout: str) -> int | None:
    """The N of an N x N resize, or None to keep sizes."""
    if resize is None or str(resize).lower() in ("none", "null", "false", "0"):
        return None
    if str(resize).lower() == "layout":
        return None if layout == "avss" else AVSBENCH_FRAME_SIZE
    try:
        size = int(resize)
    except (TypeError, ValueError):
        raise ExportError(f"resize must be 'layout', 'none' or a size in pixels, got {resize!r}") from None
    if size < 1:
        raise ExportError(f"resize must be positive, got {resize!r}")
    return size


# ------------------------------------------------------------------------------------------- writing


def _save(path: Path, image: Image.Image, **kwargs: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _resized(frames: np.ndarray, masks: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    if size is None or frames.shape[1:3] == (size, size):
        return frames, masks
    import cv2

    frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in frames])
    masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks])
    return frames, masks


class LayoutWriter:
    """Writes items into one official layout under ``base`` (the dataset folder)."""

    def __init__(self, base: Path, store_root: Path, layout: str, *, split: str, size: int | None,
                 write_pickles: bool, jpeg_quality: int) -> None:
        self.base, self.store_root, self.layout, self.split = base, store_root, layout, split
        self.size, self.write_pickles, self.jpeg_quality = size, write_pickles, jpeg_quality
        self.rows: list[list[str]] = []

    # -- paths of one item
    def paths(self, item: Item, category: str) -> dict[str, Any]:
        n, split, name = item.length, self.split, item.name
        if self.layout == "s4":
            d = self.base / "s4_data"
            return {
                "frames": [d / "visual_frames" / split / category / name / f"{name}_{k}.png" for k in range(1, n + 1)],
                "masks": [d / "gt_masks" / split / category / name / f"{name}_{k}.png" for k in range(1, n + 1)],
                "wav": d / "audio_wav" / split / category / f"{name}.wav",
                "pkl": d / "audio_log_mel" / split / category / f"{name}.pkl",
            }
        if self.layout == "ms3":
            d = self.base / "ms3_data"
            return {
                "frames": [d / "visual_frames" / name / f"{name}.mp4_{k}.png" for k in range(1, n + 1)],
                "masks": [d / "gt_masks" / split / name / f"{name}_{k}.png" for k in range(1, n + 1)],
                "wav": d / "audio_wav" / split / f"{name}.wav",
                "pkl": d / "audio_log_mel" / split / f"{name}.pkl",
            }
        d = self.base / item.label / name
        return {
            "frames": [d / "frames" / f"{t}.jpg" for t in range(n)],
            "masks": [d / "labels_rgb" / f"{t}.png" for t in range(n)],
            "wav": d / "audio.wav",
            "pkl": None,
        }

    def write(self, item: Item, frames: np.ndarray, masks: np.ndarray) -> None:
        """Write one item: ``frames [L, H, W, 3]`` and ``masks [L, H, W]`` of its span (uint8: S4/MS3 binary,
        AVSS class ids)."""
        rec = item.record
        category = safe_folder((rec.get("meta") or {}).get("category"))
        paths = self.paths(item, category)
        frames, masks = _resized(frames, masks.astype(np.uint8), self.size)
        for t, (fp, mp) in enumerate(zip(paths["frames"], paths["masks"])):
            self._write_frame(fp, frames[t], rec["frames"][item.start + t])
            self._write_mask(mp, masks[t])
        wav = self._write_wav(item, paths["wav"])
        if self.write_pickles:
            self._write_pickle(paths["pkl"], wav)
        if self.layout == "s4":
            self.rows.append([item.name, "0", category, self.split])
        elif self.layout == "ms3":
            self.rows.append([item.name, self.split])
        else:
            objects = (rec.get("meta") or {}).get("category") or ""
            self.rows.append([item.name, item.label, self.split, rec["id"], str(objects)])

    def _write_frame(self, path: Path, frame: np.ndarray, stored: str) -> None:
        if self.layout != "avss":
            _save(path, Image.fromarray(frame), format="PNG")
        elif self.size is None and stored.lower().endswith(".jpg"):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.store_root / stored, path)  # the store's JPEG, byte for byte
        else:
            _save(path, Image.fromarray(frame), format="JPEG", quality=self.jpeg_quality)

    def _write_mask(self, path: Path, mask: np.ndarray) -> None:
        if self.layout == "s4":
            _save(path, Image.fromarray(mask > 0), format="PNG")  # mode "1": 1-bit
        elif self.layout == "ms3":
            _save(path, Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L"), format="PNG")
        else:
            from openavs_st.data.avsbench import avss_palette_image

            _save(path, avss_palette_image(mask), format="PNG")

    def _write_wav(self, item: Item, path: Path) -> Path:
        source = self.store_root / item.record["audio"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.whole:
            shutil.copyfile(source, path)
            return path
        import soundfile as sf

        from openavs_st.data.audio import load_audio

        wave, sr = load_audio(source)
        piece = wave[item.start * sr : (item.start + item.length) * sr]
        sf.write(path, np.clip(piece, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
        return path

    def _write_pickle(self, path: Path, wav: Path) -> None:
        import pickle

        import torch

        from openavs_st.data.audio import load_audio, log_mel_examples

        wave, sr = load_audio(wav)
        mel = log_mel_examples(wave, sr, num_frames=S4_MS3_FRAMES, pad="repeat")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:  # what the original loaders unpickle: a float32 torch tensor
            pickle.dump(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)), fh)

    def finish(self, label2idx: Path | None) -> None:
        """Write the metadata CSV (and, for AVSS, ``label2idx.json``: a copy of ``label2idx``)."""
        if self.layout == "s4":
            write_csv(self.base / "s4_meta_data.csv", ["name", "start", "category", "split"], self.rows)
        elif self.layout == "ms3":
            write_csv(self.base / "ms3_meta_data.csv", ["video_id", "split"], self.rows)
        else:
            write_csv(self.base / "metadata.csv", ["uid", "label", "split", "vid", "a_obj"], self.rows)
            target = self.base / "label2idx.json"
            if label2idx is not None:
                shutil.copyfile(label2idx, target)
            else:
                from openavs_st.data.avsbench import AVSS_NUM_CLASSES

                names = ["background", *(f"class_{i}" for i in range(1, AVSS_NUM_CLASSES))]
                target.write_text(json.dumps({n: i for i, n in enumerate(names)}, indent=1) + "\n")


# -------------------------------------------------------------------------------------------- export


def check_out(out: Path, store: Path) -> None:
    """``out`` must be absent, empty, or an earlier export, and outside the store."""
    if out.resolve() == store.resolve() or store.resolve() in out.resolve().parents:
        raise ExportError(f"out={out} is inside the store {store}; export to a folder of its own")
    if out.exists() and not out.is_dir():
        raise ExportError(f"out={out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ExportError(
            f"out={out} is not empty and holds no {MARKER}, so it is not an earlier export; "
            "choose an empty or new folder"
        )
    if out.is_dir() and (out / MARKER).is_file():  # replaced whole: it must hold nothing but the export
        extra = sorted(p.name for p in out.iterdir() if p.name != MARKER and p.name not in DATASET_FOLDER.values())
        if extra:
            raise ExportError(
                f"out={out} holds an earlier export but also {extra[:5]}, which a new export would delete "
                "(it replaces the folder); move them out or choose another folder"
            )


def labeler_configs(store: Path) -> dict[str, Any]:
    """The store's saved labeler configs (``pseudolabel_config*.yaml``) by file name, secrets scrubbed."""
    import yaml

    from openavs_st.data.redact import scrub_secrets, scrub_text

    found: dict[str, Any] = {}
    for path in sorted(store.glob("pseudolabel_config*.yaml")):
        text = scrub_text(path.read_text(encoding="utf-8"))
        try:
            found[path.name] = scrub_secrets(yaml.safe_load(text))
        except yaml.YAMLError:
            found[path.name] = text
    return found


def export_store(
    store: str | Path,
    out: str | Path,
    layout: str,
    *,
    split: str = "train",
    write_pickles: bool = False,
    resize: Any = "layout",
    clip_length: str = "window",
    avss_class: int = 1,
    label2idx: str | Path | None = None,
    jpeg_quality: int = 95,
    progress: bool = False,
) -> dict[str, Any]:
    """Export ``store`` to ``out`` in ``layout`` (module docstring); returns what the marker file holds.
    ``progress``: a progress bar on stderr."""
    from tqdm.auto import tqdm

    from openavs_st.data.avsbench import AVSS_NUM_CLASSES, SPLITS, read_label2idx
    from openavs_st.data.clip import ClipError
    from openavs_st.data.store import PseudoLabelStore

    if layout not in LAYOUTS:
        raise ExportError(f"layout={layout!r} is not an AVSBench layout; expected one of {list(LAYOUTS)}")
    if split not in SPLITS:
        raise ExportError(f"split={split!r}: expected one of {list(SPLITS)}")
    if clip_length not in CLIP_LENGTH_RULES:
        raise ExportError(f"clip_length={clip_length!r}: expected one of {list(CLIP_LENGTH_RULES)}")
    if not isinstance(write_pickles, bool):
        raise ExportError(f"write_pickles must be true or false, got {write_pickles!r}")
    if write_pickles and layout == "avss":
        raise ExportError("write_pickles=true: the AVSS layout has no audio_log_mel pickles (its loaders "
                          "compute log-mels from audio.wav); drop the option")
    if layout == "avss" and not 1 <= int(avss_class) < AVSS_NUM_CLASSES:
        raise ExportError(f"avss_class must be a class index in 1..{AVSS_NUM_CLASSES - 1}, got {avss_class!r}")
    given_names: list[str] | None = None
    if label2idx is not None:
        label2idx = Path(label2idx).expanduser()
        if not label2idx.is_file():
            raise ExportError(f"label2idx={label2idx}: no such file")
        try:
            given_names = read_label2idx(label2idx)
        except ClipError as exc:
            raise ExportError(f"label2idx={exc}") from None
        if len(given_names) != AVSS_NUM_CLASSES:
            raise ExportError(f"label2idx={label2idx}: expected {AVSS_NUM_CLASSES} classes, found {len(given_names)}")
    size = resize_target(resize, layout)
    store_root, out = Path(store).expanduser(), Path(out).expanduser()
    if not store_root.is_dir():
        raise ExportError(f"store={store_root}: no such folder (a pseudo-label store from python -m pseudolabel)")
    labels = PseudoLabelStore(store_root, compute_log_mel=False, semantic="auto" if layout == "avss" else False)
    semantic = labels.semantic
    if semantic:
        if len(labels.class_names or ()) != AVSS_NUM_CLASSES:
            raise ExportError(f"store={store_root}: its label2idx.json has {len(labels.class_names or ())} classes; "
                              f"the AVSS layout has {AVSS_NUM_CLASSES}")
        if given_names is not None and given_names != labels.class_names:
            differ = [i for i, (a, b) in enumerate(zip(given_names, labels.class_names)) if a != b]
            raise ExportError(
                f"label2idx={label2idx} names the classes differently from the store's label2idx.json (first at "
                f"id {differ[0]}: {given_names[differ[0]]!r} vs {labels.class_names[differ[0]]!r}); the exported "
                "class ids are the store's, so leave label2idx out to copy the store's file"
            )
        label2idx = label2idx or store_root / "label2idx.json"
    check_out(out, store_root)
    items, skipped = plan(labels.records, layout, clip_length)
    if not items:
        raise ExportError(f"store={store_root}: none of its {len(labels.records)} ok clips can be exported "
                          f"as {layout} ({len(skipped)} skipped: {list(skipped.values())[:3]})")

    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)  # what a killed export left
    base = partial / DATASET_FOLDER[layout]
    writer = LayoutWriter(base, store_root, layout, split=split, size=size, write_pickles=write_pickles,
                          jpeg_quality=int(jpeg_quality))
    index = {rec["id"]: i for i, rec in enumerate(labels.records)}
    loaded: tuple[str, Any] | None = None
    try:
        for item in tqdm(items, desc=f"exporting {layout}", unit="clip", disable=not progress):
            if loaded is None or loaded[0] != item.record["id"]:
                try:
                    loaded = (item.record["id"], labels[index[item.record["id"]]])
                except ClipError as exc:
                    raise ExportError(
                        f"store={store_root}: clip {item.record['id']!r} cannot be read ({exc}); nothing was written. "
                        "Relabel it (remove its line from the manifest and rerun the labeler on the same output) "
                        "or export from a store without it"
                    ) from None
            clip = loaded[1]
            span = slice(item.start, item.start + item.length)
            if semantic:
                values = clip.masks[span].astype(np.uint8)
            else:
                values = (clip.masks[span] > 0).astype(np.uint8) * np.uint8(avss_class if layout == "avss" else 1)
            writer.write(item, clip.frames[span], values)
        writer.finish(label2idx)
        marker = {
            "pseudo_labels": True,
            "note": "The masks of this dataset are pseudo-labels written by a labeler, not human annotations.",
            "layout": layout,
            "dataset_folder": DATASET_FOLDER[layout],
            "split": split,
            "store": str(store_root.resolve()),
            "labelers": sorted({str(r.get("labeler")) for r in labels.records}),
            "config_hashes": sorted({str(r.get("config_hash")) for r in labels.records}),
            "labeler_config": labeler_configs(store_root),
            "clips_in_store": len(labels.records),
            "clips_exported": len({it.record["id"] for it in items}),
            "items_exported": len(items),
            "skipped": skipped,
            "rules": {
                "clip_length": clip_length,
                "resize": size,
                "write_pickles": write_pickles,
                "avss_class": int(avss_class) if layout == "avss" and not semantic else None,
                "semantic": semantic,
                "category_fallback": UNKNOWN_CATEGORY,
            },
            "created_by": "python -m pseudolabel.export_avsbench",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _swap_into_place(partial, out)
    return marker


def _swap_into_place(partial: Path, out: Path) -> None:
    """Rename the finished export to ``out``, replacing an empty folder or an earlier export."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(out)


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    return run_entry("export_avsbench", argv, __doc__, run)


def run(cfg: dict[str, Any]) -> int:
    earlier = (Path(str(cfg["out"])).expanduser() / MARKER).is_file()
    marker = export_store(
        str(cfg["store"]),
        str(cfg["out"]),
        str(cfg["layout"]),
        split=str(cfg.get("split") or "train"),
        write_pickles=cfg.get("write_pickles", False),
        resize=cfg.get("resize", "layout"),
        clip_length=str(cfg.get("clip_length") or "window"),
        avss_class=config_number(cfg.get("avss_class"), "avss_class", default=1),
        label2idx=cfg.get("label2idx"),
        jpeg_quality=config_number(cfg.get("jpeg_quality"), "jpeg_quality", minimum=1, default=95),
        progress=bool(cfg.get("progress", True)),
    )
    out = Path(str(cfg["out"])).expanduser()
    if earlier:
        print(f"replaced the earlier export in {out}")
    print(f"exported {marker['clips_exported']} of {marker['clips_in_store']} clips "
          f"({marker['items_exported']} {marker['layout']} clips) to {out / marker['dataset_folder']}")
    if marker["layout"] in ("s4", "ms3") and not marker["rules"]["write_pickles"]:
        print("note: no audio_log_mel/*.pkl written; the original AVSBench S4/MS3 loaders read them for every "
              "clip (add write_pickles=true), loaders that compute log-mels from audio_wav/ do not")
    if marker["skipped"]:
        print(f"skipped {len(marker['skipped'])} clips (listed in {out / MARKER}), e.g.:")
        for cid, why in list(marker["skipped"].items())[:5]:
            print(f"  {cid}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
