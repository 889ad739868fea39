"""The manifest record of a pseudo-label store and the store's summary (:mod:`openavs_st.data.store`).

:data:`RECORD_FIELDS` defines the record once: the writer checks every record it appends and the readers
every record they read (:func:`check_record`). :func:`summarize` is the one summary of a set of records,
with the keys of :data:`SUMMARY_KEYS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openavs_st.data.clip import ClipError

STATUS_OK = "ok"


# --- the record ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordField:
    """One field of a manifest record: its JSON types and when it is required (``always``; ``written``: in
    every record a :class:`StoreWriter` writes; ``ok``: in every ok record; ``optional``)."""

    name: str
    types: tuple[type, ...]
    required: str
    doc: str


# The manifest record, ok and failed: the one schema the writer writes and the readers check. A labeler may
# add fields of its own (e.g. ``mode``); these are the fields the store and the summary rely on.
RECORD_FIELDS = (
    RecordField("id", (str,), "always", "the clip id; also its folder name under frames/ and masks/"),
    RecordField("status", (str,), "always", '"ok", or "failed: <reason>"'),
    RecordField("labeler", (str,), "written", "the labeler's name"),
    RecordField("config_hash", (str,), "written", "hash of the labeler's configuration, secrets excluded"),
    RecordField("num_frames", (int,), "ok", "T, the clip's frame count"),
    RecordField("frames", (list,), "ok", "T frame paths (png or jpg), relative to the store"),
    RecordField("masks", (list,), "ok", "T mask paths (png, 0/255), relative to the store"),
    RecordField("audio", (str, type(None)), "ok", "the 16-bit wav, relative to the store; null without audio"),
    RecordField("mask_area", (list,), "ok", "foreground fraction of each of the T masks"),
    RecordField("meta", (dict,), "ok", "the clip's metadata (category, source, pairing ...) and the labeler's"),
    RecordField(
        "classes", (list,), "optional",
        "semantic stores: T class-index map paths (palette png, 0 = background; class names in the store's "
        "label2idx.json)",
    ),
    RecordField("frames_info", (list,), "optional", "per frame: valid, texts, phrases, boxes, scores, mask_area"),
    RecordField("timings", (dict,), "optional", "seconds spent per stage"),
    RecordField("llm", (dict, type(None)), "optional", "LLM use: calls, cache_hits, prompt/completion_tokens, cost_usd"),
    RecordField("failed_stage", (str,), "optional", "where a failed clip failed (load/describe, llm, write ...)"),
    RecordField(
        "original_size", (list,), "optional",
        "[H, W] of frames the store scaled down to store.max_side (frames_info boxes are in these pixels)",
    ),
)
_FIELDS = {f.name: f for f in RECORD_FIELDS}
_PER_FRAME = ("frames", "masks", "mask_area")


def check_record(record: Any, *, complete: bool = False, where: str = "") -> None:
    """Check a manifest record against :data:`RECORD_FIELDS`: a :class:`ClipError` naming ``where`` and the
    field otherwise. Every record needs ``id`` and ``status`` and every field present must have its type;
    ``complete`` also requires the ``written`` fields and, in an ok record, the ``ok`` fields with one entry
    per frame (what the writer writes and the reader reads)."""
    where = f"{where}: " if where else ""
    if not isinstance(record, Mapping):
        raise ClipError(f"{where}a clip record must be a JSON object, got {type(record).__name__}")
    required = {"always"}
    if complete:
        required.add("written")
        if record.get("status") == STATUS_OK:
            required.add("ok")
    for field in RECORD_FIELDS:
        if field.name not in record:
            if field.required in required:
                raise ClipError(f"{where}the clip record has no {field.name!r} ({field.doc})")
            continue
        value = record[field.name]
        if not isinstance(value, field.types) or (isinstance(value, bool) and bool not in field.types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in field.types)
            raise ClipError(f"{where}{field.name!r} of clip {record.get('id')!r} must be {names}, got {value!r:.80}")
    if complete and record["status"] == STATUS_OK:
        bad = [name for name in (*_PER_FRAME, "classes") if name in record and len(record[name]) != record["num_frames"]]
        if bad:
            raise ClipError(f"{where}clip {record['id']!r} has num_frames={record['num_frames']} but {bad} differ in length")


# The store's summary: these keys, in this order, computed only by :func:`summarize`.
SUMMARY_KEYS = (
    "clips_ok",
    "clips_failed",
    "frames",
    "empty_mask_frames",
    "mean_mask_area",
    "llm_calls",
    "llm_cache_hits",
    "llm_tokens",
    "llm_cost_usd",
    "llm_fallback_clips",
)


def is_ok(record: Mapping[str, Any]) -> bool:
    """True for a record of a labelled clip (``status == "ok"``), False for a failure."""
    return record.get("status") == STATUS_OK


def labelled_mask_areas(record: Mapping[str, Any]) -> list[float]:
    """Mask areas of a record's labelled frames: its ``frames_info`` entries that are ``valid`` (default
    true; AVSS padding frames are not), or, for a record without ``frames_info``, its ``mask_area``."""
    info = record.get("frames_info")
    if info is None:
        return [float(a) for a in record.get("mask_area") or []]
    return [float(f["mask_area"]) for f in info if f.get("valid", True)]


def llm_fell_back(record: Mapping[str, Any]) -> bool:
    """True for an ok record whose every frame asked of the LLM fell back to the untranslated descriptions
    (the LLM's answers were unusable): ``llm.fallback_frames`` covers the frames with an ``llm_status`` in
    ``frames_info`` (or, in a record without it, every labelled frame)."""
    fallback = set((record.get("llm") or {}).get("fallback_frames") or [])
    if not fallback or not is_ok(record):
        return False
    asked = [f for f in record.get("frames_info") or [] if f.get("valid", True) and "llm_status" in f]
    return len(fallback) >= (len(asked) or len(labelled_mask_areas(record)))


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of a set of manifest records (one per clip, ok and failed), with the keys of
    :data:`SUMMARY_KEYS`:

    - ``clips_ok`` / ``clips_failed``: records by status;
    - ``frames``: labelled frames of the ok records (see :func:`labelled_mask_areas`);
    - ``empty_mask_frames``: those of them whose mask is empty; ``mean_mask_area``: their mean mask area
      (0.0 without frames);
    - ``llm_calls``, ``llm_cache_hits``, ``llm_tokens`` (prompt + completion), ``llm_cost_usd``: sums over
      the ``llm`` entries of *every* record, failed ones included (the tokens were spent);
    - ``llm_fallback_clips``: ok clips labelled from the untranslated descriptions alone, every frame's LLM
      answer having been unusable (:func:`llm_fell_back`).
    """
    clips_ok = clips_failed = 0
    areas: list[float] = []
    calls = hits = tokens = fell_back = 0
    cost = 0.0
    for rec in records:
        if is_ok(rec):
            clips_ok += 1
            areas.extend(labelled_mask_areas(rec))
            fell_back += llm_fell_back(rec)
        else:
            clips_failed += 1
        llm = rec.get("llm") or {}
        calls += int(llm.get("calls", 0))
        hits += int(llm.get("cache_hits", 0))
        tokens += int(llm.get("prompt_tokens", 0)) + int(llm.get("completion_tokens", 0))
        cost += float(llm.get("cost_usd", 0.0))
    return {
        "clips_ok": clips_ok,
        "clips_failed": clips_failed,
        "frames": len(areas),
        "empty_mask_frames": sum(1 for a in areas if a == 0),
        "mean_mask_area": float(np.mean(areas)) if areas else 0.0,
        "llm_calls": calls,
        "llm_cache_hits": hits,
        "llm_tokens": tokens,
        "llm_cost_usd": cost,
        "llm_fallback_clips": fell_back,
    }
