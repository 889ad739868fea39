"""The ``openai`` translator: any OpenAI-compatible chat-completions endpoint.

Works with the OpenAI API (default model ``gpt-4o-mini``, the paper's LLM) and with local servers
speaking the same protocol through ``base_url`` (vLLM: ``http://localhost:8000/v1``, Ollama:
``http://localhost:11434/v1``).

- API key: read from the environment only (``OPENAI_API_KEY`` or the variable named by
  ``api_key_env``), when the first request that the cache cannot answer is made. It is handed to the
  client and nowhere else: not to logs, reprs, records, errors or cache files. With a ``base_url``
  and no key set, the placeholder ``EMPTY`` is sent (local servers ignore it).
- Retries are ours alone (the client is built with ``max_retries=0``): HTTP 408/409/429/5xx
  (except a 429 for exhausted quota), timeouts and connection errors are retried up to
  ``max_retries`` times, waiting what the server's ``Retry-After`` (or ``retry-after-ms``) asks
  for, else an exponential backoff with jitter. A ``Retry-After`` above ``max_retry_after_s`` is
  not retried, as the openai client does.
- Cost: token usage times a price table in USD per 1M input / output tokens (default gpt-4o-mini:
  $0.15 / $0.60, OpenAI's list price; the paper reports $0.000154 per video for OpenAVS-Lite).

``openai`` is imported only when a request is made, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping, Sequence

from pseudolabel.llm.base import (
    ChatTranslator,
    CompleteFn,
    Completion,
    Messages,
    TranslationError,
    register,
)

log = logging.getLogger(__name__)

#: USD per 1M (input, output) tokens. OpenAI list price of gpt-4o-mini.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {"gpt-4o-mini": (0.15, 0.60)}

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_KEY_PLACEHOLDER = "EMPTY"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds a response asks to wait (``retry-after-ms``, ``retry-after`` in seconds or as an HTTP
    date), or None if it does not say."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@register("openai")
class OpenAITranslator(ChatTranslator):
    """Translator over an OpenAI-compatible endpoint (see the module docstring).

    Args:
        model: chat model name on the endpoint.
        base_url: endpoint root including ``/v1``; None for the OpenAI API (or ``OPENAI_BASE_URL``).
        api_key_env: name of the environment variable holding the API key.
        timeout_s: per-request timeout.
        max_retries: retries after the first attempt.
        backoff_base_s, backoff_max_s: the n-th retry waits ``min(base * 2**n, max)`` seconds with
            "equal jitter" (a uniform draw in its upper half) when the server gives no Retry-After.
        max_retry_after_s: the longest Retry-After honoured; longer ones fail the request.
        prices: model -> (USD per 1M input tokens, USD per 1M output tokens); default
            :data:`DEFAULT_PRICES`.
        **kwargs: :class:`~pseudolabel.llm.base.ChatTranslator` arguments (strategy, prompt_file,
            model_scope, temperature, seed, max_tokens, cache_dir, concurrency, max_phrase_words).
    """

    takes_images = True  # image_url content parts (base64 data URLs) go to the endpoint as they are

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        prices: Mapping[str, Sequence[float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, prices=DEFAULT_PRICES if prices is None else prices, **kwargs)
        if max_retries < 0 or timeout_s <= 0 or backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError(
                "max_retries, backoff_base_s and backoff_max_s must be >= 0 and timeout_s > 0, got "
                f"{max_retries}, {backoff_base_s}, {backoff_max_s}, {timeout_s}"
            )
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_retry_after_s = float(max_retry_after_s)

    def _repr_fields(self) -> dict[str, Any]:
        base_url = None if self.base_url is None else self._scrub(self.base_url)
        return {**super()._repr_fields(), "base_url": base_url, "api_key_env": self.api_key_env}

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.base_url is not None:
            return _KEY_PLACEHOLDER
        raise TranslationError(
            f"no API key: set the environment variable {self.api_key_env} (or give base_url for a local "
            "OpenAI-compatible server that needs none)"
        )

    def _make_client(self) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=self._api_key(), base_url=self.base_url, timeout=self.timeout_s, max_retries=0)

    @asynccontextmanager
    async def _open_backend(self) -> AsyncIterator[CompleteFn]:
        client: Any = None

        async def complete(messages: Messages) -> Completion:
            nonlocal client
            if client is None:  # created on the first cache miss: a fully cached rerun needs no key
                client = self._make_client()
            return await self._create_with_retries(client, messages)

        try:
            yield complete
        finally:
            if client is not None:
                await client.close()

    async def _create_with_retries(self, client: Any, messages: Messages) -> Completion:
        import openai

        options: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            options["seed"] = self.seed
        attempt = 0
        while True:
            try:
                try:
                    response = await client.chat.completions.create(model=self.model, messages=messages, **options)
                except (openai.APIResponseValidationError, ValueError) as exc:  # a body that is not JSON
                    raise InvalidResponse(str(getattr(exc, "doc", None) or getattr(exc, "body", None) or exc)) from None
                return _completion(response)
            except (openai.APIStatusError, openai.APIConnectionError, InvalidResponse) as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise TranslationError(self._describe_failure(exc, attempt + 1)) from None
                log.warning(
                    "%s request failed (%s); retry %d/%d in %.2f s",
                    self.name,
                    self._scrub(_error_summary(exc)),
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``exc`` on attempt ``attempt`` (0-based), or None
        when the error is not retryable or the retries are used up."""
        import openai

        if attempt >= self.max_retries:
            return None
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code not in _RETRYABLE_STATUS and exc.status_code < 500:
                return None
            if exc.code == "insufficient_quota":  # a 429 that waiting does not cure
                return None
            asked = retry_after_seconds(exc.response.headers)
            if asked is not None:
                return asked if asked <= self.max_retry_after_s else None
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)

    def _describe_failure(self, exc: Exception, attempts: int) -> str:
        endpoint = self.base_url or "the OpenAI API"
        if isinstance(exc, InvalidResponse):
            return self._scrub(f"{endpoint}: {exc} from model {self.model!r} after {attempts} attempt(s)")
        message = (
            f"{self.name} request to {endpoint} (model {self.model!r}) failed after {attempts} "
            f"attempt(s): {_error_summary(exc)}"
        )
        response = getattr(exc, "response", None)
        asked = retry_after_seconds(response.headers) if response is not None else None
        if asked is not None and asked > self.max_retry_after_s:
            message += f" (the server asked to retry after {asked:g} s > max_retry_after_s={self.max_retry_after_s:g})"
        return self._scrub(message)

    def _scrub(self, text: str) -> str:
        """``text`` with the API key (should a server echo it) and the credentials of a ``base_url``
        (``http://user:pass@host/v1``) masked: :func:`openavs_st.data.redact.scrub_text`."""
        from openavs_st.data.redact import scrub_text

        key = os.environ.get(self.api_key_env)
        return scrub_text(text.replace(key, "***") if key else text)


class InvalidResponse(Exception):
    """A 2xx answer that is not a chat completion (not JSON, no ``choices``); retried like a 5xx."""

    def __init__(self, body: Any) -> None:
        dump = getattr(body, "model_dump_json", None)  # a parsed object without choices: show its JSON
        text = " ".join((dump(exclude_none=True) if callable(dump) else str(body)).split())
        super().__init__(f"invalid response ({text[:200]})")


def _error_summary(exc: Exception) -> str:
    if isinstance(exc, InvalidResponse):
        return str(exc)
    status = getattr(exc, "status_code", None)
    detail = getattr(exc, "message", None) or str(exc)
    return f"HTTP {status}: {detail}" if status is not None else f"{type(exc).__name__}: {detail}"


def _completion(response: Any) -> Completion:
    """Text and token usage of a chat-completions response (missing parts become "" / 0)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise InvalidResponse(response)
    text = ""
    if choices:
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None) or ""
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
