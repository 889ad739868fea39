"""The LLM translator interface, its per-clip record, the shared chat machinery and the ``llm`` registry.

A translator turns one clip's per-frame descriptions (:class:`ClipDescriptions`: for each frame a
list of audio descriptions, one per ALM prompt/model, and optionally image descriptions) into
per-frame object-phrase lists for the text-prompted segmenter, plus a :class:`TranslationRecord`
for the pseudo-label manifest (raw responses, parse status per frame, fallbacks, tokens, cost,
cache hits, latency).

Backends, by registry name:

- ``openai``: any OpenAI-compatible chat endpoint (``openai_backend.py``),
- ``hf``: a local transformers chat model (``hf_backend.py``),
- ``none``: no LLM; the raw ALM descriptions are the phrases (the paper's "Pengi output" baseline).

Every translator offers ``translate(clip)``, ``translate_many(clips)`` and their ``async`` twins. A
long-running job that translates clips as they arrive opens one :class:`TranslationSession` instead, so
every clip shares one HTTP client (or loaded model) and one concurrency limit::

    async with translator.session() as session:
        translation = await session.translate(clip)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Mapping, Sequence

from pseudolabel.components import LLM, Component
from pseudolabel.llm.cache import ResponseCache, request_key
from pseudolabel.llm.strategies import (
    ChatRequest,
    ClipDescriptions,
    FrameAnswer,
    FrameDescriptions,
    ModelScope,
    get_strategy,
    load_prompt,
    unique_phrases,
)

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class TranslationError(RuntimeError):
    """An LLM request failed for good (not retryable, or retries exhausted)."""


@dataclass
class TranslationRecord:
    """What happened while translating one clip (JSON-serialisable via :meth:`to_dict`).

    Attributes:
        clip_id: the clip.
        backend: registry name of the translator (``openai``, ``hf``, ``none``).
        model: the LLM (None for ``none``).
        strategy: the translation strategy (None for ``none``).
        prompt_sha256: SHA-256 of the system prompt text used (None for ``none``).
        raw_responses: the LLM's text, one per request (one per clip, or one per frame for the
            ``model`` strategy with ``model_scope="frame"``).
        frame_status: per frame ``ok``, ``silent`` (the LLM said nothing sounds),
            ``fallback:missing`` / ``fallback:malformed`` (the untranslated text was used) or
            ``raw`` (``none`` backend).
        fallback_frames: indices of the frames that fell back to the untranslated text.
        parse_notes: irregularities met while parsing (extra answers, 1-based labels, ...).
        prompt_tokens, completion_tokens: token usage of the responses used, cached ones included.
        cost_usd: what this run paid, from the price table (cache hits are free); None when the
            model has no price entry.
        cache_hits: how many of the clip's requests (``len(raw_responses)``) were served from the disk
            cache; the others were sent to the LLM.
        latency_s: seconds spent in LLM calls for this clip (excluding waits for a concurrency slot).
    """

    clip_id: str
    backend: str
    model: str | None
    strategy: str | None
    prompt_sha256: str | None
    raw_responses: list[str]
    frame_status: list[str]
    fallback_frames: list[int]
    parse_notes: list[str]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cache_hits: int
    latency_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.cache_hits <= len(self.raw_responses):
            raise ValueError(
                f"clip {self.clip_id!r}: cache_hits={self.cache_hits} is not within 0..{len(self.raw_responses)} "
                "(the number of requests)"
            )

    @property
    def requests(self) -> int:
        """Number of LLM requests the clip needed (cached or sent)."""
        return len(self.raw_responses)

    @property
    def calls(self) -> int:
        """Number of requests actually sent to the LLM (not served from the cache)."""
        return self.requests - self.cache_hits

    @property
    def cache_hit(self) -> bool:
        """Every request of the clip was served from the disk cache (False when there was none)."""
        return self.requests > 0 and self.cache_hits == self.requests

    @property
    def fallback_used(self) -> bool:
        """Whether any frame fell back to the untranslated text."""
        return bool(self.fallback_frames)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for the manifest (with ``cache_hit`` too, for readers of older records)."""
        return {**asdict(self), "cache_hit": self.cache_hit}


@dataclass
class Translation:
    """A translator's result for one clip: ``phrases[t]`` lists the sounding-object phrases of frame
    ``t`` (lower-case, deduplicated; empty means nothing sounds, i.e. an empty mask)."""

    phrases: list[list[str]]
    record: TranslationRecord


@dataclass(frozen=True)
class Completion:
    """One chat response: its text and token usage (0 when the server does not report it)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


CompleteFn = Callable[[Messages], Awaitable[Completion]]


@dataclass(frozen=True)
class ChatReply:
    """The answer to one free-form chat request (:meth:`TranslationSession.chat`).

    Attributes:
        text: the answer.
        prompt_tokens, completion_tokens: token usage (a cached answer's stored usage).
        cache_hit: served from the disk cache (nothing was sent).
        latency_s: seconds the request took (0 for a cache hit).
        cost_usd: what this request cost (0 for a cache hit); None when the model has no price entry.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    cache_hit: bool
    latency_s: float
    cost_usd: float | None


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any message carries a non-text content part (an image)."""
    return any(
        isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]) for m in messages
    )


def without_image_data(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each ``image_url`` data URL replaced by the SHA-256 of its text (what a cache
    entry records of a request: the image itself is in the cache key, not in the file)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                url = (part.get("image_url") or {}).get("url") if part.get("type") == "image_url" else None
                if isinstance(url, str) and url.startswith("data:"):
                    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
                    part = {**part, "image_url": {**part["image_url"], "url": f"sha256:{digest}"}}
                parts.append(part)
            message = {**message, "content": parts}
        out.append(dict(message))
    return out


def _check_clips(clips: Sequence[ClipDescriptions]) -> None:
    for index, clip in enumerate(clips):
        if not isinstance(clip, ClipDescriptions):
            raise TypeError(f"clips[{index}] is {type(clip).__name__}, expected ClipDescriptions")


class TranslationSession:
    """An open translator run: clips translated through it share the translator's per-run state (one
    HTTP client or loaded model, one ``concurrency`` limit on LLM calls in flight).

    Get one from :meth:`Translator.session` and use it as an async context manager, or call
    :meth:`open` and :meth:`close` yourself (e.g. when clips arrive over a whole job)::

        async with translator.session() as session:
            first = await session.translate(clip_a)
            rest = await session.translate_many([clip_b, clip_c], return_exceptions=True)

    All calls, ``open`` and ``close`` included, must run on the same event loop: the per-run state
    (an ``httpx`` client, an ``asyncio.Semaphore``) belongs to the loop that opened it. Clips may be
    translated concurrently (several ``translate`` coroutines at once).
    """

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self._context: Any = None
        self._state: Any = None
        self._closed = False

    @property
    def is_open(self) -> bool:
        return self._context is not None and not self._closed

    async def open(self) -> TranslationSession:
        """Create the per-run state (e.g. the HTTP client); a session opens once."""
        if self._context is not None or self._closed:
            raise RuntimeError(f"this {type(self.translator).__name__} session was already opened")
        context = self.translator._session()
        self._state = await context.__aenter__()
        self._context = context
        return self

    async def close(self) -> None:
        """Release the per-run state; translations in progress should be finished first. Idempotent."""
        if self._context is None or self._closed:
            self._closed = True
            return
        self._closed = True
        context, self._context, self._state = self._context, None, None
        await context.__aexit__(None, None, None)

    async def __aenter__(self) -> TranslationSession:
        return await self.open()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def _check_open(self) -> None:
        if not self.is_open:
            state = "closed" if self._closed else "not open yet"
            raise RuntimeError(
                f"the {type(self.translator).__name__} session is {state}; "
                "use `async with translator.session() as session:` or `await session.open()`"
            )

    async def translate(self, clip: ClipDescriptions) -> Translation:
        """Translate one clip within this session."""
        _check_clips([clip])
        self._check_open()
        return await self.translator._translate_clip(clip, self._state)

    async def chat(self, messages: list[dict[str, Any]], *, cache_if: Callable[[str], bool] | None = None) -> ChatReply:
        """One chat request of any layout (e.g. a text part and an image part, AL-Ref-SAM2's frame strip)
        through this session: the translator's disk cache, concurrency limit, retries and prices, no
        strategy parsing. A fresh non-empty answer is cached when ``cache_if(text)`` is true (default:
        always), so an answer the caller cannot use is asked again next run."""
        self._check_open()
        translator = self.translator
        if not isinstance(translator, ChatTranslator):
            raise TypeError(f"{type(translator).__name__} is not a chat LLM; chat() needs the openai or hf backend")
        if has_images(messages) and not translator.takes_images:
            raise TranslationError(
                f"the {translator.name} translator takes text only and this request carries an image; use an "
                "endpoint with image input (llm=openai with a vision model) or a local VLM (labeler/vlm=...)"
            )
        outcome = await translator._request(messages, self._state)
        text = outcome.completion.text
        translator._remember(outcome, usable=cache_if(text) if cache_if is not None else True)
        completion = outcome.completion
        return ChatReply(
            text=text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cache_hit=outcome.cache_hit,
            latency_s=outcome.latency_s,
            cost_usd=0.0 if outcome.cache_hit else translator.cost_usd(
                completion.prompt_tokens, completion.completion_tokens
            ),
        )

    async def translate_many(
        self, clips: Sequence[ClipDescriptions], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Translate ``clips`` concurrently within this session; results in input order.

        With ``return_exceptions=True`` a clip that failed gives its exception in its slot (so a
        labeling job can mark it failed and go on); otherwise the first failure is raised after
        every clip has finished.
        """
        _check_clips(clips)
        self._check_open()
        results = await asyncio.gather(
            *(self.translator._translate_clip(clip, self._state) for clip in clips), return_exceptions=True
        )
        if not return_exceptions:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results


class Translator(Component, ABC):
    """Base class of every translator: per-clip translation, batched concurrently, with sync wrappers.

    Public API: :meth:`session` (a :class:`TranslationSession` for clips arriving over time),
    :meth:`translate_many_async` / :meth:`translate_async` (one session per call) and their blocking
    twins. Subclasses implement :meth:`_translate_clip` and, if they keep per-run state, :meth:`_session`.
    """

    name: ClassVar[str]

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        """Subclass hook: per-run state shared by the clips of one session (e.g. an HTTP client)."""
        yield None

    @abstractmethod
    async def _translate_clip(self, clip: ClipDescriptions, session: Any) -> Translation:
        """Subclass hook: translate one clip with the state yielded by :meth:`_session`."""

    def session(self) -> TranslationSession:
        """A new, not yet opened :class:`TranslationSession` (``async with translator.session() as s``)."""
        return TranslationSession(self)

    async def translate_many_async(
        self, clips: Sequence[ClipDescriptions], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Translate ``clips`` concurrently in one session; results in input order (see
        :meth:`TranslationSession.translate_many`)."""
        _check_clips(clips)
        async with self.session() as session:
            return await session.translate_many(clips, return_exceptions=return_exceptions)

    async def translate_async(self, clip: ClipDescriptions) -> Translation:
        """Translate one clip."""
        return (await self.translate_many_async([clip]))[0]

    def translate_many(self, clips: Sequence[ClipDescriptions], *, return_exceptions: bool = False) -> list[Any]:
        """Blocking :meth:`translate_many_async` (not callable from inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.translate_many_async(clips, return_exceptions=return_exceptions))
        raise RuntimeError(
            f"{type(self).__name__}.translate_many() was called inside a running event loop; "
            "await translate_many_async() instead"
        )

    def translate(self, clip: ClipDescriptions) -> Translation:
        """Blocking :meth:`translate_async`."""
        return self.translate_many([clip])[0]


# --- registry (the ``llm`` role of pseudolabel.components) ----------------------------------------------

register = LLM.register
create = LLM.create  # create("openai", strategy="prompt_frame", ...): the translator registered under that name
available = LLM.names


# --- the "none" translator -----------------------------------------------------------------------


@register("none")
class PassthroughTranslator(Translator):
    """No LLM: every audio description of a frame becomes one phrase, cleaned and deduplicated.

    It accepts the chat translators' options (``strategy``, ``temperature`` ...) and ignores them, so that
    ``llm=none`` works on any preset that tunes its LLM.
    """

    def __init__(self, **chat_options: Any) -> None:
        self.ignored_options = sorted(chat_options)

    def __repr__(self) -> str:
        return "PassthroughTranslator()"

    async def _translate_clip(self, clip: ClipDescriptions, session: Any) -> Translation:
        record = TranslationRecord(
            clip_id=clip.clip_id,
            backend=self.name,
            model=None,
            strategy=None,
            prompt_sha256=None,
            raw_responses=[],
            frame_status=["raw"] * len(clip.frames),
            fallback_frames=[],
            parse_notes=[],
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            cache_hits=0,
            latency_s=0.0,
        )
        return Translation([unique_phrases(frame.audio) for frame in clip.frames], record)


# --- shared chat-LLM machinery -------------------------------------------------------------------


@dataclass
class _ChatSession:
    complete: CompleteFn
    slots: asyncio.Semaphore


@dataclass
class _Outcome:
    completion: Completion
    cache_hit: bool
    latency_s: float
    key: str = ""
    request: dict[str, Any] | None = None  # what the cache records with a fresh answer


def _check_prices(prices: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    checked: dict[str, tuple[float, float]] = {}
    for model, pair in prices.items():
        values = tuple(float(value) for value in pair)
        if len(values) != 2 or min(values) < 0:
            raise ValueError(
                f"price of {model!r} must be [USD per 1M input tokens, USD per 1M output tokens] "
                f"(two non-negative numbers), got {list(pair)!r}"
            )
        checked[model] = (values[0], values[1])
    return checked


class ChatTranslator(Translator):
    """Translation through a chat LLM, shared by the ``openai`` and ``hf`` backends.

    Builds the strategy's messages (system prompt = the prompt file, verbatim), serves repeated
    requests from the disk cache, runs at most ``concurrency`` LLM calls at once, parses the
    answers per frame and falls back per frame to the untranslated audio text when an answer is
    missing or malformed. Subclasses provide :meth:`_open_backend`.

    Args:
        model: model name (API) or id / local directory (transformers).
        strategy: ``basic``, ``prompt``, ``frame``, ``prompt_frame`` (OpenAVS-Lite) or ``model``.
        prompt_file: a system-prompt file replacing the strategy's packaged one (e.g. the paper's
            exact wording); the user-message layout stays the strategy's.
        model_scope: for ``model``: ``clip`` (default: one call per clip listing every frame's image
            and audio descriptions, one answer applied to all its frames, as the issue specifies and
            the F.5 system prompt's "Image 0, Image 1, ... each a frame caption" reads) or ``frame``
            (one call per frame, the layout of the paper's single-image F.5 example).
        temperature, seed, max_tokens: generation settings (all part of the cache key).
        cache_dir: directory of the response cache; None disables caching.
        concurrency: maximum LLM calls in flight.
        prices: model name -> (USD per 1M input tokens, USD per 1M output tokens).
        max_phrase_words: an answer phrase longer than this is a sentence, not an object name:
            the frame is malformed and falls back.
    """

    takes_images: ClassVar[bool] = False  # the backend sends image content parts (TranslationSession.chat)

    def __init__(
        self,
        *,
        model: str,
        strategy: str = "prompt_frame",
        prompt_file: str | Path | None = None,
        model_scope: ModelScope = "clip",
        temperature: float = 0.0,
        seed: int | None = None,
        max_tokens: int = 1024,
        cache_dir: str | Path | None = None,
        concurrency: int = 8,
        prices: Mapping[str, Sequence[float]] | None = None,
        max_phrase_words: int = 8,
    ) -> None:
        if model_scope not in ("frame", "clip"):
            raise ValueError(f"model_scope must be 'frame' or 'clip', got {model_scope!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_tokens < 1 or max_phrase_words < 1:
            raise ValueError(f"max_tokens and max_phrase_words must be >= 1, got {max_tokens}, {max_phrase_words}")
        self.model = str(model)
        self.strategy = get_strategy(strategy)
        self.prompt_file = Path(prompt_file) if prompt_file is not None else self.strategy.prompt_file
        self.system_prompt = load_prompt(self.prompt_file)
        self.prompt_sha256 = hashlib.sha256(self.system_prompt.encode("utf-8")).hexdigest()
        self.model_scope = model_scope
        self.temperature = float(temperature)
        self.seed = seed
        self.max_tokens = int(max_tokens)
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.concurrency = int(concurrency)
        self.prices = _check_prices(prices or {})
        self.max_phrase_words = int(max_phrase_words)

    def _repr_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": self.strategy.name,
            "prompt_file": str(self.prompt_file),
            "cache_dir": None if self.cache is None else str(self.cache.directory),
            "concurrency": self.concurrency,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    @abstractmethod
    def _open_backend(self) -> Any:
        """An async context manager yielding a :data:`CompleteFn` (messages -> Completion)."""

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[_ChatSession]:
        async with self._open_backend() as complete:
            yield _ChatSession(complete, asyncio.Semaphore(self.concurrency))

    def messages(self, request: ChatRequest) -> Messages:
        """The chat messages of one request: the system prompt, then the strategy's user message."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": request.user_message},
        ]

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Price of the given token counts for this model, or None if it has no price entry."""
        price = self.prices.get(self.model)
        if price is None:
            return None
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6

    async def _request(self, messages: Messages, session: _ChatSession) -> _Outcome:
        """One LLM call, served from the cache when possible (before taking a concurrency slot)."""
        key = request_key(self.model, messages, self.temperature, self.seed, self.max_tokens)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            completion = Completion(
                cached["response"], int(cached.get("prompt_tokens", 0)), int(cached.get("completion_tokens", 0))
            )
            return _Outcome(completion, cache_hit=True, latency_s=0.0)
        async with session.slots:
            start = time.perf_counter()
            completion = await session.complete(messages)
            latency = time.perf_counter() - start
        request = {
            "model": self.model,
            "messages": without_image_data(messages),
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
        }
        return _Outcome(completion, cache_hit=False, latency_s=latency, key=key, request=request)

    def _remember(self, outcome: _Outcome, usable: bool) -> None:
        """Cache a fresh answer that parsed for every frame it covers; an empty or unparseable answer is
        never cached, so the next run asks again."""
        if self.cache is None or outcome.cache_hit or not usable or not outcome.completion.text.strip():
            return
        completion = outcome.completion
        self.cache.put(
            outcome.key,
            {
                "request": outcome.request,
                "response": completion.text,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
        )

    async def _translate_clip(self, clip: ClipDescriptions, session: _ChatSession) -> Translation:
        requests = self.strategy.build_requests(clip, model_scope=self.model_scope)
        try:
            outcomes = await asyncio.gather(*(self._request(self.messages(r), session) for r in requests))
        except TranslationError as exc:
            raise TranslationError(f"clip {clip.clip_id!r}: {exc}") from None
        phrases: list[list[str]] = [[] for _ in clip.frames]
        status = ["fallback:missing"] * len(clip.frames)
        notes: list[str] = []
        for request, outcome in zip(requests, outcomes):
            parsed = self.strategy.parse(
                outcome.completion.text, len(request.frames), max_phrase_words=self.max_phrase_words
            )
            prefix = f"frames {list(request.frames)}: " if len(requests) > 1 else ""
            notes.extend(prefix + note for note in parsed.notes)
            for t, answer in zip(request.frames, parsed.answers):
                phrases[t], status[t] = self._frame_result(clip.frames[t], answer)
            self._remember(outcome, usable=all(answer.status in ("ok", "silent") for answer in parsed.answers)
                           and len(parsed.answers) == len(request.frames))
        fallback_frames = [t for t, frame_status in enumerate(status) if frame_status.startswith("fallback")]
        if fallback_frames:
            log.info("clip %s: frames %s fell back to the untranslated text", clip.clip_id, fallback_frames)
        billed = [outcome.completion for outcome in outcomes if not outcome.cache_hit]
        record = TranslationRecord(
            clip_id=clip.clip_id,
            backend=self.name,
            model=self.model,
            strategy=self.strategy.name,
            prompt_sha256=self.prompt_sha256,
            raw_responses=[outcome.completion.text for outcome in outcomes],
            frame_status=status,
            fallback_frames=fallback_frames,
            parse_notes=notes,
            prompt_tokens=sum(outcome.completion.prompt_tokens for outcome in outcomes),
            completion_tokens=sum(outcome.completion.completion_tokens for outcome in outcomes),
            cost_usd=self.cost_usd(
                sum(c.prompt_tokens for c in billed), sum(c.completion_tokens for c in billed)
            ),
            cache_hits=sum(1 for outcome in outcomes if outcome.cache_hit),
            latency_s=sum(outcome.latency_s for outcome in outcomes),
        )
        return Translation(phrases, record)

    def _frame_result(self, frame: FrameDescriptions, answer: FrameAnswer) -> tuple[list[str], str]:
        """A frame's phrases and status: the parsed answer, or the untranslated text if the answer is
        missing or malformed."""
        if answer.status in ("ok", "silent"):
            return list(answer.phrases), answer.status
        return unique_phrases(self.strategy.source_texts(frame)), f"fallback:{answer.status}"
