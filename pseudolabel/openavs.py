"""The OpenAVS training-free labeler: audio (and image) descriptions -> object phrases -> boxes -> one binary
mask per frame, written clip by clip into the pseudo-label store.

Per clip (OpenAVS, arXiv 2505.01448, Sec. 3 and Appendix F), for every one-second frame ``t``:

1. each audio-language model (ALM) describes second ``t`` of the audio once per prompt
   (:mod:`pseudolabel.alm`); optionally a vision-language model (VLM) describes frame ``t``
   (:mod:`pseudolabel.vlm`);
2. the LLM translator turns the descriptions into object phrases per frame with the configured strategy
   (:mod:`pseudolabel.llm`; ``none`` passes the raw ALM text through); an answer meaning "nothing
   sounds" gives no phrase;
3. GroundingDINO finds boxes for the phrases (box and text threshold 0.25), SAM / SAM 2 turns each box
   into a mask and the per-box masks are OR-ed (:mod:`pseudolabel.vfm`); no phrase or no box gives an
   empty mask.

The ``clip_label`` mode skips steps 1-2 and queries the grounder with the clip's class names (its
weak label: the paper's upper bound for weak supervision).

:class:`OpenAVSLabeler` does the work for one clip or a batch of clips; :func:`label_clips` runs it over a
:class:`~pseudolabel.inputs.ClipSource` into a :class:`~openavs_st.data.store.StoreWriter` with the stages
overlapped: a describer thread (clip loading + ALM/VLM) feeds a bounded queue, LLM requests are in flight
on an asyncio loop in another thread (at most ``llm.concurrency`` at once), and the main thread grounds
and segments the frames of several clips per batch, then writes them. A clip that fails anywhere
(corrupt video, unreadable audio, a model or LLM error) is recorded as failed with its reason and the
job goes on; the models are loaded before the first clip, so a wrong model path stops the job instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openavs_st.data.clip import Clip
from openavs_st.data.store import StoreWriter, load_records, scrub_secrets
from pseudolabel import alm as alm_pkg
from pseudolabel import llm as llm_pkg
from pseudolabel import vfm
from pseudolabel import vlm as vlm_pkg
from pseudolabel.inputs import ClipSource

log = logging.getLogger(__name__)

MODES = ("openavs", "clip_label")
# Keys each LLM backend accepts (ChatTranslator's plus the backend's own); keys of another backend are
# dropped, so `llm.backend=hf` works on a preset written for `openai`.
_CHAT_KEYS = {
    "model", "strategy", "prompt_file", "model_scope", "temperature", "seed", "max_tokens", "cache_dir",
    "concurrency", "prices", "max_phrase_words",
}
_LLM_KEYS = {
    "openai": _CHAT_KEYS
    | {"base_url", "api_key_env", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s", "max_retry_after_s"},
    "hf": _CHAT_KEYS | {"device", "dtype"},
    "none": set(),
}
_ALL_LLM_KEYS = set().union(*_LLM_KEYS.values())


class LabelerConfigError(ValueError):
    """The labeler configuration is inconsistent; the message names the key to change."""


# --- building from a config --------------------------------------------------------------------------


def _component_kwargs(cfg: Mapping[str, Any], device: str | None, dtype: str | None, what: str) -> tuple[str, dict]:
    cfg = dict(cfg)
    backend = cfg.pop("backend", None)
    if not backend:
        raise LabelerConfigError(f"{what}.backend is not set")
    if device is not None:
        cfg.setdefault("device", device)
    if dtype is not None:
        cfg.setdefault("dtype", dtype)
    for key in ("device", "dtype"):
        if cfg.get(key) is None:
            cfg.pop(key, None)
    if cfg.get("model") is None:
        cfg.pop("model", None)  # the backend's default Hub id
    return str(backend), cfg


def named_components(node: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """``alm`` as (name, config) pairs: a mapping name -> config (null entries dropped, so
    ``labeler.alm.flamingo=null`` removes one), a list of configs, or one config with a ``backend``."""
    if not node:
        return []
    if isinstance(node, Mapping):
        if "backend" in node:
            return [("0", node)]
        return [(str(key), value) for key, value in node.items() if value]
    return [(str(index), value) for index, value in enumerate(node) if value]


def build_translator(cfg: Mapping[str, Any] | None, device: str | None = None, dtype: str | None = None) -> Any:
    """The LLM translator of an ``llm`` config node (None or ``backend: none``: the passthrough)."""
    if cfg is None:
        return llm_pkg.create("none")
    cfg = dict(cfg)
    backend = str(cfg.pop("backend", "none"))
    if backend not in _LLM_KEYS:
        return llm_pkg.create(backend, **{k: v for k, v in cfg.items() if v is not None})  # a plug-in backend
    if backend == "hf":
        if device is not None:
            cfg.setdefault("device", device)
        if dtype is not None:
            cfg.setdefault("dtype", dtype)
    kwargs = {k: v for k, v in cfg.items() if k in _LLM_KEYS[backend] and v is not None}
    unknown = sorted(set(cfg) - _ALL_LLM_KEYS)
    if unknown:
        raise LabelerConfigError(f"unknown llm option(s) {unknown} for llm.backend={backend}")
    return llm_pkg.create(backend, **kwargs)


def _load_now(component: Any) -> None:
    """Load a component's model now (components load lazily; a wrong path should stop the job up front)."""
    chat = getattr(component, "chat", None)
    if chat is not None and hasattr(chat, "lazy"):
        chat.lazy.get()
        return
    lazy = getattr(component, "lazy", None)
    if lazy is not None and hasattr(lazy, "get"):
        lazy.get()
        return
    model = getattr(component, "model", None)
    if model is not None and hasattr(model, "get"):
        model.get()
        return
    if hasattr(component, "predictor"):
        _ = component.predictor  # sam2_official


# --- per-clip work -----------------------------------------------------------------------------------


@dataclass
class Described:
    """A clip after loading and ALM/VLM description, waiting for its phrases."""

    clip: Clip
    valid: list[int]  # the frames that are labeled (AVSS padding frames are not)
    audio_texts: list[list[str]]  # per valid frame: every ALM x prompt text, in a fixed order
    image_texts: list[list[str]]  # per valid frame: every VLM prompt text
    timings: dict[str, float]
    phrases: list[list[str]] | None = None  # per valid frame, once known
    translation: Any = None  # llm TranslationRecord
    future: concurrent.futures.Future | None = None

    @property
    def num_frames(self) -> int:
        return len(self.valid)

    def descriptions(self) -> llm_pkg.ClipDescriptions:
        return llm_pkg.ClipDescriptions.from_lists(
            self.clip.id, self.audio_texts, self.image_texts if any(self.image_texts) else None
        )


@dataclass
class Failed:
    """A clip that failed before grounding."""

    clip_id: str
    reason: str
    stage: str
    timings: dict[str, float] = field(default_factory=dict)


def failure_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OpenAVSLabeler:
    """Composes the components of one labeler preset.

    Args:
        name: labeler name (recorded in the store).
        alms: audio describers (OpenAVS-Large: several); each contributes one text per prompt per frame.
        vlm: optional image describer.
        translator: LLM translator (``llm.create(...)``); None means the passthrough.
        grounder: text -> boxes.
        segmenter: boxes -> masks.
        mode: ``openavs`` or ``clip_label`` (class names as the phrases; no ALM, VLM or LLM).
        class_prompts: ``clip_label``: class name -> phrase (or list of phrases); other names are used
            with ``_`` replaced by a space.
    """

    def __init__(
        self,
        *,
        name: str,
        alms: Sequence[Any] = (),
        vlm: Any = None,
        translator: Any = None,
        grounder: vfm.Grounder,
        segmenter: vfm.Segmenter,
        mode: str = "openavs",
        class_prompts: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise LabelerConfigError(f"labeler.mode must be one of {MODES}, got {mode!r}")
        if mode == "openavs" and not alms:
            raise LabelerConfigError("labeler.alm is empty: the openavs mode needs at least one audio describer")
        self.name = name
        self.mode = mode
        self.alms = list(alms) if mode == "openavs" else []
        self.vlm = vlm if mode == "openavs" else None
        self.translator = (translator or llm_pkg.create("none")) if mode == "openavs" else None
        strategy = getattr(getattr(self.translator, "strategy", None), "name", None)
        if strategy == "model" and self.vlm is None:
            raise LabelerConfigError("llm.strategy=model reasons over image and audio descriptions: set labeler.vlm")
        self.grounder = grounder
        self.segmenter = segmenter
        self.class_prompts = dict(class_prompts or {})

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, device: str | None = None, dtype: str | None = None) -> OpenAVSLabeler:
        """Build from a labeler config node (``configs/pseudolabel/<preset>.yaml``, resolved to plain dicts)."""
        mode = str(cfg.get("mode", "openavs"))
        alms: list[Any] = []
        vlm = translator = None
        if mode == "openavs":
            for key, alm_cfg in named_components(cfg.get("alm")):
                backend, kwargs = _component_kwargs(alm_cfg, device, dtype, f"labeler.alm.{key}")
                alms.append(alm_pkg.create_alm(backend, **kwargs))
            if cfg.get("vlm"):
                backend, kwargs = _component_kwargs(cfg["vlm"], device, dtype, "labeler.vlm")
                vlm = vlm_pkg.create_vlm(backend, **kwargs)
            translator = build_translator(cfg.get("llm"), device, dtype)
        grounder_backend, grounder_kwargs = _component_kwargs(cfg["grounder"], device, dtype, "labeler.grounder")
        segmenter_backend, segmenter_kwargs = _component_kwargs(cfg["segmenter"], device, dtype, "labeler.segmenter")
        return cls(
            name=str(cfg.get("name", "openavs")),
            alms=alms,
            vlm=vlm,
            translator=translator,
            grounder=vfm.create_grounder(grounder_backend, **grounder_kwargs),
            segmenter=vfm.create_segmenter(segmenter_backend, **segmenter_kwargs),
            mode=mode,
            class_prompts=cfg.get("class_prompts"),
        )

    # -- setup

    def load_models(self) -> None:
        """Load every model now (normally they load on first use)."""
        for component in [*self.alms, self.vlm, self.grounder, self.segmenter]:
            if component is not None:
                _load_now(component)

    def provenance(self) -> dict[str, Any]:
        """What produced the labels (recorded once per run in the summary)."""
        return {
            "mode": self.mode,
            "alm": [d.provenance() for d in self.alms],
            "vlm": None if self.vlm is None else self.vlm.provenance(),
            "llm": None if self.translator is None else repr(self.translator),
            "grounder": repr(self.grounder),
            "segmenter": repr(self.segmenter),
        }

    # -- stage 1: load + describe

    def describe(self, source: ClipSource, clip_id: str) -> Described:
        """Load a clip and describe its frames (ALMs, VLM), or read its class names (``clip_label``)."""
        start = time.perf_counter()
        clip = source.load(clip_id)
        timings = {"load_s": time.perf_counter() - start}
        valid = [t for t in range(clip.num_frames) if clip.frame_valid[t]]
        if not valid:
            raise ValueError(f"clip {clip_id!r} has no valid frame")
        if self.mode == "clip_label":
            phrases = self.class_phrases(source.class_names(clip))
            return Described(clip, valid, [[] for _ in valid], [[] for _ in valid], timings, [list(phrases)] * len(valid))
        if clip.waveform is None:
            raise ValueError(f"clip {clip_id!r} has no waveform to describe (read it with audio='wav')")
        segments = alm_pkg.split_seconds(clip.waveform, clip.sample_rate, clip.num_frames)
        segments = [segments[t] for t in valid]
        audio_texts: list[list[str]] = [[] for _ in valid]
        start = time.perf_counter()
        for describer in self.alms:
            for row, texts in zip(audio_texts, describer.describe(segments, clip.sample_rate)):
                row.extend(texts)
        timings["alm_s"] = time.perf_counter() - start
        image_texts: list[list[str]] = [[] for _ in valid]
        if self.vlm is not None:
            start = time.perf_counter()
            image_texts = [list(texts) for texts in self.vlm.describe([clip.frames[t] for t in valid])]
            timings["vlm_s"] = time.perf_counter() - start
        return Described(clip, valid, audio_texts, image_texts, timings)

    def class_phrases(self, names: Sequence[str]) -> list[str]:
        phrases: list[str] = []
        for name in names:
            mapped = self.class_prompts.get(name, str(name).replace("_", " "))
            for phrase in [mapped] if isinstance(mapped, str) else list(mapped):
                if phrase not in phrases:
                    phrases.append(phrase)
        return phrases

    # -- stage 2: translate

    @property
    def needs_llm(self) -> bool:
        return self.translator is not None

    def apply_translation(self, item: Described, translation: Any) -> None:
        item.phrases = [list(p) for p in translation.phrases]
        item.translation = translation.record
        item.timings["llm_s"] = float(translation.record.latency_s)

    # -- stage 3: ground + segment (a batch of clips)

    def segment(self, items: Sequence[Described]) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
        """Masks ``[T, H, W]`` bool and per-frame info for each described, translated clip."""
        images = [item.clip.frames[t] for item in items for t in item.valid]
        phrases = [p for item in items for p in item.phrases]
        total = max(1, len(images))
        start = time.perf_counter()
        detections = self.grounder.detect(images, phrases)
        ground_s = time.perf_counter() - start
        start = time.perf_counter()
        box_masks = self.segmenter.segment_boxes(images, [d.boxes for d in detections])
        segment_s = time.perf_counter() - start
        results = []
        offset = 0
        for item in items:
            clip = item.clip
            masks = np.zeros(clip.frames.shape[:3], dtype=bool)
            info: list[dict[str, Any]] = []
            status = list(item.translation.frame_status) if item.translation is not None else None
            valid_index = {t: i for i, t in enumerate(item.valid)}
            for t in range(clip.num_frames):
                if t not in valid_index:
                    info.append({"t": t, "valid": False, "phrases": [], "boxes": [], "box_scores": [], "mask_area": 0.0})
                    continue
                i = valid_index[t]
                det, bm = detections[offset + i], box_masks[offset + i]
                masks[t] = bm.union()
                frame: dict[str, Any] = {
                    "t": t,
                    "valid": True,
                    "audio_texts": item.audio_texts[i],
                    "image_texts": item.image_texts[i],
                    "phrases": item.phrases[i],
                    "boxes": np.round(det.boxes.astype(np.float64), 2).tolist(),
                    "box_scores": np.round(det.scores.astype(np.float64), 4).tolist(),
                    "box_labels": list(det.labels),
                    "mask_scores": np.round(bm.scores.astype(np.float64), 4).tolist(),
                    "mask_area": float(masks[t].mean()),
                }
                if status is not None:
                    frame["llm_status"] = status[i]
                info.append(frame)
            share = len(item.valid) / total
            item.timings["ground_s"] = ground_s * share
            item.timings["segment_s"] = segment_s * share
            offset += len(item.valid)
            results.append((masks, info))
        return results

    def record(self, item: Described, frames_info: list[dict[str, Any]]) -> dict[str, Any]:
        """The manifest record of a labeled clip (the store adds paths, status, mask areas, meta)."""
        rec: dict[str, Any] = {
            "mode": self.mode,
            "frames_info": frames_info,
            "timings": {k: round(v, 4) for k, v in item.timings.items()},
        }
        if item.translation is not None:
            rec["llm"] = llm_summary(item.translation)
        return rec


def llm_summary(record: Any) -> dict[str, Any]:
    """The manifest's ``llm`` entry from a :class:`~pseudolabel.llm.TranslationRecord`.

    ``requests`` counts the chat requests of the clip, ``cache_hits`` those served from the disk cache
    (exact per request, so a partly cached clip counts its hits), ``calls`` those sent to the endpoint.
    """
    requests = len(record.raw_responses)
    hits = int(record.cache_hits)
    return {
        "backend": record.backend,
        "model": record.model,
        "strategy": record.strategy,
        "prompt_sha256": record.prompt_sha256,
        "requests": requests,
        "calls": requests - hits,
        "cache_hits": hits,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": record.cost_usd if record.cost_usd is not None else 0.0,
        "cost_known": record.cost_usd is not None,
        "raw_responses": list(record.raw_responses),
        "fallback_frames": list(record.fallback_frames),
        "parse_notes": list(record.parse_notes),
        "latency_s": round(float(record.latency_s), 4),
    }


# --- the LLM stage on its own event loop ---------------------------------------------------------------


class BackgroundTranslator:
    """Runs a translator's requests on an asyncio loop in a daemon thread, with one session (one HTTP
    client, one concurrency limit) for the whole job; :meth:`submit` returns a concurrent future."""

    def __init__(self, translator: Any) -> None:
        self.translator = translator
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-loop", daemon=True)
        self.thread.start()
        # One llm.TranslationSession for the job (llm/base.py): one client and one concurrency limit. It is
        # opened, used and closed on this loop, which owns the client.
        self.session = translator.session()
        try:
            self._run(self.session.open())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def submit(self, descriptions: llm_pkg.ClipDescriptions) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(self.session.translate(descriptions), self.loop)

    def close(self) -> None:
        try:
            self._run(self.session.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


# --- the job -------------------------------------------------------------------------------------------


@dataclass
class RunStats:
    """Counters of one labeling run (this process, this shard)."""

    clips_ok: int = 0
    clips_failed: int = 0
    clips_skipped: int = 0
    frames: int = 0
    empty_mask_frames: int = 0
    mask_area_sum: float = 0.0
    llm_calls: int = 0
    llm_cache_hits: int = 0
    llm_tokens: int = 0
    llm_cost_usd: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def add_ok(self, rec: Mapping[str, Any]) -> None:
        self.clips_ok += 1
        valid = [f for f in rec.get("frames_info", []) if f.get("valid", True)]
        for frame in valid:
            self.frames += 1
            self.mask_area_sum += float(frame["mask_area"])
            self.empty_mask_frames += int(frame["mask_area"] == 0)
        self.add_llm(rec.get("llm"))

    def add_llm(self, llm_rec: Mapping[str, Any] | None) -> None:
        if llm_rec:
            self.llm_calls += int(llm_rec.get("calls", 0))
            self.llm_cache_hits += int(llm_rec.get("cache_hits", 0))
            self.llm_tokens += int(llm_rec.get("prompt_tokens", 0)) + int(llm_rec.get("completion_tokens", 0))
            self.llm_cost_usd += float(llm_rec.get("cost_usd", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "clips_ok": self.clips_ok,
            "clips_failed": self.clips_failed,
            "clips_skipped": self.clips_skipped,
            "frames": self.frames,
            "empty_mask_frames": self.empty_mask_frames,
            "mean_mask_area": self.mask_area_sum / self.frames if self.frames else 0.0,
            "llm_calls": self.llm_calls,
            "llm_cache_hits": self.llm_cache_hits,
            "llm_tokens": self.llm_tokens,
            "llm_cost_usd": self.llm_cost_usd,
            "seconds": round(self.seconds, 3),
            "frames_per_second": self.frames / self.seconds if self.seconds > 0 else 0.0,
            "failures": dict(self.failures),
        }


_DONE = object()


class _Job:
    def __init__(self, labeler: OpenAVSLabeler, writer: StoreWriter, stats: RunStats, on_clip: Callable[[], None]):
        self.labeler = labeler
        self.writer = writer
        self.stats = stats
        self.on_clip = on_clip

    def fail(self, clip_id: str, reason: str, stage: str, extra: Mapping[str, Any] | None = None) -> None:
        log.warning("clip %s failed at %s: %s", clip_id, stage, reason)
        self.writer.write_failure(clip_id, reason, {"failed_stage": stage, **dict(extra or {})})
        self.stats.clips_failed += 1
        self.stats.failures[clip_id] = reason
        self.on_clip()

    def finish(self, items: list[Described]) -> None:
        """Ground, segment and write a batch of translated clips; a failing batch is redone clip by clip
        so only the clip at fault is recorded as failed."""
        try:
            results = self.labeler.segment(items)
        except Exception as exc:  # noqa: BLE001 - a model error fails its clip, not the job
            if len(items) == 1:
                self.fail(items[0].clip.id, failure_reason(exc), "ground/segment", self._llm_extra(items[0]))
                return
            for item in items:
                self.finish([item])
            return
        for item, (masks, info) in zip(items, results):
            try:
                start = time.perf_counter()
                rec = self.labeler.record(item, info)
                rec["timings"]["write_s"] = 0.0
                written = self.writer.write(item.clip, masks, rec)
                written["timings"]["write_s"] = round(time.perf_counter() - start, 4)
            except Exception as exc:  # noqa: BLE001
                self.fail(item.clip.id, failure_reason(exc), "write", self._llm_extra(item))
                continue
            self.stats.add_ok(rec)
            self.on_clip()

    def _llm_extra(self, item: Described) -> dict[str, Any]:
        if item.translation is None:
            return {}
        entry = llm_summary(item.translation)
        self.stats.add_llm(entry)  # the tokens were spent even though the clip failed
        return {"llm": entry}

    def resolve(self, item: Described, translator: BackgroundTranslator | None) -> bool:
        """Wait for the clip's phrases; False (and the clip recorded as failed) if translation failed."""
        if item.phrases is not None:
            return True
        try:
            if item.future is not None:
                translation = item.future.result()
            else:
                translation = self.labeler.translator.translate(item.descriptions())
            self.labeler.apply_translation(item, translation)
        except Exception as exc:  # noqa: BLE001
            self.fail(item.clip.id, failure_reason(exc), "llm")
            return False
        return True


def label_clips(
    labeler: OpenAVSLabeler,
    source: ClipSource,
    writer: StoreWriter,
    *,
    overlap: bool = True,
    max_in_flight: int = 16,
    frame_batch: int = 16,
    progress: bool = True,
    limit: int | None = None,
) -> RunStats:
    """Label every clip of ``source`` that ``writer``'s shard still has to do.

    Args:
        overlap: run the stages concurrently (describer thread, LLM loop, grounding in this thread);
            False runs one clip at a time through every stage (for debugging and comparison).
        max_in_flight: clips described but not yet written (bounds memory and LLM requests queued).
        frame_batch: frames per grounder/segmenter call (several clips share a batch).
        progress: show a progress bar (tqdm, on stderr).
        limit: label at most this many clips (a quick look at a big input).

    Returns:
        This run's counters (the store's manifest holds every record).
    """
    if max_in_flight < 1 or frame_batch < 1:
        raise ValueError(f"max_in_flight and frame_batch must be >= 1, got {max_in_flight}, {frame_batch}")
    all_ids = source.ids
    ids = writer.pending(all_ids)
    stats = RunStats(clips_skipped=sum(1 for c in all_ids if writer.owns(c)) - len(ids))
    if limit is not None:
        ids = ids[: int(limit)]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(ids), desc=f"labeling ({labeler.name})", unit="clip", disable=not progress, dynamic_ncols=True)

    def on_clip() -> None:
        bar.update(1)
        bar.set_postfix(ok=stats.clips_ok, failed=stats.clips_failed, refresh=False)

    job = _Job(labeler, writer, stats, on_clip)
    start = time.perf_counter()
    try:
        if ids:
            labeler.load_models()
        if overlap and ids:
            _run_overlapped(job, source, ids, max_in_flight, frame_batch)
        else:
            for clip_id in ids:
                item = _describe(labeler, source, clip_id)
                if isinstance(item, Failed):
                    job.fail(item.clip_id, item.reason, item.stage)
                elif job.resolve(item, None):
                    job.finish([item])
    finally:
        stats.seconds = time.perf_counter() - start
        bar.close()
    return stats


def _describe(labeler: OpenAVSLabeler, source: ClipSource, clip_id: str) -> Described | Failed:
    try:
        return labeler.describe(source, clip_id)
    except Exception as exc:  # noqa: BLE001 - a bad clip fails alone
        return Failed(clip_id, failure_reason(exc), "load/describe")


def _run_overlapped(job: _Job, source: ClipSource, ids: list[str], max_in_flight: int, frame_batch: int) -> None:
    labeler = job.labeler
    background = BackgroundTranslator(labeler.translator) if labeler.needs_llm else None
    handoff: queue.Queue = queue.Queue(maxsize=max_in_flight)
    stop = threading.Event()
    # Back-pressure: the describer takes a slot before loading a clip and the clip gives it back once it is
    # written or recorded as failed (job.on_clip runs exactly once per clip), so at most max_in_flight clips
    # are in memory (and their LLM requests queued) however far the describer could run ahead.
    slots = threading.Semaphore(max_in_flight)
    clip_done = job.on_clip

    def on_clip() -> None:
        slots.release()
        clip_done()

    job.on_clip = on_clip

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for clip_id in ids:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = _describe(labeler, source, clip_id)
                if isinstance(item, Described) and item.phrases is None and background is not None:
                    item.future = background.submit(item.descriptions())
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            put(exc)
        finally:
            put(_DONE)

    producer = threading.Thread(target=produce, name="describer", daemon=True)
    producer.start()
    waiting: deque[Any] = deque()
    produced_all = False

    def take(block: bool) -> bool:
        """Move one item from the hand-off queue to ``waiting``; False when none (or at the end)."""
        nonlocal produced_all
        try:
            item = handoff.get(timeout=0.1) if block else handoff.get_nowait()
        except queue.Empty:
            return False
        if item is _DONE:
            produced_all = True
            return False
        if isinstance(item, BaseException):
            raise item
        waiting.append(item)
        return True

    try:
        while True:
            while not waiting and not produced_all:
                take(block=True)
            while not produced_all and take(block=False):
                pass
            if not waiting:
                break
            head = waiting.popleft()
            if isinstance(head, Failed):
                job.fail(head.clip_id, head.reason, head.stage)
                continue
            if not job.resolve(head, background):
                continue
            batch, frames = [head], head.num_frames
            # Add the clips whose phrases are already known, as long as the frame budget allows.
            while waiting and frames < frame_batch:
                nxt = waiting[0]
                if isinstance(nxt, Failed):
                    waiting.popleft()
                    job.fail(nxt.clip_id, nxt.reason, nxt.stage)
                    continue
                ready = nxt.phrases is not None or (nxt.future is not None and nxt.future.done())
                if not ready or frames + nxt.num_frames > frame_batch:
                    break
                waiting.popleft()
                if job.resolve(nxt, background):
                    batch.append(nxt)
                    frames += nxt.num_frames
            job.finish(batch)
    finally:
        stop.set()
        producer.join(timeout=30)
        if background is not None:
            for item in waiting:
                if isinstance(item, Described) and item.future is not None:
                    item.future.cancel()
            background.close()


# --- summary ---------------------------------------------------------------------------------------------


def store_summary(root: Any) -> dict[str, Any]:
    """Totals over every record of a store (all shards): the summary the README describes."""
    records = load_records(root)
    ok = [r for r in records.values() if r["status"] == "ok"]
    areas = [
        float(f["mask_area"])
        for r in ok
        for f in r.get("frames_info", [{"mask_area": a} for a in r.get("mask_area", [])])
        if f.get("valid", True)
    ]
    llm_recs = [r.get("llm") or {} for r in records.values()]
    return scrub_secrets(
        {
            "clips_ok": len(ok),
            "clips_failed": len(records) - len(ok),
            "frames": len(areas),
            "empty_mask_frames": sum(1 for a in areas if a == 0),
            "mean_mask_area": float(np.mean(areas)) if areas else 0.0,
            "llm_calls": sum(int(x.get("calls", 0)) for x in llm_recs),
            "llm_cache_hits": sum(int(x.get("cache_hits", 0)) for x in llm_recs),
            "llm_tokens": sum(int(x.get("prompt_tokens", 0)) + int(x.get("completion_tokens", 0)) for x in llm_recs),
            "llm_cost_usd": sum(float(x.get("cost_usd", 0.0)) for x in llm_recs),
        }
    )
