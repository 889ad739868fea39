"""OpenAVS LLM translation strategies: user-message builders and the answer parser.

The OpenAVS paper (arXiv 2505.01448, Appendix F) turns audio (and image) descriptions into short
object phrases for the segmenter with one of five prompting strategies. Each system prompt frames
the task as a game (name the sounding objects of each one-second frame; some frames are silent, some
descriptions mislead); the strategies differ in an extra instruction and the user-message layout:

- ``basic``: no extra instruction; flat input ``<frame0>text</frame0>`` (the first audio
  description of each frame, one frame per line); one answer line per frame.
- ``prompt`` (prompt consistency): "weigh all audio models of a frame together"; nested input
  ``<frame0><exp1>..</exp1><exp2>..</exp2><exp3>..</exp3></frame0>``; one answer line per frame.
- ``frame`` (frame consistency): "consider how the frames relate"; flat input as ``basic``.
- ``prompt_frame``: both instructions, nested input (the OpenAVS-Lite default).
- ``model`` (model consistency): independent image and audio agents, input lines
  ``Image agent i: ..`` and ``Audio agent j: ..``; step-by-step reasoning, then one final answer
  line that applies to every frame the request covers.

Frames count from 0 and ``<expN>`` from 1, agents from 0, as in the paper's Appendix F examples.
The system prompt of each strategy is a text file in ``prompts/`` (a config may point at another
file). Answers are read from ``<answer>...</answer>`` blocks; the parser accepts both layouts a model
produces for the per-frame strategies (one block per frame, or one block holding one line per
frame), lines labelled ``frame N:`` or ``<frameN>..</frameN>``, list markers and a missing closing
tag.

Nothing here imports anything heavy: this module is plain Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

PROMPTS_DIR = Path(__file__).with_name("prompts")

#: Answers meaning "nothing in this frame makes a sound": they give an empty phrase list (an empty
#: mask downstream). Compared after :func:`clean_phrase`.
NOTHING_SOUNDS = frozenset(
    {
        "none",
        "nothing",
        "silence",
        "silent",
        "no sound",
        "no sounds",
        "n/a",
        "no object",
        "no objects",
        "no sounding object",
        "no sounding objects",
        "no sound source",
        "no sound sources",
    }
)

Layout = Literal["flat", "nested", "agents"]
ModelScope = Literal["frame", "clip"]
AnswerStatus = Literal["ok", "silent", "missing", "malformed"]


@dataclass(frozen=True)
class FrameDescriptions:
    """The texts describing one frame-second of a clip.

    Attributes:
        audio: one description per ALM prompt or ALM model, in a fixed order across frames (e.g.
            Pengi's three prompts). The flat strategies (``basic``, ``frame``) use only the first.
        image: optional image descriptions of the frame (one per VLM or VLM prompt); only the
            ``model`` strategy reads them.
    """

    audio: tuple[str, ...]
    image: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind in ("audio", "image"):
            texts = getattr(self, kind)
            if isinstance(texts, str):
                raise TypeError(f"{kind} descriptions must be a sequence of strings, not one string")
            texts = tuple(texts)
            for text in texts:
                if not isinstance(text, str):
                    raise TypeError(f"{kind} description {text!r} is {type(text).__name__}, not str")
            object.__setattr__(self, kind, texts)


@dataclass(frozen=True)
class ClipDescriptions:
    """One clip's per-frame descriptions (T frames, one per second), the translator's input."""

    clip_id: str
    frames: tuple[FrameDescriptions, ...]

    def __post_init__(self) -> None:
        frames = tuple(self.frames)
        if not frames:
            raise ValueError(f"clip {self.clip_id!r}: no frames to translate")
        for t, frame in enumerate(frames):
            if not isinstance(frame, FrameDescriptions):
                raise TypeError(
                    f"clip {self.clip_id!r} frame {t}: expected FrameDescriptions, got {type(frame).__name__}"
                )
        object.__setattr__(self, "frames", frames)

    @classmethod
    def from_lists(
        cls,
        clip_id: str,
        audio: Sequence[Sequence[str]],
        image: Sequence[Sequence[str]] | None = None,
    ) -> "ClipDescriptions":
        """Build from ``audio[t]`` (and ``image[t]``): lists of descriptions of frame ``t``."""
        if image is not None and len(image) != len(audio):
            raise ValueError(
                f"clip {clip_id!r}: {len(audio)} frames of audio descriptions but {len(image)} of image descriptions"
            )
        images = image if image is not None else [()] * len(audio)
        return cls(clip_id, tuple(FrameDescriptions(tuple(a), tuple(i)) for a, i in zip(audio, images)))


@dataclass(frozen=True)
class ChatRequest:
    """One LLM call: the user message and the frames (indices into the clip) its answer covers."""

    frames: tuple[int, ...]
    user_message: str


@dataclass(frozen=True)
class FrameAnswer:
    """The parsed answer for one frame.

    ``status``: ``ok`` (phrases found), ``silent`` (the model said nothing sounds: no phrases),
    ``missing`` (no answer for this frame) or ``malformed`` (an answer that is not a list of short
    object phrases). The last two make the translator fall back to the untranslated text.
    """

    phrases: tuple[str, ...]
    status: AnswerStatus


@dataclass(frozen=True)
class ParsedResponse:
    """A response parsed for the frames of its request: one answer per frame, plus notes on any
    irregularity (extra answers, 1-based labels, no answer tag ...)."""

    answers: tuple[FrameAnswer, ...]
    notes: tuple[str, ...] = ()


def clean_phrase(text: str) -> str:
    """Lower-case, collapse whitespace and strip surrounding quotes/markdown/punctuation."""
    return " ".join(text.lower().split()).strip(" \"'`*.,:;!?")


def unique_phrases(texts: Sequence[str]) -> list[str]:
    """:func:`clean_phrase` each text, drop empty ones and duplicates (first occurrence wins)."""
    seen: dict[str, None] = {}
    for text in texts:
        phrase = clean_phrase(text)
        if phrase:
            seen.setdefault(phrase, None)
    return list(seen)


def load_prompt(path: str | Path) -> str:
    """Read a system-prompt file exactly (UTF-8, no stripping), with a clear error if unusable."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"LLM prompt file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"LLM prompt file {path} is not UTF-8 text: {exc}") from None
    if not text.strip():
        raise ValueError(f"LLM prompt file {path} is empty")
    return text


def _one_line(text: str) -> str:
    """A description on one line (newlines and runs of spaces collapsed)."""
    return " ".join(text.split())


# --- answer parsing ------------------------------------------------------------------------------

_OPEN = r"<\s*answer\s*>"
_CLOSE = r"<\s*/\s*answer\s*>"
# An answer block ends at its closing tag, at the next opening tag or at the end of the text
# (local models often drop the closing tag).
_ANSWER_BLOCK = re.compile(rf"{_OPEN}(.*?)(?:{_CLOSE}|(?={_OPEN})|\Z)", re.IGNORECASE | re.DOTALL)
_FRAME_TAGGED = re.compile(r"^<\s*frame\s*(\d+)\s*>(.*?)(?:<\s*/\s*frame\s*\d*\s*>)?$", re.IGNORECASE)
_FRAME_PREFIXED = re.compile(r"^\W*frame\s*#?\s*(\d+)\W*?\s*[:=)\-\u2013\u2014]\s*(.*)$", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^(?:[-*\u2022]+|\d+[.)])\s+")
_PHRASE_SEPARATORS = re.compile(r"[,;\n]")


def _answer_blocks(response: str) -> list[str]:
    return _ANSWER_BLOCK.findall(response)


def _block_lines(block: str) -> list[str]:
    """Non-empty lines of one answer block; an empty block is one empty answer."""
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    return lines or [""]


def _split_label(line: str) -> tuple[int | None, str]:
    """``(frame index or None, answer text)`` for one answer line."""
    for pattern in (_FRAME_TAGGED, _FRAME_PREFIXED):
        match = pattern.match(line)
        if match:
            return int(match.group(1)), match.group(2).strip()
    return None, _LIST_MARKER.sub("", line, count=1)


def parse_answer_text(text: str, *, max_phrase_words: int = 8) -> FrameAnswer:
    """Parse one answer (comma-separated object phrases) into a :class:`FrameAnswer`.

    Malformed: leftover markup (``<`` or ``>``) or a phrase longer than ``max_phrase_words`` words
    (a sentence rather than an object name). Phrases meaning nothing sounds (:data:`NOTHING_SOUNDS`)
    are dropped; if none remain, the status is ``silent``.
    """
    if "<" in text or ">" in text:
        return FrameAnswer((), "malformed")
    phrases = unique_phrases(_PHRASE_SEPARATORS.split(text))
    if any(len(phrase.split()) > max_phrase_words for phrase in phrases):
        return FrameAnswer((), "malformed")
    kept = tuple(phrase for phrase in phrases if phrase not in NOTHING_SOUNDS)
    return FrameAnswer(kept, "ok" if kept else "silent")


def _align_entries(entries: list[str], n_frames: int) -> tuple[list[str | None], list[str], bool]:
    """Assign answer lines to frames: by their ``frame N`` labels when every line has a distinct
    one, by position otherwise. Returns (text per frame or None, notes, ambiguous): more unlabelled
    lines than frames cannot be assigned, so the answer is ambiguous and every frame falls back."""
    labelled = [_split_label(entry) for entry in entries]
    texts = [text for _, text in labelled]
    labels = [label for label, _ in labelled if label is not None]
    notes: list[str] = []
    per_frame: list[str | None] = [None] * n_frames
    if len(labels) == len(entries) and len(set(labels)) == len(labels):
        if 0 not in labels and max(labels) == n_frames:
            labels = [label - 1 for label in labels]
            notes.append("answer frame labels were 1-based")
        for label, text in zip(labels, texts):
            if label < n_frames:
                per_frame[label] = text
            else:
                notes.append(f"ignored answer for frame {label} (clip has {n_frames}): {text!r}")
        return per_frame, notes, False
    if labels:
        notes.append("answer frame labels missing or repeated; aligned answers by position")
    if len(texts) > n_frames:
        notes.append(f"{len(texts)} unlabelled answers for {n_frames} frames: cannot tell which is which")
        return per_frame, notes, True
    for t, text in enumerate(texts):
        per_frame[t] = text
    return per_frame, notes, False


def _parse_per_frame(response: str, n_frames: int, max_phrase_words: int) -> ParsedResponse:
    blocks = _answer_blocks(response)
    if not blocks:
        return ParsedResponse((FrameAnswer((), "missing"),) * n_frames, ("no <answer> tag in response",))
    entries = [line for block in blocks for line in _block_lines(block)]
    per_frame, notes, ambiguous = _align_entries(entries, n_frames)
    if ambiguous:
        return ParsedResponse((FrameAnswer((), "malformed"),) * n_frames, tuple(notes))
    answers = tuple(
        FrameAnswer((), "missing") if text is None else parse_answer_text(text, max_phrase_words=max_phrase_words)
        for text in per_frame
    )
    return ParsedResponse(answers, tuple(notes))


def _parse_single(response: str, n_frames: int, max_phrase_words: int) -> ParsedResponse:
    """The ``model`` strategy: one final answer (the last block) applies to every frame."""
    blocks = _answer_blocks(response)
    if not blocks:
        return ParsedResponse((FrameAnswer((), "missing"),) * n_frames, ("no <answer> tag in response",))
    notes = (f"{len(blocks)} answer blocks; used the last",) if len(blocks) > 1 else ()
    answer = parse_answer_text(blocks[-1], max_phrase_words=max_phrase_words)
    return ParsedResponse((answer,) * n_frames, notes)


# --- strategies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """One OpenAVS translation strategy: how to lay out the user message and read the answer.

    ``layout``: ``flat`` (one audio description per frame, ``basic``/``frame``), ``nested`` (all
    audio descriptions of a frame as ``<expN>``, ``prompt``/``prompt_frame``) or ``agents``
    (``model``: image and audio descriptions as independent agents, one final answer).
    """

    name: str
    layout: Layout

    @property
    def prompt_file(self) -> Path:
        """The packaged system prompt of this strategy."""
        return PROMPTS_DIR / f"{self.name}.txt"

    def source_texts(self, frame: FrameDescriptions) -> tuple[str, ...]:
        """The audio descriptions this strategy translates for a frame; also the per-frame fallback
        when the answer is missing or malformed."""
        return frame.audio[:1] if self.layout == "flat" else frame.audio

    def build_requests(self, clip: ClipDescriptions, *, model_scope: ModelScope = "frame") -> list[ChatRequest]:
        """The LLM calls for one clip.

        The per-frame strategies make one call covering every frame. ``model`` makes one call per
        frame (``model_scope="frame"``, the paper's Appendix F.5 input: one frame's image and audio
        agents) or one call for the whole clip (``"clip"``: agents of all frames, numbered in
        frame order, one answer applied to every frame).
        """
        self._validate(clip)
        frames = clip.frames
        if self.layout == "flat":
            body = "\n".join(f"<frame{t}>{_one_line(f.audio[0])}</frame{t}>" for t, f in enumerate(frames))
            return [ChatRequest(tuple(range(len(frames))), body)]
        if self.layout == "nested":
            body = "\n".join(
                f"<frame{t}>"
                + "".join(f"<exp{k}>{_one_line(text)}</exp{k}>" for k, text in enumerate(f.audio, start=1))
                + f"</frame{t}>"
                for t, f in enumerate(frames)
            )
            return [ChatRequest(tuple(range(len(frames))), body)]
        if model_scope == "frame":
            return [ChatRequest((t,), _agents_message([f])) for t, f in enumerate(frames)]
        if model_scope == "clip":
            return [ChatRequest(tuple(range(len(frames))), _agents_message(frames))]
        raise ValueError(f"model_scope must be 'frame' or 'clip', got {model_scope!r}")

    def parse(self, response: str, n_frames: int, *, max_phrase_words: int = 8) -> ParsedResponse:
        """Parse a response to a request covering ``n_frames`` frames (one answer per frame)."""
        if self.layout == "agents":
            return _parse_single(response, n_frames, max_phrase_words)
        return _parse_per_frame(response, n_frames, max_phrase_words)

    def _validate(self, clip: ClipDescriptions) -> None:
        for t, frame in enumerate(clip.frames):
            if self.layout != "agents" and not frame.audio:
                raise ValueError(
                    f"clip {clip.clip_id!r} frame {t}: no audio description; strategy {self.name!r} needs one"
                )
            if self.layout == "agents" and not (frame.audio or frame.image):
                raise ValueError(f"clip {clip.clip_id!r} frame {t}: no audio or image description")


def _agents_message(frames: Sequence[FrameDescriptions]) -> str:
    images = [text for frame in frames for text in frame.image]
    audios = [text for frame in frames for text in frame.audio]
    lines = [f"Image agent {i}: {_one_line(text)}" for i, text in enumerate(images)]
    lines += [f"Audio agent {j}: {_one_line(text)}" for j, text in enumerate(audios)]
    return "\n".join(lines)


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        Strategy("basic", "flat"),
        Strategy("prompt", "nested"),
        Strategy("frame", "flat"),
        Strategy("prompt_frame", "nested"),
        Strategy("model", "agents"),
    )
}


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name`` (one of :data:`STRATEGIES`)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown LLM translation strategy {name!r}; available: {sorted(STRATEGIES)}") from None
