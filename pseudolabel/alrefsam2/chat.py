"""The multimodal LLM AL-Ref-SAM2 asks: a question (text) about one image (the frame strip).

Two backends, each answering :meth:`ask` with a :class:`~pseudolabel.llm.ChatReply`:

- :class:`EndpointChat`: an ``llm`` translator that sends images (``openai``: any OpenAI-compatible chat
  endpoint with image input): one user message with a text part and an ``image_url`` part holding the
  image as a base64 data URL. The translator's session does the rest: its client, retries, disk cache
  (the key covers the image; the cache file records its SHA-256), concurrency limit, prices and the
  handling of the API key.
- :class:`VLMChat`: a local transformers vision-language model of the ``vlm`` role (``qwen2_5_vl`` ...),
  prompted once with the image and the question, one request at a time in a worker thread, answers
  cached on disk under ``cache_dir`` (key: the model's provenance, the question and the image's SHA-256).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alrefsam2.strip import data_url
from pseudolabel.llm import ChatReply, ResponseCache, request_key


class EndpointChat:
    """Questions with an image through an image-capable ``llm`` translator (``openai``)."""

    def __init__(self, translator: Any, image_format: str = "jpeg") -> None:
        if not getattr(translator, "takes_images", False):
            name = getattr(translator, "name", type(translator).__name__)
            raise ValueError(
                f"the {name!r} translator takes no images; AL-Ref-SAM2 needs an endpoint with image input "
                "(llm=openai with a vision model such as gpt-4o) or a local VLM (labeler/vlm=qwen2_5_vl llm=none)"
            )
        self.translator = translator
        self.image_format = image_format
        self.backend = str(translator.name)
        self.model = str(translator.model)

    def components(self) -> list[Any]:
        return []  # the translator loads (or opens its client) on the first request the cache cannot answer

    def provenance(self) -> str:
        return repr(self.translator)

    def session(self) -> Any:
        return self.translator.session()

    async def ask(
        self, session: Any, text: str, image: np.ndarray, cache_if: Callable[[str], bool] | None = None
    ) -> ChatReply:
        url = await asyncio.to_thread(data_url, image, self.image_format)  # encoding is CPU work: off the loop
        messages = [
            {
                "role": "user",
                "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
            }
        ]
        return await session.chat(messages, cache_if=cache_if)


class _VLMSession:
    """One lock per job: the local model answers one request at a time."""

    def __init__(self) -> None:
        self.lock: asyncio.Lock | None = None

    async def open(self) -> _VLMSession:
        self.lock = asyncio.Lock()
        return self

    async def close(self) -> None:
        self.lock = None


class VLMChat:
    """Questions with an image through a local VLM (``vlm`` role)."""

    backend = "vlm"

    def __init__(self, vlm: Any, cache_dir: str | Path | None = None) -> None:
        self.vlm = vlm
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.model = json.dumps(vlm.provenance(), sort_keys=True, default=str)

    def components(self) -> list[Any]:
        return [self.vlm]

    def provenance(self) -> Any:
        return self.vlm.provenance()

    def session(self) -> _VLMSession:
        return _VLMSession()

    async def ask(
        self, session: _VLMSession, text: str, image: np.ndarray, cache_if: Callable[[str], bool] | None = None
    ) -> ChatReply:
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
        messages = [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "sha256": digest}]}]
        key = request_key(self.model, messages, 0.0, None, 1)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            return ChatReply(cached["response"], 0, 0, True, 0.0, None)
        if session.lock is None:
            raise RuntimeError("the VLM session is not open")
        async with session.lock:
            start = time.perf_counter()
            texts = await asyncio.to_thread(self.vlm.describe, [image], [text])
            latency = time.perf_counter() - start
        answer = texts[0][0]
        if self.cache is not None and answer.strip() and (cache_if is None or cache_if(answer)):
            self.cache.put(key, {"request": {"model": self.model, "messages": messages}, "response": answer})
        return ChatReply(answer, 0, 0, False, latency, None)
