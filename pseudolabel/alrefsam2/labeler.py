"""The AL-Ref-SAM2 training-free labeler (arXiv 2408.15876; code appletea233/AL-Ref-SAM2, ``avs/``) on the
runner of :mod:`pseudolabel.runner`: the same store, resume, sharding, failure records, cost accounting and
direct evaluation as OpenAVS.

Per clip:

1. **Tags**: the top ``num_tags`` (5) AudioSet labels of the whole clip from each audio tagger of
   ``labeler.alm`` (``ast``, ``clap``, ``yamnet``, ``beats``; several taggers: the union, as the original's
   MS3/AVSS runs with two BEATs checkpoints); the tagger's excluded labels (AudioSet's Silence) never count.
   A clip longer than ``tag_window_s`` (10 s) is scored in ``ceil(length / tag_window_s)`` near-equal
   windows (none longer than ``tag_window_s``), each label's score the maximum over the windows; over
   several taggers a label keeps its best score, the tags sorted best first.
2. **Frame strip**: the clip's labeled frames tiled left to right (two rows above five frames), numbered
   1..N in circles (:mod:`pseudolabel.alrefsam2.strip`); a clip with more than ``strip.max_frames`` (10)
   shows that many, evenly spaced (their clip frames are in the record's ``strip_frames``).
3. **Reference unification + pivot frame**: ONE multimodal LLM request with the tags, the instructions,
   the closed category list when there is one, and the strip as an image; the answer is parsed into
   ``{category: pivot frame}`` (:mod:`pseudolabel.alrefsam2.answers`).
4. **Pivot box**: the grounder (GroundingDINO, box and text threshold 0.25) on each category's pivot frame
   with the category as the phrase; its top ``max_boxes`` (3) boxes by score. With two or more, a second
   request shows them numbered on the pivot frame of the strip and the LLM picks one; one box is taken as
   it is; no box leaves the category without a mask.
5. **Propagation**: the video segmenter (``sam2_video``) prompted with each chosen box on its pivot frame,
   one object per category, propagated over the labeled frames; a frame's mask is the OR of the objects'.
6. **Gating** (optional ``labeler.gate``): a category's masks are emptied in the seconds where it does not
   sound; the decision goes in the record.

LLM requests per clip: ``1 + (categories with >= 2 candidate boxes)`` (none for a clip whose audio is
digital silence: no category, empty masks). Steps 1-2 run in ``prepare``, 3-4 in ``resolve`` (on the
runner's asyncio loop, the requests of several clips in flight at once; the grounder runs in a worker
thread, one call at a time), 5-6 in ``finish``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openavs_st.data.audio import is_silent
from pseudolabel.alrefsam2 import answers
from pseudolabel.alrefsam2.chat import EndpointChat, VLMChat
from pseudolabel.alrefsam2.strip import IMAGE_FORMATS, draw_strip
from pseudolabel.components import ComponentConfigError, build, config_number, load_all, named_nodes
from pseudolabel.labelers import LABELERS
from pseudolabel.llm.strategies import load_prompt
from pseudolabel.runner import ClipWork, Labels, load_clip
from pseudolabel.semantic import ClassMapper

log = logging.getLogger(__name__)

CATEGORY_MODES = ("auto", "avsbench", "none")


class LabelerConfigError(ComponentConfigError):
    """The AL-Ref-SAM2 labeler configuration is inconsistent; the message names the key to change."""


def avsbench_objects() -> list[str]:
    """The 70 AVSBench-semantic object classes (``label2idx.json`` without background), sorted: the closed
    list of AL-Ref-SAM2's prompt (``cfg.OBJECTS`` in appletea233/AL-Ref-SAM2 ``avs/*/config.py``), read from
    the shipped ``avsbench`` vocabulary (its AVSS section plus 'helicopter', listed with the S4 names)."""
    from pseudolabel.alm.base import VOCABULARY_DIR

    lines = (VOCABULARY_DIR / "avsbench.txt").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- AVSS"))
    names = [line.strip() for line in lines[start + 1 :] if line.strip() and not line.startswith("#")]
    return sorted({*names, "helicopter"})


def tag_windows(num_samples: int, window: int) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges splitting a wave of ``num_samples`` into ``ceil(num_samples / window)``
    near-equal pieces (the first ones one sample longer where it does not divide), none longer than
    ``window``: an audio tagger reads at most about ``window`` samples (AST: 10.24 s), so a longer piece
    would lose its end. An empty wave is one empty piece."""
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    count = max(1, -(-num_samples // window))
    base, extra = divmod(num_samples, count)
    bounds = [0]
    for index in range(count):
        bounds.append(bounds[-1] + base + (index < extra))
    return list(zip(bounds[:-1], bounds[1:]))


# --- per-clip work -------------------------------------------------------------------------------------


@dataclass
class Referent:
    """One sounding-object category of a clip and how its prompt box was found."""

    category: str
    pivot_number: int  # 1-based position on the strip, as numbered there
    pivot_t: int  # the clip's frame index
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # top candidates, xyxy px
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    box_answer: str | None = None
    box_notes: list[str] = field(default_factory=list)
    chosen: int | None = None  # 1-based candidate id

    @property
    def box(self) -> np.ndarray | None:
        return None if self.chosen is None else self.boxes[self.chosen - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "pivot_frame": self.pivot_t,
            "pivot_number": self.pivot_number,
            "candidate_boxes": np.round(self.boxes.astype(np.float64), 2).tolist(),
            "candidate_scores": np.round(self.scores.astype(np.float64), 4).tolist(),
            "box_answer": self.box_answer,
            "box_notes": list(self.box_notes),
            "chosen_box_id": self.chosen,
            "chosen_box": None if self.box is None else np.round(self.box.astype(np.float64), 2).tolist(),
        }


@dataclass
class Referenced(ClipWork):
    """A clip through AL-Ref-SAM2's stages (``pending`` until its referents and boxes are known)."""

    valid: list[int] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)  # the clip frames on the strip, in order
    silent: bool = False
    tags: list[tuple[str, float]] = field(default_factory=list)
    strip: np.ndarray | None = None
    categories: list[str] | None = None  # the closed list the prompt offered
    reference_answer: str | None = None
    reference_notes: list[str] = field(default_factory=list)
    referents: list[Referent] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)  # ChatReply, reference first


@LABELERS.register("alrefsam2")
class ALRefSAM2Labeler:
    """AL-Ref-SAM2: audio tags + frame strip -> LLM referents and pivot frames -> boxes -> SAM 2 video masks.

    Args:
        name: labeler name (recorded in the store).
        taggers: audio taggers (:class:`~pseudolabel.alm.base.AudioTagger`).
        chat: the multimodal LLM (:class:`~pseudolabel.alrefsam2.chat.EndpointChat` or ``VLMChat``).
        grounder: text -> boxes.
        video_segmenter: box on a frame -> masks over the clip.
        gate: optional silent-second gate (``decide(wave, sample_rate, num_frames, categories)``).
        num_tags: tags per tagger.
        categories: ``auto`` (the AVSBench object list for AVSBench inputs, the dataset's own
            ``label2idx.json`` for AVSS; none for other inputs), ``avsbench`` (always that list), ``none``
            (open world), or a list of names.
        several: ask for every sounding object (MS3/AVSS prompt) instead of the one sounding object (S4).
        max_boxes: candidate boxes per category (3).
        strip_height: each frame's height in the strip (None: the frames' own); strip_gap: pixels between.
        strip_frames: at most this many frames on the strip (evenly spaced over the labeled frames).
        tag_window_s: a clip longer than this is tagged in windows of this length (max over windows).
        reference_prompt, box_prompt: prompt template files (``$name`` placeholders).
        semantic: ``avss`` or a ``label2idx.json`` path: also write a class-index map per frame, each
            category mapped to a class (:mod:`pseudolabel.semantic`; where categories overlap, the one whose
            prompt box scored higher wins).
    """

    async_stage = "llm/ground"

    def __init__(
        self,
        *,
        name: str = "alrefsam2",
        taggers: Sequence[Any],
        chat: Any,
        grounder: Any,
        video_segmenter: Any,
        gate: Any = None,
        num_tags: int = 5,
        categories: str | Sequence[str] | None = "auto",
        several: bool = True,
        max_boxes: int = 3,
        strip_height: int | None = None,
        strip_gap: int = 4,
        strip_frames: int = 10,
        tag_window_s: float = 10.0,
        reference_prompt: str | None = None,
        box_prompt: str | None = None,
        semantic: str | None = None,
    ) -> None:
        if not taggers:
            raise LabelerConfigError("labeler.alm is empty: AL-Ref-SAM2 needs an audio tagger (labeler/alm=[ast])")
        if isinstance(categories, str) and categories not in CATEGORY_MODES:
            raise LabelerConfigError(f"labeler.categories must be one of {CATEGORY_MODES} or a list, got {categories!r}")
        if not 1 <= int(max_boxes) <= 3:
            raise LabelerConfigError(f"labeler.max_boxes must be 1, 2 or 3 (three box colours), got {max_boxes}")
        if int(num_tags) < 1:
            raise LabelerConfigError(f"labeler.num_tags must be >= 1, got {num_tags}")
        if int(strip_frames) < 1 or float(tag_window_s) <= 0:
            raise LabelerConfigError(
                f"labeler.strip.max_frames must be >= 1 and labeler.tag_window_s > 0, got {strip_frames}, {tag_window_s}"
            )
        if strip_height is not None and int(strip_height) < 8:
            raise LabelerConfigError(f"labeler.strip.frame_height must be >= 8 pixels or null, got {strip_height}")
        if int(strip_gap) < 0:
            raise LabelerConfigError(f"labeler.strip.gap must be >= 0 pixels, got {strip_gap}")
        self.name = name
        self.mode = "alrefsam2"
        self.taggers = list(taggers)
        self.chat = chat
        self.grounder = grounder
        self.video_segmenter = video_segmenter
        self.gate = gate
        self.num_tags = int(num_tags)
        self.categories = None if categories is None else categories if isinstance(categories, str) else list(categories)
        self.several = bool(several)
        self.max_boxes = int(max_boxes)
        self.strip_height = None if strip_height is None else int(strip_height)
        self.strip_gap = int(strip_gap)
        self.strip_frames = int(strip_frames)
        self.tag_window_s = float(tag_window_s)
        self.reference_file = reference_prompt or answers.REFERENCE_PROMPT
        self.box_file = box_prompt or answers.BOX_PROMPT
        self.reference_template = load_prompt(self.reference_file)
        self.box_template = load_prompt(self.box_file)
        self.prompt_sha256 = hashlib.sha256(
            (self.reference_template + "\0" + self.box_template).encode("utf-8")
        ).hexdigest()
        try:
            self.mapper = ClassMapper(semantic) if semantic else None
        except ValueError as exc:
            raise LabelerConfigError(str(exc)) from None
        self._ground_lock = threading.Lock()
        self._closed_lists: weakref.WeakKeyDictionary[Any, list[str] | None] = weakref.WeakKeyDictionary()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ALRefSAM2Labeler:
        """Build from a labeler config node (``configs/pseudolabel/alrefsam2.yaml`` resolved to plain dicts)."""
        from pseudolabel.alm.base import AudioTagger

        taggers = []
        for key, node in named_nodes(cfg.get("alm"), "labeler.alm"):
            tagger = build("alm", node, key)
            if not isinstance(tagger, AudioTagger):
                raise LabelerConfigError(
                    f"{key}: {type(tagger).__name__} is not an audio tagger; AL-Ref-SAM2 takes AudioSet tags "
                    "(labeler/alm=[ast], clap, yamnet, beats)"
                )
            taggers.append(tagger)
        for role in ("grounder", "video_segmenter"):
            if not cfg.get(role):
                raise LabelerConfigError(f"labeler.{role} is not set: choose one with labeler/{role}=NAME")
        strip = dict(cfg.get("strip") or {})
        image_format = str(strip.get("image_format", "jpeg"))
        if image_format not in IMAGE_FORMATS:
            raise LabelerConfigError(f"labeler.strip.image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        return cls(
            name=str(cfg.get("name", "alrefsam2")),
            taggers=taggers,
            chat=build_chat(cfg, image_format),
            grounder=build("grounder", cfg["grounder"], "labeler.grounder"),
            video_segmenter=build("video_segmenter", cfg["video_segmenter"], "labeler.video_segmenter"),
            gate=build("gate", cfg["gate"], "labeler.gate") if cfg.get("gate") else None,
            num_tags=config_number(cfg.get("num_tags", 5), "labeler.num_tags", int),
            categories=cfg.get("categories", "auto"),
            several=bool(cfg.get("several", True)),
            max_boxes=config_number(cfg.get("max_boxes", 3), "labeler.max_boxes", int),
            strip_height=None if strip.get("frame_height") is None
            else config_number(strip["frame_height"], "labeler.strip.frame_height", int),
            strip_gap=config_number(strip.get("gap", 4), "labeler.strip.gap", int),
            strip_frames=config_number(strip.get("max_frames", 10), "labeler.strip.max_frames", int),
            tag_window_s=config_number(cfg.get("tag_window_s", 10.0), "labeler.tag_window_s", float),
            reference_prompt=cfg.get("reference_prompt"),
            box_prompt=cfg.get("box_prompt"),
            semantic=cfg.get("semantic"),
        )

    # -- setup

    @property
    def class_names(self) -> list[str] | None:
        """The classes of the class-index maps (index order, 0 = background); None without ``semantic``."""
        return None if self.mapper is None else list(self.mapper.names)

    def components(self) -> list[Any]:
        return [*self.taggers, *self.chat.components(), self.grounder, self.video_segmenter, self.gate]

    def load_models(self) -> None:
        """Load every model now; an LLM endpoint's client opens on the first request the cache cannot answer."""
        load_all([c for c in self.components() if c is not None])

    def provenance(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "alm": [t.provenance() for t in self.taggers],
            "chat": self.chat.provenance(),
            "grounder": repr(self.grounder),
            "video_segmenter": repr(self.video_segmenter),
            "gate": None if self.gate is None else repr(self.gate),
            "num_tags": self.num_tags,
            "categories": self.categories,
            "several": self.several,
            "strip_frames": self.strip_frames,
            "tag_window_s": self.tag_window_s,
            "max_boxes": self.max_boxes,
            "prompt_sha256": self.prompt_sha256,
        }

    def closed_list(self, source: Any) -> list[str] | None:
        """The category list the reference prompt offers for clips of ``source`` (None: open world)."""
        if not isinstance(self.categories, str):
            return self.categories
        if self.categories == "none":
            return None
        # read once per source, not per clip; keyed by the source itself, weakly (a source freed and another
        # built at its address must not inherit its list)
        if source not in self._closed_lists:
            self._closed_lists[source] = self._read_closed_list(source)
        return self._closed_lists[source]

    def _read_closed_list(self, source: Any) -> list[str] | None:
        from openavs_st.data.avsbench import AVSSReader
        from openavs_st.data.sources import AVSBenchSource

        if self.categories == "avsbench":
            return avsbench_objects()
        if isinstance(source, AVSBenchSource):
            reader = source.reader
            return reader.class_names()[1:] if isinstance(reader, AVSSReader) else avsbench_objects()
        return None

    # -- stage 1: load, tag, draw the strip

    def tag(self, wave: np.ndarray, sample_rate: int) -> list[tuple[str, float]]:
        """The clip's tags: each tagger's best labels of the whole clip (:meth:`AudioTagger.top_scores`, at most
        ``num_tags``), merged over the taggers (a label named by several keeps its best score), best first
        (ties by label). A clip longer than ``tag_window_s`` is scored in the pieces of :func:`tag_windows`."""
        window = max(1, round(self.tag_window_s * sample_rate))
        pieces = [wave[start:stop] for start, stop in tag_windows(len(wave), window)]
        tags: dict[str, float] = {}
        for tagger in self.taggers:
            scores = tagger.scores(pieces, sample_rate).astype(np.float64).max(axis=0)
            for label, score in tagger.top_scores(scores)[: self.num_tags]:  # its top_k, threshold, exclusions
                tags[label] = max(tags.get(label, -np.inf), round(score, 4))
        return sorted(tags.items(), key=lambda item: (-item[1], item[0]))

    def strip_positions(self, valid: list[int]) -> list[int]:
        """The frames of ``valid`` the strip shows: all, or ``strip_frames`` evenly spaced ones."""
        if len(valid) <= self.strip_frames:
            return list(valid)
        picks = np.linspace(0, len(valid) - 1, self.strip_frames).round().astype(int)
        return [valid[i] for i in sorted(set(picks.tolist()))]

    def prepare(self, source: Any, clip_id: str) -> Referenced:
        clip, timings, valid = load_clip(source, clip_id)
        if clip.waveform is None:
            raise ValueError(f"clip {clip_id!r} has no waveform to tag (read it with audio='wav')")
        work = Referenced(clip, len(valid), timings, valid=valid, shown=self.strip_positions(valid),
                          categories=self.closed_list(source))
        work.silent = is_silent(clip.waveform)
        if work.silent:  # digital silence: nothing sounds, nothing to ask
            return work
        start = time.perf_counter()
        work.tags = self.tag(clip.waveform, clip.sample_rate)
        timings["alm_s"] = time.perf_counter() - start
        work.strip = draw_strip([clip.frames[t] for t in work.shown], frame_height=self.strip_height, gap=self.strip_gap)
        work.pending = True
        return work

    # -- stage 2: the LLM requests and the grounder

    def open_session(self) -> Any:
        """The multimodal LLM's session for the whole job (one client, one concurrency limit)."""
        return self.chat.session()

    async def resolve(self, work: Referenced, session: Any) -> None:
        clip, shown = work.clip, work.shown
        count = len(shown)
        text = answers.reference_prompt(
            self.reference_template, num_frames=count, tags=[t for t, _ in work.tags], categories=work.categories,
            several=self.several, where=self.reference_file,
        )

        def usable(answer: str) -> bool:  # cache answers that name something, or say "nothing" with []
            return bool(answers.parse_references(answer, count).pivots) or "[]" in answer.replace(" ", "")

        reply = await self.chat.ask(session, text, work.strip, cache_if=usable)
        work.replies.append(reply)
        work.reference_answer = reply.text
        parsed = answers.parse_references(reply.text, count, work.categories)
        work.reference_notes = parsed.notes
        work.referents = [Referent(c, k, shown[k - 1]) for c, k in parsed.pivots.items()]
        work.timings["llm_s"] = reply.latency_s
        if not work.referents:
            work.pending = False
            return
        start = time.perf_counter()
        detections = await asyncio.to_thread(
            self._ground, [clip.frames[r.pivot_t] for r in work.referents], [r.category for r in work.referents]
        )
        work.timings["ground_s"] = time.perf_counter() - start
        for referent, det in zip(work.referents, detections):
            order = np.argsort(-det.scores, kind="stable")[: self.max_boxes]
            referent.boxes, referent.scores = det.boxes[order], det.scores[order]
            referent.chosen = 1 if len(order) else None
        asked = [r for r in work.referents if len(r.boxes) >= 2]
        replies = await asyncio.gather(*(self._choose_box(work, r, session) for r in asked), return_exceptions=True)
        work.replies.extend(r for r in replies if not isinstance(r, BaseException))  # paid for, even if one failed
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        work.timings["llm_s"] = sum(r.latency_s for r in work.replies)
        work.pending = False

    def _ground(self, images: list[np.ndarray], categories: list[str]) -> list[Any]:
        with self._ground_lock:  # one grounder call at a time, whichever clip asks
            return self.grounder.detect(images, [[c] for c in categories])

    async def _choose_box(self, work: Referenced, referent: Referent, session: Any) -> Any:
        clip = work.clip
        index = work.shown.index(referent.pivot_t)
        image = await asyncio.to_thread(  # drawing is CPU work: off the event loop
            draw_strip, [clip.frames[t] for t in work.shown], frame_height=self.strip_height, gap=self.strip_gap,
            boxes=(index, referent.boxes),
        )
        text = answers.box_prompt(
            self.box_template, num_frames=len(work.shown), frame=referent.pivot_number, category=referent.category,
            boxes=referent.boxes, frame_hw=clip.frames.shape[1:3], where=self.box_file,
        )
        count = len(referent.boxes)
        reply = await self.chat.ask(
            session, text, image, cache_if=lambda answer: not answers.parse_box_choice(answer, count).notes
        )
        choice = answers.parse_box_choice(reply.text, count)
        referent.box_answer, referent.box_notes, referent.chosen = reply.text, choice.notes, choice.box
        return reply

    def failure_record(self, work: Referenced) -> dict[str, Any]:
        """Record fields of a clip that failed after (some of) its LLM requests: the usage of those answered
        (the runner adds them to a clip failing in ``resolve``, ``finish`` or writing)."""
        return {"llm": self.llm_summary(work)} if work.replies else {}

    # -- stage 3: propagate, gate

    def finish(self, works: Sequence[Referenced]) -> list[Labels]:
        return [self._finish_one(work) for work in works]

    def _finish_one(self, work: Referenced) -> Labels:
        clip, valid = work.clip, work.valid
        shape = clip.frames.shape[:3]
        per_category: dict[str, np.ndarray] = {r.category: np.zeros(shape, dtype=bool) for r in work.referents}
        prompted = [r for r in work.referents if r.box is not None]
        if prompted:
            start = time.perf_counter()
            frames = clip.frames[valid]
            masklets = self.video_segmenter.propagate(
                frames, [(valid.index(r.pivot_t), r.box.astype(np.float32)) for r in prompted],
                labels=[r.category for r in prompted],  # a text tracker (sam3_video) matches boxes to its tracks
            )
            for referent, masklet in zip(prompted, masklets, strict=True):
                per_category[referent.category][valid] = np.asarray(masklet, dtype=bool)
            work.timings["propagate_s"] = time.perf_counter() - start
        record: dict[str, Any] = {}
        if self.gate is not None and per_category:
            start = time.perf_counter()
            decision = self.gate.decide(clip.waveform, clip.sample_rate, clip.num_frames, list(per_category))
            per_category = {c: np.asarray(m, dtype=bool) for c, m in decision.apply(per_category).items()}
            record["gate"] = decision.to_dict()
            work.timings["gate_s"] = time.perf_counter() - start
        masks = np.zeros(shape, dtype=bool)
        for category_masks in per_category.values():
            masks |= category_masks
        info: list[dict[str, Any]] = []
        for t in range(clip.num_frames):
            frame: dict[str, Any] = {"t": t, "valid": t in valid, "mask_area": float(masks[t].mean())}
            if frame["valid"]:
                frame["categories"] = [c for c, m in per_category.items() if m[t].any()]
                frame["pivot_of"] = [r.category for r in work.referents if r.pivot_t == t]
                if work.silent:
                    frame["audio"] = "silent"
            else:
                frame["mask_area"] = 0.0
            info.append(frame)
        record.update(
            mode=self.mode,
            tags=[{"label": label, "score": score} for label, score in work.tags],
            closed_categories=None if work.categories is None else len(work.categories),
            strip_size=None if work.strip is None else [int(work.strip.shape[1]), int(work.strip.shape[0])],
            strip_frames=list(work.shown),
            reference={"answer": work.reference_answer, "parsed": {r.category: r.pivot_number for r in work.referents},
                       "notes": list(work.reference_notes)},
            referents=[r.to_dict() for r in work.referents],
            frames_info=info,
            timings={k: round(v, 4) for k, v in work.timings.items()},
        )
        if work.replies:
            record["llm"] = self.llm_summary(work)
        classes = None
        if self.mapper is not None:
            categories = list(per_category)
            ids = [self.mapper.class_id(c) for c in categories]
            chosen = {r.category: float(r.scores[r.chosen - 1]) for r in work.referents if r.chosen is not None}
            scores = [chosen.get(c, 0.0) for c in categories]
            classes = np.zeros(shape, dtype=np.uint8)
            if categories:
                stacked = np.stack([per_category[c] for c in categories], axis=1)
                for t in range(clip.num_frames):
                    classes[t] = self.mapper.paint(stacked[t], ids, scores)
            record["category_classes"] = dict(zip(categories, ids))
        return Labels(masks, record, classes)

    def llm_summary(self, work: Referenced) -> dict[str, Any]:
        """The manifest's ``llm`` entry (the keys of OpenAVS's, so the store's summary counts it)."""
        replies = work.replies
        hits = sum(1 for r in replies if r.cache_hit)
        costs = [r.cost_usd for r in replies]
        notes = [f"reference: {n}" for n in work.reference_notes]
        notes += [f"box {r.category!r}: {n}" for r in work.referents for n in r.box_notes]
        return {
            "backend": self.chat.backend,
            "model": self.chat.model,
            "strategy": "alrefsam2",
            "prompt_sha256": self.prompt_sha256,
            "requests": len(replies),
            "calls": len(replies) - hits,
            "cache_hits": hits,
            "prompt_tokens": sum(r.prompt_tokens for r in replies),
            "completion_tokens": sum(r.completion_tokens for r in replies),
            "cost_usd": float(sum(c for c in costs if c is not None)),
            "cost_known": all(c is not None for c in costs),
            "raw_responses": [r.text for r in replies],
            "fallback_frames": [],
            "parse_notes": notes,
            "latency_s": round(float(sum(r.latency_s for r in replies)), 4),
        }


def build_chat(cfg: Mapping[str, Any], image_format: str) -> Any:
    """The multimodal LLM of a labeler config: ``labeler.vlm`` (a local VLM; then ``llm=none``) or an
    image-capable ``labeler.llm`` (``openai``)."""
    llm_node, vlm_node = cfg.get("llm"), cfg.get("vlm")
    translator = build("llm", llm_node, "labeler.llm") if llm_node else None
    chat_llm = translator is not None and getattr(translator, "name", "none") != "none"
    if vlm_node:
        if chat_llm:
            raise LabelerConfigError(
                "labeler.vlm and labeler.llm are both set: AL-Ref-SAM2 asks one multimodal model; pass llm=none to "
                "let the VLM answer, or drop labeler.vlm"
            )
        return VLMChat(build("vlm", vlm_node, "labeler.vlm"), cache_dir=cfg.get("vlm_cache_dir"))
    if not chat_llm:
        raise LabelerConfigError(
            "AL-Ref-SAM2 needs a multimodal LLM: llm=openai with an image-capable model (labeler.llm.model=gpt-4o), "
            "or a local VLM (labeler/vlm=qwen2_5_vl llm=none)"
        )
    try:
        return EndpointChat(translator, image_format)
    except ValueError as exc:
        raise LabelerConfigError(f"labeler.llm: {exc}") from None
