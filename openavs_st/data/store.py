"""The pseudo-label store: the one on-disk format between the labelers and training.

A store is a folder any reader can open without this package::

    frames/<clip>/<t>.png        frames (t = 0..T-1; png or jpg)
    audio/<clip>.wav             16-bit mono audio
    audio/<clip>.logmel.npz      its VGGish log-mel, written by the first reader (a cache:
                                 openavs_st.data.logmel_cache)
    masks/<clip>/<t>.png         binary masks, 0/255
    classes/<clip>/<t>.png       semantic stores only: class-index maps (palette png, 0 = background)
    label2idx.json               semantic stores only: the class names, ``{name: index}`` as AVSBench-semantic
    manifest.jsonl               one JSON record per clip (written last: a clip without a record
                                 does not exist)
    manifest.shard-<i>-of-<n>.jsonl   the same, written by shard i of n; all manifests concatenate

The record is defined once, by :data:`RECORD_FIELDS`: ``id``, ``status`` (``"ok"`` or
``"failed: <reason>"``), ``labeler``, ``config_hash``; for an ok clip ``num_frames``, relative
``frames``/``masks``/``audio`` paths, ``mask_area`` and ``meta``; and what the labeler adds:
``frames_info`` (per-frame texts, prompts, boxes with scores, mask areas), ``timings``, ``llm`` (calls,
tokens, cost), ``failed_stage``. The writer checks every record it appends (:func:`check_record`) and the
readers every record they read. :func:`summarize` is the one summary of a set of records. Both live in
:mod:`openavs_st.data.store_record` and are re-exported here.

Every file is written to a temporary name and renamed into place, and the manifest line is
appended (one ``write`` + ``fsync``) only after the clip's files are complete, so a killed job
leaves no partial clip: a rerun skips the clips that have a record and redoes the rest. Sharding
(``shard=(i, n)``) splits clips by a stable hash of their id, so many processes can label disjoint
parts of one input into one store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

from openavs_st.data.avsbench import avss_palette_image, read_image, read_label2idx
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.redact import scrub_secrets, scrub_text
from openavs_st.data.store_lock import WriterLock
from openavs_st.data.store_record import (
    RECORD_FIELDS,
    STATUS_OK,
    SUMMARY_KEYS,
    RecordField,
    check_record,
    is_ok,
    labelled_mask_areas,
    summarize,
)

# The record and its summary (openavs_st.data.store_record) and the secret policy (openavs_st.data.redact)
# are part of this module's interface.
__all__ = [
    "DEFAULT_MAX_SIDE", "IMAGE_FORMATS", "LOG_MEL_TMP_TAG", "MANIFEST", "RECORD_FIELDS", "STATUS_OK", "SUMMARY_KEYS",
    "PseudoLabelStore", "RecordField", "StoreWriter", "atomic_write", "check_record", "config_hash", "is_ok",
    "labelled_mask_areas", "load_records", "manifest_files", "read_manifest", "remove_temporaries",
    "safe_clip_dir", "scrub_secrets", "shard_of", "summarize",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
LABEL2IDX = "label2idx.json"  # a semantic store's class names
IMAGE_FORMATS = ("png", "jpg")
DEFAULT_MAX_SIDE = 1024  # longest side of a stored frame (store.max_side)
# Record fields naming the clip and its files: written as they are.
_STRUCTURAL_KEYS = ("id", "frames", "masks", "audio")


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a labeler configuration (secrets excluded)."""
    blob = json.dumps(scrub_secrets(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def shard_of(clip_id: str, num_shards: int) -> int:
    """The shard (0..num_shards-1) a clip belongs to: a stable hash of its id."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest(), 16) % num_shards


def safe_clip_dir(clip_id: str) -> str:
    """``clip_id`` as a single safe path component (ids come from file names and CSVs)."""
    if not clip_id or clip_id in (".", "..") or "/" in clip_id or "\\" in clip_id or "\0" in clip_id:
        raise ClipError(f"clip id {clip_id!r} cannot be used as a folder name in the store")
    return clip_id


def atomic_write(path: Path, write: Any, tag: str = "") -> None:
    """Write a file via ``write(tmp_path)`` to a hidden temporary name in the same folder, then
    rename it into place. ``tag`` goes into the temporary name (a writer cleans up its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{tag}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


LOG_MEL_TMP_TAG = "logmel"  # the tag of the log-mel cache's temporary files (written by readers)
STALE_READER_TMP_S = 600.0  # a reader's temporary file this old was left by a killed reader


def remove_temporaries(root: Path, tag: str, *, min_age_s: float = 0.0) -> None:
    """Delete the temporary files tagged ``tag`` (:func:`atomic_write`) in a store's root and under frames/,
    masks/, classes/ and audio/ that are at least ``min_age_s`` old: what a killed writer (or reader) left."""
    pattern = f".*.{tag}.*.tmp"
    subs = ("frames", "masks", "classes", "audio")
    found = [*root.glob(pattern), *(p for sub in subs for p in (root / sub).rglob(pattern))]
    now = time.time()
    for tmp in found:
        try:
            if min_age_s and now - tmp.stat().st_mtime < min_age_s:
                continue
            tmp.unlink()
            log.info("removed %s, left by an interrupted write", tmp)
        except OSError:  # gone already, or a read-only store
            continue


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Records of one manifest file. A torn last line (a job killed mid-append) is skipped with a
    warning; a bad line elsewhere is an error naming the file and line."""
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):
                log.warning("%s: ignoring an incomplete last line (interrupted write)", path)
                continue
            raise ClipError(f"{path}: line {n} is not valid JSON ({exc})") from None
        if not isinstance(rec, dict) or "id" not in rec or "status" not in rec:
            raise ClipError(f"{path}: line {n} is not a clip record (needs 'id' and 'status')")
        check_record(rec, where=f"{path}: line {n}")
        records.append(rec)
    return records


def manifest_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("manifest*.jsonl") if p.is_file())


def load_records(root: Path) -> dict[str, dict[str, Any]]:
    """All clip records of a store by id (manifests concatenated). An ``ok`` record of a clip wins over a
    failure, whichever manifest holds it (a writer never redoes an ok clip, so an ok record is always the
    newer one: e.g. a clip that failed under ``shard=0/2`` and was redone by an unsharded rerun, whose
    ``manifest.jsonl`` sorts before ``manifest.shard-0-of-2.jsonl``); otherwise a later record wins."""
    records: dict[str, dict[str, Any]] = {}
    for path in manifest_files(root):
        for rec in read_manifest(path):
            earlier = records.get(rec["id"])
            if earlier is not None and earlier["status"] == STATUS_OK and rec["status"] != STATUS_OK:
                continue
            records[rec["id"]] = rec
    return records


class StoreWriter:
    """Writes labelled clips into a store; resumable and shardable.

    Args:
        root: store folder (created if needed).
        labeler: labeler name recorded with every clip.
        config: the labeler's configuration; its hash is recorded (secrets are never written).
        shard: ``(index, count)``: this writer only accepts clips with ``shard_of(id) == index``.
        image_format: ``png`` (lossless, default) or ``jpg`` for frames. Masks are always png.
        retry_failed: redo clips whose earlier record is a failure (default: keep them).
        max_side: frames (and their masks) whose longer side exceeds this are stored scaled down to it, the
            record's ``original_size`` giving their size before (``frames_info`` boxes are in those pixels);
            None stores every size as it is.
        class_names: a semantic store's classes in index order (0 = background), written to ``label2idx.json``;
            a store holds one class set, so names differing from an existing ``label2idx.json`` are an error.

    A writer holds the lock of its shard manifest (:mod:`openavs_st.data.store_lock`) from creation to
    :meth:`close` (or the end of a ``with`` block, or of the process): a second writer of the same shard
    gets a :class:`~openavs_st.data.store_lock.StoreLockedError` naming the holder. Every temporary file it
    writes carries its tag (:attr:`tmp_tag`); those a killed writer of the shard left are deleted when the
    next one opens the store.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        labeler: str,
        config: Mapping[str, Any] | None = None,
        shard: tuple[int, int] = (0, 1),
        image_format: str = "png",
        retry_failed: bool = False,
        max_side: int | None = DEFAULT_MAX_SIDE,
        class_names: Sequence[str] | None = None,
    ) -> None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.labeler = labeler
        self.config_hash = config_hash(config or {})
        self.shard = (index, count)
        self.image_format = image_format
        self.retry_failed = retry_failed
        if max_side is not None and max_side < 1:
            raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side!r}")
        self.max_side = max_side
        name = MANIFEST if count == 1 else f"manifest.shard-{index}-of-{count}.jsonl"
        self.manifest = self.root / name
        self._lock = WriterLock(self.manifest)  # before anything is touched
        self.tmp_tag = f"shard{index}of{count}"
        self._repair_torn_manifest()
        self._remove_stale_temporaries()
        self.records = load_records(self.root)
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        if self.class_names is not None:
            self._write_label2idx(self.class_names)

    def _write_label2idx(self, names: list[str]) -> None:
        path = self.root / LABEL2IDX
        if path.is_file():
            existing = read_label2idx(path)
            if existing != names:
                raise ValueError(
                    f"{path}: this store's classes ({len(existing)}: {', '.join(existing[:4])} ...) differ from the "
                    f"labeler's ({len(names)}: {', '.join(names[:4])} ...); label into a new store"
                )
            return
        if len(set(names)) != len(names) or not 2 <= len(names) <= 256:
            raise ValueError(f"class_names must be 2..256 distinct names (0 = background), got {len(names)}")
        text = json.dumps({name: i for i, name in enumerate(names)}, indent=1) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), self.tmp_tag)

    def _repair_torn_manifest(self) -> None:
        """Cut a torn last line (a job killed mid-append) so the next record starts cleanly."""
        if not self.manifest.is_file() or not self.manifest.stat().st_size:
            return
        data = self.manifest.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning("%s: removing an incomplete last line (interrupted write)", self.manifest)
        with self.manifest.open("rb+") as fh:
            fh.truncate(keep)

    def close(self) -> None:
        """Release the shard's lock (idempotent); the writer cannot write afterwards."""
        self._lock.release()

    def __enter__(self) -> StoreWriter:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_stale_temporaries(self) -> None:
        """Delete temporary files an earlier killed run of this shard left behind."""
        remove_temporaries(self.root, self.tmp_tag)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` (secrets scrubbed) to the file ``name`` in the store root, atomically and under this
        writer's temporary-file tag (the labeler's config and summary)."""
        path = self.root / name
        self._check_open()
        atomic_write(path, lambda tmp: tmp.write_text(scrub_text(text), encoding="utf-8"), self.tmp_tag)
        return path

    def _check_open(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"{self.manifest}: this StoreWriter was closed")

    def owns(self, clip_id: str) -> bool:
        """True if this shard is responsible for ``clip_id``."""
        return shard_of(clip_id, self.shard[1]) == self.shard[0]

    def is_done(self, clip_id: str) -> bool:
        """True if ``clip_id`` already has a record that a rerun should keep."""
        rec = self.records.get(clip_id)
        if rec is None:
            return False
        return rec["status"] == STATUS_OK or not self.retry_failed

    def pending(self, clip_ids: Sequence[str]) -> list[str]:
        """The ids of ``clip_ids`` this shard still has to label, in order."""
        todo = [c for c in clip_ids if self.owns(c) and not self.is_done(c)]
        self.counts["skipped"] += sum(1 for c in clip_ids if self.owns(c) and self.is_done(c))
        return todo

    def _append(self, record: dict[str, Any]) -> None:
        self._check_open()
        check_record(record, complete=True, where=str(self.manifest))
        # The clip's id and file paths come from file names, not secrets: never rewrite them (an id such as
        # "x-sk-12345678" looks like an API key to scrub_secrets and would no longer match its files).
        scrubbed = scrub_secrets({k: v for k, v in record.items() if k not in _STRUCTURAL_KEYS})
        scrubbed.update({k: record[k] for k in _STRUCTURAL_KEYS if k in record})
        line = json.dumps(scrubbed, sort_keys=True, default=_json_default) + "\n"
        with self.manifest.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record["id"]] = record

    def write(
        self, clip: Clip, masks: np.ndarray, record: Mapping[str, Any] | None = None, classes: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Store a labelled clip: its frames, audio, ``masks [T, H, W]`` (bool or 0/1), record and, in a
        semantic store (``class_names``), its ``classes [T, H, W]`` class-index maps."""
        self._check_open()
        cid = safe_clip_dir(clip.id)
        masks = np.asarray(masks) > 0
        if masks.shape != clip.frames.shape[:3]:
            raise ClipError(f"clip {clip.id!r}: masks {masks.shape} do not match frames {clip.frames.shape[:3]}")
        if classes is not None:
            classes = self._check_classes(clip, classes)
        frames, masks, capped = _cap_size(clip.frames, masks, self.max_side)
        if classes is not None and capped:
            classes = _resize_nearest(classes, frames.shape[1:3])
        frame_paths, mask_paths, class_paths = [], [], []
        for t in range(clip.num_frames):
            fp = f"frames/{cid}/{t}.{self.image_format}"
            mp = f"masks/{cid}/{t}.png"
            atomic_write(self.root / fp, _image_writer(frames[t], self.image_format), self.tmp_tag)
            atomic_write(self.root / mp, _image_writer(masks[t].astype(np.uint8) * 255, "png"), self.tmp_tag)
            frame_paths.append(fp)
            mask_paths.append(mp)
            if classes is not None:
                cp = f"classes/{cid}/{t}.png"
                atomic_write(self.root / cp, _palette_writer(classes[t]), self.tmp_tag)
                class_paths.append(cp)
        audio_path = None
        if clip.waveform is not None:
            audio_path = f"audio/{cid}.wav"
            wave, sr = clip.waveform, clip.sample_rate

            def write_wav(tmp: Path) -> None:
                sf.write(tmp, np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")

            atomic_write(self.root / audio_path, write_wav, self.tmp_tag)
        rec = {
            **dict(record or {}),
            "id": clip.id,
            "status": STATUS_OK,
            "labeler": self.labeler,
            "config_hash": self.config_hash,
            "num_frames": clip.num_frames,
            "frames": frame_paths,
            "masks": mask_paths,
            "audio": audio_path,
            "mask_area": [float(masks[t].mean()) for t in range(clip.num_frames)],
            "meta": {**clip.meta, **dict((record or {}).get("meta", {}))},
        }
        if classes is not None:
            rec["classes"] = class_paths
        if capped:
            rec["original_size"] = list(clip.size)
        self._append(rec)
        self.counts["ok"] += 1
        return rec

    def _check_classes(self, clip: Clip, classes: np.ndarray) -> np.ndarray:
        if self.class_names is None:
            raise ValueError(f"clip {clip.id!r}: class maps given to a store opened without class_names")
        classes = np.asarray(classes)
        if classes.shape != clip.frames.shape[:3] or not np.issubdtype(classes.dtype, np.integer):
            raise ClipError(
                f"clip {clip.id!r}: class maps must be integer [T, H, W] = {clip.frames.shape[:3]}, got "
                f"{classes.dtype} {classes.shape}"
            )
        if classes.size and (classes.min() < 0 or classes.max() >= len(self.class_names)):
            raise ClipError(f"clip {clip.id!r}: class ids must be in 0..{len(self.class_names) - 1}")
        return classes.astype(np.uint8)

    def write_failure(self, clip_id: str, reason: str, record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record that ``clip_id`` failed (the job goes on with the next clip)."""
        reason = " ".join(str(reason).split()) or "unknown error"
        rec = {
            **dict(record or {}),
            "id": clip_id,
            "status": f"failed: {reason}",
            "labeler": self.labeler,
            "config_hash": self.config_hash,
        }
        self._append(rec)
        self.counts["failed"] += 1
        return rec


def _cap_size(frames: np.ndarray, masks: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``frames [T, H, W, 3]`` and bool ``masks [T, H, W]`` scaled so that their longer side is ``max_side``
    (frames area-averaged, masks nearest), and whether they were; unchanged when they fit (or no cap)."""
    height, width = frames.shape[1:3]
    if not max_side or max(height, width) <= max_side:
        return frames, masks, False
    import cv2

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2: (width, height)
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return small, _resize_nearest(masks.astype(np.uint8), small.shape[1:3]) > 0, True


def _resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``maps [T, H, W]`` (uint8) resized to ``size`` (height, width) by nearest neighbour."""
    import cv2

    return np.stack([cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for m in maps])


def _palette_writer(class_map: np.ndarray) -> Any:
    """A class-index map as a palette png in AVSBench-semantic's colours (its pixel values are the ids)."""
    return lambda tmp: avss_palette_image(class_map).save(tmp, format="PNG")


def _image_writer(array: np.ndarray, fmt: str) -> Any:
    def write(tmp: Path) -> None:
        img = Image.fromarray(array)
        if fmt == "jpg":
            img.save(tmp, format="JPEG", quality=95)
        else:
            img.save(tmp, format="PNG")

    return write


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class PseudoLabelStore(Sequence[Clip]):
    """Reads a store as a sequence of :class:`Clip` (the successfully labelled clips, in id order).

    Clips of a store may differ in length (a folder of videos). ``window=N`` reads every clip as consecutive
    windows of N frames, so any store batches: a clip of T frames gives ``ceil(T / N)`` items, frames
    ``[0, N)``, ``[N, 2N)`` ...; the last one is padded to N frames (last frame repeated, ``frame_valid`` and
    ``has_label`` false, empty mask: :meth:`Clip.window`). An item's id is the clip's when the clip is one
    window, else ``<clip>@<first frame>``. Training reads a store this way (``data.num_frames``).

    The VGGish log-mel of a clip is computed from its wav once and kept next to it
    (``audio/<clip>.logmel.npz``, :mod:`openavs_st.data.logmel_cache`), so the epochs after the first
    read it instead of recomputing it.

    Every image of a clip must have the clip's size: a frame or mask that differs is a :class:`ClipError`
    naming the clip and the file.

    Args:
        root: store folder.
        num_frames: if given, only clips with this many frames.
        window: read clips as windows of this many frames (see above); None: whole clips.
        compute_log_mel: give clips their VGGish log-mels (pad "repeat"); False leaves ``log_mel`` None.
        cache_log_mel: read and write the log-mel cache (False: compute it on every access).
        semantic: clips' masks are the class-index maps of a semantic store (``classes``; names in
            :attr:`class_names`) instead of the binary masks; a store labelled without ``labeler.semantic`` is
            a :class:`ClipError` saying so. ``"auto"``: class maps when every ok clip has them, else masks.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        num_frames: int | None = None,
        window: int | None = None,
        compute_log_mel: bool = True,
        cache_log_mel: bool = True,
        semantic: bool | str = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ClipError(f"pseudo-label store not found: {self.root}")
        if not manifest_files(self.root):
            raise ClipError(f"{self.root}: no manifest*.jsonl, so this is not a pseudo-label store")
        if window is not None and (int(window) != window or window < 1):
            raise ValueError(f"window must be a positive number of frames or None, got {window!r}")
        remove_temporaries(self.root, LOG_MEL_TMP_TAG, min_age_s=STALE_READER_TMP_S)
        self.all_records = load_records(self.root)
        ok = [r for r in self.all_records.values() if r["status"] == STATUS_OK]
        for rec in ok:
            check_record(rec, complete=True, where=str(self.root))
        if num_frames is not None:
            ok = [r for r in ok if r.get("num_frames") == num_frames]
        self.records = sorted(ok, key=lambda r: r["id"])
        self.class_names = read_label2idx(self.root / LABEL2IDX) if (self.root / LABEL2IDX).is_file() else None
        missing = self.class_maps_missing()
        if semantic == "auto":
            semantic = missing is None and bool(self.records)
        elif not isinstance(semantic, bool):
            raise ValueError(f"semantic must be true, false or 'auto', got {semantic!r}")
        self.semantic = semantic
        if self.semantic and missing is not None:
            raise ClipError(missing)
        self.window = None if window is None else int(window)
        # (record index, first frame) of every item
        self.items = [
            (i, start) for i, rec in enumerate(self.records)
            for start in (range(0, rec["num_frames"], self.window) if self.window else [0])
        ]
        self.ids = [
            rec["id"] if self.window is None or rec["num_frames"] <= self.window else f"{rec['id']}@{start}"
            for rec, start in ((self.records[i], start) for i, start in self.items)
        ]
        self.compute_log_mel = compute_log_mel
        self.cache_log_mel = cache_log_mel
        self.log_mel_cache_hits = 0  # accesses served from the cache (in this process)

    def class_maps_missing(self) -> str | None:
        """Why a semantic read of this store is impossible (no ``label2idx.json``, or ok clips with binary
        masks only), naming the fix; None when every ok clip has class maps."""
        plain = [r["id"] for r in self.records if "classes" not in r]
        if self.class_names is not None and not plain:
            return None
        what = f"clips {plain[:3]} have" if plain else f"it has no {LABEL2IDX}, so it"
        return (
            f"{self.root}: a semantic read needs class maps, but {what} only binary masks; label the clips with "
            "labeler.semantic=avss (or a label2idx.json) into a new store"
        )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self)):
            yield self[i]

    def _span(self, index: int) -> tuple[dict[str, Any], int, int]:
        """(record, first frame, end frame) of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        rec_index, start = self.items[index]
        rec = self.records[rec_index]
        stop = rec["num_frames"] if self.window is None else min(rec["num_frames"], start + self.window)
        return rec, start, stop

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        rec, start, stop = self._span(index)
        frames = self._read_images(rec, "frames", start, stop)
        if self.semantic:
            masks = self._read_images(rec, "classes", start, stop, size=frames.shape[1:3])
        else:
            masks = (self._read_images(rec, "masks", start, stop, size=frames.shape[1:3]) > 127).astype(np.uint8)
        wave = sr = mel = None
        if rec.get("audio"):
            from openavs_st.data.audio import load_audio

            wave, sr = load_audio(self.root / rec["audio"])
            if self.compute_log_mel:
                mel = self._log_mel(rec, wave, sr)[start:stop]
            wave = wave[start * sr : stop * sr]
        meta = {**rec.get("meta", {}), "labeler": rec.get("labeler"), "config_hash": rec.get("config_hash")}
        clip = Clip(self.ids[index], frames, wave, sr, mel, masks, meta=meta)
        return clip if self.window is None or clip.num_frames == self.window else clip.window(0, self.window)

    def _read_images(
        self, record: Mapping[str, Any], key: str, start: int, stop: int, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Images ``start..stop-1`` of a record's ``frames`` (RGB), ``masks`` (grey) or ``classes`` (palette
        indices), all of ``size`` (default: the first one's); a :class:`ClipError` naming the clip and the file
        otherwise."""
        images = []
        for rel in record[key][start:stop]:
            image = read_image(self.root / rel, {"frames": "RGB", "masks": "L", "classes": "P"}[key])
            size = size or image.shape[:2]
            if image.shape[:2] != tuple(size):
                raise ClipError(
                    f"{self.root}: clip {record['id']!r}: {key[:-1]} {rel} is {image.shape[1]}x{image.shape[0]} "
                    f"(width x height) but the clip's frames are {size[1]}x{size[0]}; relabel the clip or remove it "
                    "from the manifest"
                )
            images.append(image)
        return np.stack(images)

    def read_masks(self, record: Mapping[str, Any]) -> np.ndarray:
        """``[T, H, W]`` uint8 {0, 1} masks of an ok record."""
        return (self._read_images(record, "masks", 0, record["num_frames"]) > 127).astype(np.uint8)

    def categories(self) -> list[str | None]:
        """Category of every item, from its clip record's ``meta`` (``None`` where unknown)."""
        return [self.records[i].get("meta", {}).get("category") for i, _ in self.items]

    def frame_counts(self) -> list[int]:
        """The distinct frame counts of the items, ascending (one value: they batch)."""
        return sorted({self.window} if self.window and self.items else {r["num_frames"] for r in self.records})

    def log_mel_of(self, index: int) -> np.ndarray:
        """The ``[T, 1, 96, 64]`` log-mel of item ``index`` without decoding its images."""
        from openavs_st.data.audio import pad_examples

        rec, start, stop = self._span(index)
        if not rec.get("audio"):
            raise ClipError(f"{self.root}: clip {rec['id']!r} has no audio")
        mel = self._log_mel(rec)[start:stop]
        return mel if self.window is None else pad_examples(mel, self.window, pad="repeat")

    def _log_mel(self, rec: Mapping[str, Any], wave: np.ndarray | None = None, sr: int | None = None) -> np.ndarray:
        from openavs_st.data.logmel_cache import cached_log_mel

        mel, hit = cached_log_mel(
            self.root / rec["audio"], int(rec["num_frames"]), wave, sr, use_cache=self.cache_log_mel
        )
        self.log_mel_cache_hits += int(hit)
        return mel

    def summary(self) -> dict[str, Any]:
        """:func:`summarize` over every record of the store (all manifests, failures included)."""
        return summarize(self.all_records.values())
