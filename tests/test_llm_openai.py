"""The ``openai`` LLM translator against a real HTTP server on 127.0.0.1 speaking /v1/chat/completions.

The server (``http.server.ThreadingHTTPServer`` in a thread) records every request body and header,
counts requests in flight, can be told to fail with given status codes, and answers by echoing the
first description of each frame, so results can be checked by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from chat_server import ChatCompletionsServer, Reply

from pseudolabel import llm
from pseudolabel.llm.openai_backend import retry_after_seconds

PROMPTS = Path(llm.__file__).parent / "prompts"
USAGE = (1000, 200)  # prompt / completion tokens the server reports for every response
GPT4O_MINI_COST = (1000 * 0.15 + 200 * 0.60) / 1e6  # USD per response at $0.15 / $0.60 per 1M


def echo_answer(body: dict[str, Any]) -> str:
    """Answer each frame with its first description (the ``model`` layout: with Audio agent 0's)."""
    user = body["messages"][1]["content"]
    if "agent 0:" in user:
        first_audio = re.search(r"^Audio agent 0: (.*)$", user, re.MULTILINE).group(1)
        return f"Image agent 0 and Audio agent 0 agree.\n<answer>{first_audio}</answer>"
    frames = re.findall(r"<frame(\d+)>(?:<exp1>)?(.*?)(?:</exp1>|</frame)", user)
    return "\n".join(f"<answer>{text}</answer>" for _, text in frames)


class FakeChatServer(ChatCompletionsServer):
    """A minimal OpenAI-compatible chat-completions server for tests."""

    usage = USAGE

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.failures: deque[Reply] = deque()  # replies queued ahead of the normal answers
        self.answer: Callable[[dict[str, Any]], str] = echo_answer
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__()

    def fail_next(
        self, status: int, headers: dict[str, str] | None = None, message: str = "failure", code: str | None = None
    ) -> None:
        """Make the next request fail with ``status`` (queued, first in first out)."""
        self.failures.append((status, {"error": {"message": message, "type": "test", "code": code}}, headers or {}))

    def raw_next(self, data: bytes, content_type: str) -> None:
        """Make the next request answer 200 with ``data`` as its body (a broken proxy, a captive portal)."""
        self.failures.append((200, data, {"Content-Type": content_type}))

    def respond(self, body: dict[str, Any], request: Any) -> Reply:
        with self.lock:
            self.authorizations.append(request.headers.get("Authorization", ""))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            if request.path != "/v1/chat/completions":
                return 404, {}, {}
            with self.lock:
                if self.failures:
                    return self.failures.popleft()
            return super().respond(body, request)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as fake:
        yield fake


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    return key


def translator(server: FakeChatServer, **cfg: Any) -> llm.Translator:
    cfg.setdefault("backoff_base_s", 0.01)
    return llm.create("openai", base_url=server.url, **cfg)


CLIP = llm.ClipDescriptions.from_lists(
    "clip_a",
    audio=[["A dog is barking.", "dog", "barking  sounds"], ["man", "speech", "a man\ntalks"]],
    image=[["A brown dog on grass."], ["A man and a dog."]],
)

EXPECTED_USER = {
    "basic": "<frame0>A dog is barking.</frame0>\n<frame1>man</frame1>",
    "frame": "<frame0>A dog is barking.</frame0>\n<frame1>man</frame1>",
    "prompt": (
        "<frame0><exp1>A dog is barking.</exp1><exp2>dog</exp2><exp3>barking sounds</exp3></frame0>\n"
        "<frame1><exp1>man</exp1><exp2>speech</exp2><exp3>a man talks</exp3></frame1>"
    ),
    "model": [
        "Image agent 0: A brown dog on grass.\n"
        "Audio agent 0: A dog is barking.\nAudio agent 1: dog\nAudio agent 2: barking sounds",
        "Image agent 0: A man and a dog.\nAudio agent 0: man\nAudio agent 1: speech\nAudio agent 2: a man talks",
    ],
}
EXPECTED_USER["prompt_frame"] = EXPECTED_USER["prompt"]


@pytest.mark.parametrize("strategy", ["basic", "prompt", "frame", "prompt_frame", "model"])
def test_request_carries_prompt_file_and_strategy_layout(server: FakeChatServer, api_key: str, strategy: str) -> None:
    result = translator(server, strategy=strategy, model_scope="frame").translate(CLIP)

    expected_users = EXPECTED_USER[strategy]
    expected_users = expected_users if isinstance(expected_users, list) else [expected_users]
    prompt_bytes = (PROMPTS / f"{strategy}.txt").read_bytes()
    assert sorted(body["messages"][1]["content"] for body in server.bodies) == sorted(expected_users)
    for body in server.bodies:
        system, user = body["messages"]
        assert system["role"] == "system" and user["role"] == "user"
        assert system["content"].encode("utf-8") == prompt_bytes
        assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.0
    assert server.authorizations == [f"Bearer {api_key}"] * len(expected_users)
    # The echo server answers each frame with the description it was shown first.
    assert result.phrases == [["a dog is barking"], ["man"]]
    assert result.record.frame_status == ["ok", "ok"]
    assert result.record.strategy == strategy and result.record.backend == "openai"


def test_model_scope_clip_makes_one_request_for_all_frames(server: FakeChatServer, api_key: str) -> None:
    result = translator(server, strategy="model", model_scope="clip").translate(CLIP)

    assert len(server.bodies) == 1
    assert server.bodies[0]["messages"][1]["content"] == (
        "Image agent 0: A brown dog on grass.\nImage agent 1: A man and a dog.\n"
        "Audio agent 0: A dog is barking.\nAudio agent 1: dog\nAudio agent 2: barking sounds\n"
        "Audio agent 3: man\nAudio agent 4: speech\nAudio agent 5: a man talks"
    )
    assert result.phrases == [["a dog is barking"], ["a dog is barking"]]


def test_custom_prompt_file_is_sent_verbatim(server: FakeChatServer, api_key: str, tmp_path: Path) -> None:
    prompt = tmp_path / "mine.txt"
    prompt.write_bytes("Name the sounding objects – per frame.\n\n".encode("utf-8"))
    translator(server, strategy="basic", prompt_file=prompt).translate(CLIP)
    assert server.bodies[0]["messages"][0]["content"].encode("utf-8") == prompt.read_bytes()


def test_concurrency_limit_is_respected_and_order_kept(server: FakeChatServer, api_key: str) -> None:
    server.delay_s = 0.2
    clips = [llm.ClipDescriptions.from_lists(f"c{i}", audio=[[f"source {i}"]]) for i in range(6)]

    results = translator(server, strategy="prompt_frame", concurrency=2).translate_many(clips)

    assert len(server.bodies) == 6
    assert server.max_in_flight == 2
    assert [r.phrases for r in results] == [[[f"source {i}"]] for i in range(6)]
    assert [r.record.clip_id for r in results] == [f"c{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("status", "headers"), [(429, {"Retry-After": "0"}), (500, {}), (503, {"retry-after-ms": "5"})]
)
def test_retryable_error_then_success(server: FakeChatServer, api_key: str, status: int, headers: dict) -> None:
    server.fail_next(status, headers)
    result = translator(server, max_retries=2).translate(CLIP)
    assert len(server.bodies) == 2
    assert result.record.frame_status == ["ok", "ok"]


def test_retry_after_above_limit_is_not_retried(server: FakeChatServer, api_key: str) -> None:
    server.fail_next(429, {"Retry-After": "5"})
    with pytest.raises(llm.TranslationError, match=r"clip 'clip_a'.*1 attempt.*HTTP 429.*retry after 5 s"):
        translator(server, max_retries=3, max_retry_after_s=1.0).translate(CLIP)
    assert len(server.bodies) == 1


def test_retries_are_bounded_and_client_errors_not_retried(server: FakeChatServer, api_key: str) -> None:
    for _ in range(3):
        server.fail_next(502)
    with pytest.raises(llm.TranslationError, match=r"3 attempt.*HTTP 502"):
        translator(server, max_retries=2).translate(CLIP)
    assert len(server.bodies) == 3  # our retries only: the client's own are disabled

    server.fail_next(400, message="bad request")
    with pytest.raises(llm.TranslationError, match=r"HTTP 400.*bad request"):
        translator(server, max_retries=2).translate(CLIP)
    assert len(server.bodies) == 4

    server.fail_next(429, message="You exceeded your current quota", code="insufficient_quota")
    with pytest.raises(llm.TranslationError, match=r"1 attempt.*HTTP 429.*quota"):
        translator(server, max_retries=2).translate(CLIP)
    assert len(server.bodies) == 5


@pytest.mark.parametrize(
    ("data", "content_type", "shown"),
    [
        (b"<html><body>502 Bad Gateway (proxy)</body></html>", "text/html", "502 Bad Gateway (proxy)"),
        (b"{not json", "application/json", "{not json"),
        (b'{"id": "x", "object": "chat.completion"}', "application/json", '"object":"chat.completion"'),
    ],
)
def test_malformed_bodies_are_retried_then_fail_naming_the_endpoint(
    server: FakeChatServer, api_key: str, data: bytes, content_type: str, shown: str
) -> None:
    server.raw_next(data, content_type)
    result = translator(server, max_retries=2).translate(CLIP)  # retried like a 5xx, then answered
    assert len(server.bodies) == 2 and result.record.frame_status == ["ok", "ok"]

    for _ in range(3):
        server.raw_next(data, content_type)
    with pytest.raises(llm.TranslationError) as caught:
        translator(server, max_retries=2).translate(CLIP)
    message = str(caught.value)
    assert f"{server.url}: invalid response (" in message and "3 attempt(s)" in message
    assert shown in message  # the start of what came back
    assert len(server.bodies) == 5


def test_empty_or_unparseable_answers_are_never_cached(server: FakeChatServer, api_key: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for answer in ("", "I cannot tell what makes the sound."):
        server.answer = lambda body, text=answer: text
        first = translator(server, cache_dir=cache).translate(CLIP)
        assert first.record.frame_status == ["fallback:missing", "fallback:missing"]
        assert not list(cache.rglob("*.json"))
        sent = len(server.bodies)
        again = translator(server, cache_dir=cache).translate(CLIP)
        assert len(server.bodies) == sent + 1 and not again.record.cache_hit  # asked again, not served stale
    server.answer = echo_answer
    translator(server, cache_dir=cache).translate(CLIP)
    assert len(list(cache.rglob("*.json"))) == 1  # a good answer is cached


def test_failed_clip_is_returned_in_its_slot(server: FakeChatServer, api_key: str) -> None:
    def answer(body: dict[str, Any]) -> str:
        return "<answer>dog</answer>"

    server.answer = answer
    server.fail_next(400)
    clips = [llm.ClipDescriptions.from_lists(f"c{i}", audio=[["dog"]]) for i in range(2)]
    results = translator(server, max_retries=0, concurrency=1).translate_many(clips, return_exceptions=True)
    assert isinstance(results[0], llm.TranslationError) and "'c0'" in str(results[0])
    assert results[1].phrases == [["dog"]]


def test_malformed_answer_falls_back_per_frame(server: FakeChatServer, api_key: str) -> None:
    server.answer = lambda body: (
        "<answer>Dog, MAN</answer>\n"
        "<answer>the sound in this frame clearly comes from a man who is talking loudly</answer>"
    )
    clip = llm.ClipDescriptions.from_lists(
        "c", audio=[["a dog barks", "dog"], ["a man talks", "speech"], ["Wind.", "wind"]]
    )

    result = translator(server, strategy="prompt_frame").translate(clip)

    assert result.phrases == [["dog", "man"], ["a man talks", "speech"], ["wind"]]
    assert result.record.frame_status == ["ok", "fallback:malformed", "fallback:missing"]
    assert result.record.fallback_frames == [1, 2] and result.record.fallback_used
    assert result.record.raw_responses == [server.answer({})]


def test_second_identical_run_is_served_from_cache(server: FakeChatServer, api_key: str, tmp_path: Path) -> None:
    clips = [llm.ClipDescriptions.from_lists(f"c{i}", audio=[[f"source {i}", "x"], ["none", "y"]]) for i in range(3)]
    first = translator(server, cache_dir=tmp_path / "cache").translate_many(clips)
    assert len(server.bodies) == 3
    assert all(r.record.cost_usd == pytest.approx(GPT4O_MINI_COST) and not r.record.cache_hit for r in first)

    second = translator(server, cache_dir=tmp_path / "cache").translate_many(clips)

    assert len(server.bodies) == 3  # no new request
    assert [r.phrases for r in second] == [r.phrases for r in first] == [[[f"source {i}"], []] for i in range(3)]
    assert all(r.record.cache_hit and r.record.cost_usd == 0.0 for r in second)
    assert [r.record.raw_responses for r in second] == [r.record.raw_responses for r in first]
    assert all((r.record.prompt_tokens, r.record.completion_tokens) == USAGE for r in second)

    translator(server, cache_dir=tmp_path / "cache", temperature=0.5).translate(clips[0])
    assert len(server.bodies) == 4  # temperature is part of the key


def test_partly_cached_clip_counts_each_cache_hit(server: FakeChatServer, api_key: str, tmp_path: Path) -> None:
    from pseudolabel.openavs import llm_summary

    # model_scope="frame": one request per frame, keyed by that frame's descriptions only, so a clip
    # sharing frame 0 with CLIP gets frame 0 from the cache and sends frame 1.
    llm_translator = translator(server, strategy="model", model_scope="frame", cache_dir=tmp_path / "cache")
    first = llm_translator.translate(CLIP)
    assert len(server.bodies) == 2 and first.record.cache_hits == 0 and first.record.calls == 2
    partly = llm.ClipDescriptions(
        "clip_b", (CLIP.frames[0], llm.FrameDescriptions(("a cat meows",), ("A cat on a sofa.",)))
    )

    record = llm_translator.translate(partly).record

    assert len(server.bodies) == 3  # only frame 1 was sent
    assert server.bodies[-1]["messages"][1]["content"] == "Image agent 0: A cat on a sofa.\nAudio agent 0: a cat meows"
    assert (record.requests, record.cache_hits, record.calls) == (2, 1, 1)
    assert not record.cache_hit  # not every request was a hit
    assert record.cost_usd == pytest.approx(GPT4O_MINI_COST)  # one response paid for, the cached one free
    assert (record.prompt_tokens, record.completion_tokens) == (2 * USAGE[0], 2 * USAGE[1])
    assert record.to_dict()["cache_hits"] == 1 and record.to_dict()["cache_hit"] is False
    summary = llm_summary(record)
    assert (summary["requests"], summary["calls"], summary["cache_hits"]) == (2, 1, 1)

    again = llm_translator.translate(partly).record
    assert len(server.bodies) == 3 and (again.cache_hits, again.calls) == (2, 0) and again.cache_hit
    with pytest.raises(ValueError, match=r"cache_hits=3 is not within 0..2"):
        dataclasses.replace(record, cache_hits=3)


def test_one_session_shares_the_concurrency_limit_across_calls(server: FakeChatServer, api_key: str) -> None:
    server.delay_s = 0.15
    clips = [llm.ClipDescriptions.from_lists(f"c{i}", audio=[[f"source {i}"]]) for i in range(4)]
    llm_translator = translator(server, strategy="prompt_frame", concurrency=1)

    async def one_session() -> list[llm.Translation]:
        async with llm_translator.session() as session:
            assert session.is_open
            # Separate translate() calls, all in flight together, still queue on the session's one slot.
            results = await asyncio.gather(*(session.translate(clip) for clip in clips))
        assert not session.is_open
        return list(results)

    results = asyncio.run(one_session())
    assert [r.phrases for r in results] == [[[f"source {i}"]] for i in range(4)]
    assert len(server.bodies) == 4 and server.max_in_flight == 1

    async def two_sessions() -> None:  # each session has its own limit
        first, second = llm_translator.session(), llm_translator.session()
        await first.open()
        await second.open()
        try:
            await asyncio.gather(*(s.translate(clip) for s, clip in zip([first, second] * 2, clips)))
        finally:
            await first.close()
            await second.close()

    asyncio.run(two_sessions())
    assert len(server.bodies) == 8 and server.max_in_flight == 2


def test_session_must_be_open_and_checks_its_input(server: FakeChatServer, api_key: str) -> None:
    llm_translator = translator(server)

    async def misuse() -> None:
        session = llm_translator.session()
        with pytest.raises(RuntimeError, match="session is not open yet"):
            await session.translate(CLIP)
        async with session:
            with pytest.raises(TypeError, match=r"clips\[0\] is str, expected ClipDescriptions"):
                await session.translate("clip_a")  # type: ignore[arg-type]
            with pytest.raises(RuntimeError, match="already opened"):
                await session.open()
        with pytest.raises(RuntimeError, match="session is closed"):
            await session.translate_many([CLIP])
        await session.close()  # closing twice is harmless

    asyncio.run(misuse())
    assert server.bodies == []


def test_api_key_never_reaches_cache_records_reprs_or_errors(
    server: FakeChatServer, api_key: str, tmp_path: Path
) -> None:
    llm_translator = translator(server, cache_dir=tmp_path / "cache", strategy="model", model_scope="frame")
    result = llm_translator.translate(CLIP)
    assert server.authorizations and all(auth == f"Bearer {api_key}" for auth in server.authorizations)

    cache_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(cache_files) == 2
    assert all(api_key not in p.read_text(encoding="utf-8") for p in cache_files)
    assert api_key not in json.dumps(result.record.to_dict())
    assert api_key not in repr(llm_translator)

    server.fail_next(401, message=f"Incorrect API key provided: {api_key}")
    with pytest.raises(llm.TranslationError) as failure:
        translator(server).translate(CLIP)
    assert "HTTP 401" in str(failure.value) and api_key not in str(failure.value)


def test_api_key_from_configured_env_var(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-other")
    translator(server, api_key_env="MY_LLM_KEY").translate(CLIP)
    assert server.authorizations == ["Bearer sk-test-other"]

    monkeypatch.delenv("MY_LLM_KEY")
    with pytest.raises(llm.TranslationError, match="MY_LLM_KEY"):
        llm.create("openai", api_key_env="MY_LLM_KEY").translate(CLIP)


def test_cost_uses_the_price_table(server: FakeChatServer, api_key: str) -> None:
    priced = translator(server, model="my-model", prices={"my-model": [1.0, 2.0]}).translate(CLIP)
    assert priced.record.cost_usd == pytest.approx((1000 * 1.0 + 200 * 2.0) / 1e6)
    assert priced.record.model == "my-model" and server.bodies[-1]["model"] == "my-model"
    unpriced = translator(server, model="local-llama").translate(CLIP)
    assert unpriced.record.cost_usd is None
    assert (unpriced.record.prompt_tokens, unpriced.record.completion_tokens) == USAGE


def test_retry_after_header_parsing() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a past date
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
