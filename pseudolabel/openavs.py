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

A second of digital silence (:func:`openavs_st.data.audio.is_silent`: a wav with no samples, an all-zero
track, the seconds past the end of the audio) is silence: it is not described (no ALM, VLM or LLM call),
gets no phrase and an empty mask, and its ``frames_info`` entry says ``"audio": "silent"``.

The ``clip_label`` mode skips steps 1-2 and queries the grounder with the clip's class names (its
weak label: the paper's upper bound for weak supervision).

:class:`OpenAVSLabeler` says what one clip needs, as the three stages of :class:`pseudolabel.runner.Labeler`:
``prepare`` (load + ALM/VLM descriptions), ``resolve`` (the LLM translation, on the runner's asyncio loop,
at most ``llm.concurrency`` requests at once) and ``finish`` (grounding and segmentation of the frames of
several clips per batch). :func:`pseudolabel.runner.run_labeler` runs it over a clip source into the store:
overlap, memory bound, resume, sharding, failure records and the summary are the runner's. The models are
loaded before the first clip, so a wrong model path stops the job instead of failing every clip.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openavs_st.data.audio import is_silent
from pseudolabel import alm as alm_pkg
from pseudolabel import llm as llm_pkg
from pseudolabel.components import ComponentConfigError, build, load_all, named_nodes
from pseudolabel.runner import ClipWork, Labels, load_clip
from pseudolabel.semantic import ClassMapper
from pseudolabel.vfm.base import BoxMasks, Detections, clean_phrases

MODES = ("openavs", "clip_label")


class LabelerConfigError(ComponentConfigError):
    """The labeler configuration is inconsistent; the message names the key to change."""


# --- per-clip work -----------------------------------------------------------------------------------


@dataclass
class Described(ClipWork):
    """A clip after loading and ALM/VLM description (``pending`` until its phrases are known)."""

    valid: list[int] = field(default_factory=list)  # the frames that are labeled (AVSS padding frames are not)
    audio_texts: list[list[str]] = field(default_factory=list)  # per valid frame: every ALM x prompt text
    image_texts: list[list[str]] = field(default_factory=list)  # per valid frame: every VLM prompt text
    phrases: list[list[str]] | None = None  # per valid frame, once known
    translation: Any = None  # llm TranslationRecord
    silent: list[bool] = field(default_factory=list)  # per valid frame: its second of audio is digital silence
    phrase_classes: dict[str, int] = field(default_factory=dict)  # clip_label + semantic: cleaned phrase -> class id
    gate: Any = None  # the gate's GateDecision (labeler.gate), once applied
    gated: list[list[str]] = field(default_factory=list)  # per valid frame: the phrases the gate dropped
    propagation: dict[str, Any] | None = None  # labeler.propagate: the video prompts, for the record

    def is_silent(self, i: int) -> bool:
        return bool(self.silent) and self.silent[i]

    def spread(self, values: Sequence[Any], fill: Any) -> list[Any]:
        """Values of the sounding frames (those described and translated) as one per valid frame, ``fill``
        for the silent ones."""
        sounding = iter(values)
        return [fill if self.is_silent(i) else next(sounding) for i in range(len(self.valid))]

    def descriptions(self) -> llm_pkg.ClipDescriptions:
        keep = [i for i in range(len(self.valid)) if not self.is_silent(i)]
        images = [self.image_texts[i] for i in keep]
        return llm_pkg.ClipDescriptions.from_lists(
            self.clip.id, [self.audio_texts[i] for i in keep], images if any(images) else None
        )


class OpenAVSLabeler:
    """Composes the components of one labeler preset.

    Args:
        name: labeler name (recorded in the store).
        alms: audio describers (OpenAVS-Large: several); each contributes one text per prompt per frame.
        vlm: optional image describer.
        translator: LLM translator; None means the passthrough (``llm=none``).
        grounder: text -> boxes.
        segmenter: boxes -> masks.
        mode: ``openavs`` or ``clip_label`` (class names as the phrases; no ALM, VLM or LLM).
        class_prompts: ``clip_label``: class name -> phrase (or list of phrases); other names are used
            with ``_`` replaced by a space.
        semantic: ``avss`` or a ``label2idx.json`` path: also write a class-index map per frame, each box's
            phrase (``clip_label``: the clip's class name) mapped to a class (:mod:`pseudolabel.semantic`).
        gate: optional silent-second gate (:mod:`pseudolabel.gating`): before grounding, each frame keeps
            only the phrases whose category sounds in its second (the clip's phrases are the categories);
            no phrase left gives an empty mask. The decision goes in the record's ``gate``.
        video_segmenter: the ``video_segmenter`` of ``propagate`` (:mod:`pseudolabel.vfm.video`).
        propagate: masks from video propagation instead of per-frame segmentation: each of the clip's
            phrases is prompted with its best box (the highest grounding score over the frames) on that
            box's frame, the video segmenter propagates it over the clip, and frame ``t``'s mask is the OR
            of the propagated masks of frame ``t``'s phrases. A video segmenter that tracks text itself
            (``track``: ``sam3_video``) gets the phrases without grounding. The prompts go in the record's
            ``propagation``.
    """

    def __init__(
        self,
        *,
        name: str,
        alms: Sequence[Any] = (),
        vlm: Any = None,
        translator: Any = None,
        grounder: Any,
        segmenter: Any,
        mode: str = "openavs",
        class_prompts: Mapping[str, Any] | None = None,
        semantic: str | None = None,
        gate: Any = None,
        video_segmenter: Any = None,
        propagate: bool = False,
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
        try:
            self.mapper = ClassMapper(semantic) if semantic else None
        except ValueError as exc:
            raise LabelerConfigError(str(exc)) from None
        self.gate = gate
        if propagate and video_segmenter is None:
            raise LabelerConfigError("labeler.propagate=true needs a video segmenter: set labeler/video_segmenter=NAME")
        self.video_segmenter = video_segmenter
        self.propagate = bool(propagate)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> OpenAVSLabeler:
        """Build from a labeler config node (``configs/pseudolabel/<preset>.yaml``, resolved to plain dicts):
        every component node has a ``_target_`` (or a registered ``name``), see :func:`pseudolabel.components.build`."""
        mode = str(cfg.get("mode", "openavs"))
        alms: list[Any] = []
        vlm = translator = None
        if mode == "openavs":
            alms = [build("alm", node, key) for key, node in named_nodes(cfg.get("alm"), "labeler.alm")]
            if cfg.get("vlm"):
                vlm = build("vlm", cfg["vlm"], "labeler.vlm")
            if cfg.get("llm"):
                translator = build("llm", cfg["llm"], "labeler.llm")
        propagate = bool(cfg.get("propagate", False))
        for role in ("grounder", "segmenter"):
            if not cfg.get(role) and not (propagate and role == "segmenter"):
                raise LabelerConfigError(f"labeler.{role} is not set: choose one with labeler/{role}=NAME")
        video = cfg.get("video_segmenter")
        return cls(
            name=str(cfg.get("name", "openavs")),
            alms=alms,
            vlm=vlm,
            translator=translator,
            grounder=build("grounder", cfg["grounder"], "labeler.grounder"),
            segmenter=build("segmenter", cfg["segmenter"], "labeler.segmenter") if cfg.get("segmenter") else None,
            mode=mode,
            class_prompts=cfg.get("class_prompts"),
            semantic=cfg.get("semantic"),
            gate=build("gate", cfg["gate"], "labeler.gate") if cfg.get("gate") else None,
            video_segmenter=build("video_segmenter", video, "labeler.video_segmenter") if propagate and video else None,
            propagate=propagate,
        )

    # -- setup

    @property
    def class_names(self) -> list[str] | None:
        """The classes of the class-index maps (index order, 0 = background); None without ``semantic``."""
        return None if self.mapper is None else list(self.mapper.names)

    def components(self) -> list[Any]:
        """Every component of the labeler."""
        masks = self.video_segmenter if self.propagate else self.segmenter  # the segmenter is unused then
        grounder = None if self.propagate and self.tracks_text else self.grounder  # a text tracker grounds itself
        return [c for c in [*self.alms, self.vlm, self.translator, grounder, masks, self.gate] if c is not None]

    @property
    def tracks_text(self) -> bool:
        """Whether the video segmenter finds the phrases itself (``track(frames, phrases)``: ``sam3_video``)."""
        return self.video_segmenter is not None and callable(getattr(self.video_segmenter, "track", None))

    def load_models(self) -> None:
        """Load every model now (normally they load on first use). The LLM translator loads on the first
        request its cache cannot answer, so a fully cached rerun needs neither its model nor its key."""
        load_all([c for c in self.components() if c is not self.translator])

    def provenance(self) -> dict[str, Any]:
        """What produced the labels (recorded once per run in the summary)."""
        return {
            "mode": self.mode,
            "alm": [d.provenance() for d in self.alms],
            "vlm": None if self.vlm is None else self.vlm.provenance(),
            "llm": None if self.translator is None else repr(self.translator),
            "grounder": repr(self.grounder),
            "segmenter": repr(self.segmenter),
            "gate": None if self.gate is None else self.gate.provenance(),
            "propagate": self.propagate,
            "video_segmenter": repr(self.video_segmenter) if self.propagate else None,
            "semantic": None if self.mapper is None else self.mapper.describe(),
        }

    # -- stage 1: load + describe

    def prepare(self, source: Any, clip_id: str) -> Described:
        """Load a clip and describe its frames (ALMs, VLM), or read its class names (``clip_label``)."""
        clip, timings, valid = load_clip(source, clip_id)
        if self.mode == "clip_label":
            names = source.class_names(clip)
            phrases = self.class_phrases(names)
            empty: list[list[str]] = [[] for _ in valid]
            described = Described(clip, len(valid), timings, False, None, valid, empty, list(empty),
                                  [list(phrases)] * len(valid))
            if self.mapper is not None:  # a phrase's class is the class name it stands for
                described.phrase_classes = {
                    phrase: self.mapper.class_id(name)
                    for name in names for phrase in clean_phrases(self.class_phrases([name]))
                }
            return described
        if clip.waveform is None:
            raise ValueError(f"clip {clip_id!r} has no waveform to describe (read it with audio='wav')")
        segments = alm_pkg.split_seconds(clip.waveform, clip.sample_rate, clip.num_frames)
        segments = [segments[t] for t in valid]
        # A second of digital silence (no samples, all zero, or past the end of the audio) is not described:
        # nothing sounds, so no phrase and an empty mask, without asking the ALM, VLM or LLM about nothing.
        silent = [is_silent(segment) for segment in segments]
        sounding = [i for i, quiet in enumerate(silent) if not quiet]
        audio_texts: list[list[str]] = [[] for _ in valid]
        image_texts: list[list[str]] = [[] for _ in valid]
        if sounding:
            start = time.perf_counter()
            for describer in self.alms:
                for i, texts in zip(sounding, describer.describe([segments[i] for i in sounding], clip.sample_rate)):
                    audio_texts[i].extend(texts)
            timings["alm_s"] = time.perf_counter() - start
        if self.vlm is not None and sounding:
            start = time.perf_counter()
            for i, texts in zip(sounding, self.vlm.describe([clip.frames[valid[i]] for i in sounding])):
                image_texts[i] = list(texts)
            timings["vlm_s"] = time.perf_counter() - start
        phrases = None if sounding else [[] for _ in valid]
        return Described(clip, len(valid), timings, bool(sounding), None, valid, audio_texts, image_texts, phrases,
                         silent=silent)

    def class_phrases(self, names: Sequence[str]) -> list[str]:
        phrases: list[str] = []
        for name in names:
            mapped = self.class_prompts.get(name, str(name).replace("_", " "))
            for phrase in [mapped] if isinstance(mapped, str) else list(mapped):
                if phrase not in phrases:
                    phrases.append(phrase)
        return phrases

    # -- stage 2: translate

    async_stage = "llm"

    def open_session(self) -> Any:
        """The translator's session for the whole job (one client, one concurrency limit), or None."""
        return None if self.translator is None else self.translator.session()

    async def resolve(self, item: Described, session: Any) -> None:
        """Translate the clip's descriptions into phrases (on the runner's loop)."""
        self.apply_translation(item, await session.translate(item.descriptions()))

    def apply_translation(self, item: Described, translation: Any) -> None:
        """Take a clip's phrases from its :class:`~pseudolabel.llm.Translation`."""
        item.phrases = item.spread([list(p) for p in translation.phrases], [])
        item.translation = translation.record
        item.timings["llm_s"] = float(translation.record.latency_s)
        item.pending = False

    def failure_record(self, item: Described) -> dict[str, Any]:
        """Record fields of a clip that failed after its translation: the LLM usage it cost."""
        return {} if item.translation is None else {"llm": llm_summary(item.translation)}

    # -- stage 3: ground + segment (a batch of clips)

    def finish(self, items: Sequence[Described]) -> list[Labels]:
        """Masks ``[T, H, W]`` bool, the manifest record and (``semantic``) the class-index maps of each
        described, translated clip."""
        if self.gate is not None:
            for item in items:
                if item.gate is None:
                    self.apply_gate(item)
        images = [item.clip.frames[t] for item in items for t in item.valid]
        phrases = [p for item in items for p in item.phrases]
        total = max(1, len(images))
        start = time.perf_counter()
        if self.propagate and self.tracks_text:
            detections = [Detections.empty() for _ in images]
        else:
            detections = self.grounder.detect(images, phrases)
        ground_s = time.perf_counter() - start
        start = time.perf_counter()
        if self.propagate:
            box_masks, first = [], 0
            for item in items:
                box_masks.extend(self.propagated(item, detections[first : first + len(item.valid)]))
                first += len(item.valid)
        else:
            boxes = [d.boxes for d in detections]
            priors = [d.maps for d in detections]  # a grounder's per-box prior maps (cam), for segmenters taking them
            if getattr(self.segmenter, "takes_priors", False) and any(p is not None for p in priors):
                box_masks = self.segmenter.segment_boxes(images, boxes, priors=priors)
            else:
                box_masks = self.segmenter.segment_boxes(images, boxes)
        segment_s = time.perf_counter() - start
        results = []
        offset = 0
        for item in items:
            clip = item.clip
            masks = np.zeros(clip.frames.shape[:3], dtype=bool)
            classes = None if self.mapper is None else np.zeros(clip.frames.shape[:3], dtype=np.uint8)
            info: list[dict[str, Any]] = []
            status = item.spread(item.translation.frame_status, None) if item.translation is not None else None
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
                if self.propagate:  # masks: one per phrase of the frame that got a video prompt
                    frame["mask_labels"] = list(bm.labels)
                if classes is not None:
                    labels, scores = (bm.labels, bm.scores) if self.propagate else (det.labels, det.scores)
                    ids = [self.class_of(item, label) for label in labels]
                    classes[t] = self.mapper.paint(bm.masks, ids, scores)
                    frame["box_classes"] = ids
                if item.gate is not None:
                    frame["gated_phrases"] = item.gated[i]
                if item.is_silent(i):
                    frame["audio"] = "silent"
                elif status is not None:
                    frame["llm_status"] = status[i]
                info.append(frame)
            share = len(item.valid) / total
            item.timings["ground_s"] = ground_s * share
            item.timings["propagate_s" if self.propagate else "segment_s"] = segment_s * share
            offset += len(item.valid)
            results.append(Labels(masks, self.record(item, info), classes))
        return results

    def class_of(self, item: Described, phrase: str) -> int:
        """``semantic``: the class id of a box's phrase (``clip_label``: of the class name it was asked for)."""
        cleaned = clean_phrases([phrase])
        key = cleaned[0] if cleaned else ""
        return item.phrase_classes[key] if key in item.phrase_classes else self.mapper.class_id(phrase)

    def apply_gate(self, item: Described) -> None:
        """Keep in each valid frame only the phrases whose category sounds in its second (``labeler.gate``);
        the categories are the clip's distinct phrases. Dropped phrases go to ``item.gated``."""
        clip = item.clip
        if clip.waveform is None:
            raise ValueError(f"clip {clip.id!r} has no waveform for labeler.gate (read it with audio='wav')")
        categories = list(dict.fromkeys(p for frame in item.phrases for p in frame))
        start = time.perf_counter()
        item.gate = self.gate.decide(clip.waveform, clip.sample_rate, clip.num_frames, categories)
        item.timings["gate_s"] = time.perf_counter() - start
        kept = [[p for p in frame if item.gate.sounds(t, p)] for t, frame in zip(item.valid, item.phrases)]
        item.gated = [[p for p in frame if p not in keep] for frame, keep in zip(item.phrases, kept)]
        item.phrases = kept

    def record(self, item: Described, frames_info: list[dict[str, Any]]) -> dict[str, Any]:
        """The manifest record of a labeled clip (the store adds paths, status, mask areas, meta)."""
        rec: dict[str, Any] = {
            "mode": self.mode,
            "frames_info": frames_info,
            "timings": {k: round(v, 4) for k, v in item.timings.items()},
        }
        if item.translation is not None:
            rec["llm"] = llm_summary(item.translation)
        if item.gate is not None:
            rec["gate"] = item.gate.to_dict()
        if item.propagation is not None:
            rec["propagation"] = item.propagation
        return rec

    def propagated(self, item: Described, detections: Sequence[Detections]) -> list[PhraseMasks]:
        """``labeler.propagate``: per valid frame of ``item``, the propagated masks of its phrases.

        Each distinct phrase of the clip is prompted with its highest-scoring box over the valid frames
        (``detections``, one per valid frame) on that box's frame; a phrase without a box gets no mask. A
        text-tracking video segmenter (``track``) is given the phrases instead. ``item.propagation``
        records the prompts. Only the valid frames are tracked (AVSS padding frames are not), as in
        AL-Ref-SAM2."""
        clip = item.clip
        frames = clip.frames[item.valid]  # tracks are indexed by position among the valid frames
        phrases = list(dict.fromkeys(p for frame in item.phrases for p in frame))
        tracks: dict[str, np.ndarray] = {}
        scores: dict[str, float] = {}
        if self.tracks_text:
            tracks = dict(self.video_segmenter.track(frames, phrases)) if phrases else {}
            scores = {p: 1.0 for p in tracks}
            item.propagation = {"video_segmenter": self.video_segmenter.name, "text": list(phrases)}
        else:
            prompts: list[dict[str, Any]] = []
            for phrase in phrases:
                key = clean_phrases([phrase])
                best = max(
                    ((float(d.scores[k]), i, k) for i, d in enumerate(detections) for k, label in enumerate(d.labels)
                     if key and label == key[0]),
                    default=None,
                )
                if best is not None:
                    score, i, k = best
                    prompts.append({"phrase": phrase, "frame": item.valid[i], "box": detections[i].boxes[k], "score": score})
            positions = {t: i for i, t in enumerate(item.valid)}
            masks = self.video_segmenter.propagate(frames, [(positions[p["frame"]], p["box"]) for p in prompts])
            for prompt, mask in zip(prompts, masks, strict=True):
                tracks[prompt["phrase"]], scores[prompt["phrase"]] = mask, prompt["score"]
            item.propagation = {
                "video_segmenter": self.video_segmenter.name,
                "prompts": [
                    {**p, "box": np.round(np.asarray(p["box"], np.float64), 2).tolist(), "score": round(p["score"], 4)}
                    for p in prompts
                ],
            }
        height, width = clip.frames.shape[1:3]
        out = []
        for i, t in enumerate(item.valid):
            names = [p for p in item.phrases[i] if p in tracks]
            stack = np.stack([tracks[p][i] for p in names]) if names else np.zeros((0, height, width), bool)
            out.append(PhraseMasks(stack, np.array([scores[p] for p in names], np.float32), names))
        return out


@dataclass(frozen=True)
class PhraseMasks(BoxMasks):
    """A frame's propagated masks (``labeler.propagate``): :class:`BoxMasks` with one mask per phrase in
    ``labels``, scored by its video prompt (the grounding score of its box; 1.0 for text tracking)."""

    labels: list[str] = field(default_factory=list)


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
