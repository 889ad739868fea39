"""The ``hf`` translator: a local transformers chat model.

``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(model)`` with ``model`` a Hub id or a local
directory (a downloaded model works offline), loaded on the first request the cache cannot answer
(a fully cached rerun never loads it). The prompt goes through the tokenizer's chat template;
decoding is greedy at ``temperature=0`` and sampled (seeded by ``seed``) otherwise. Generation runs
in a worker thread, one request at a time. Token usage is counted from the tensors; the cost of a
local model is None unless a ``prices`` entry is given.

transformers and torch are imported only when the model is loaded.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from pseudolabel.llm.base import ChatTranslator, Completion, CompleteFn, Messages, register

_DTYPES = ("auto", "float32", "float16", "bfloat16")


@register("hf")
class HFTranslator(ChatTranslator):
    """Translator running a transformers causal LM with a chat template.

    Args:
        model: Hub id or local directory with the model and its tokenizer.
        device: torch device to run on (``cpu``, ``cuda``, ``cuda:1`` ...).
        dtype: ``auto`` (the checkpoint's), ``float32``, ``float16`` or ``bfloat16``.
        **kwargs: :class:`~pseudolabel.llm.base.ChatTranslator` arguments except ``concurrency``
            (always 1: one model generates one request at a time).
    """

    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "auto", **kwargs: Any) -> None:
        if "concurrency" in kwargs:
            raise TypeError("HFTranslator runs one request at a time; it takes no 'concurrency'")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        super().__init__(model=model, concurrency=1, **kwargs)
        self.device = device
        self.dtype = dtype
        self._tokenizer: Any = None
        self._model: Any = None
        self._load_lock = threading.Lock()

    def _repr_fields(self) -> dict[str, Any]:
        return {**super()._repr_fields(), "device": self.device, "dtype": self.dtype}

    def _load(self) -> None:
        """Load tokenizer and model once."""
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model)
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError(
                    f"the tokenizer of {self.model!r} has no chat template; the hf translator needs a chat model"
                )
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype)
            self._model = model.to(self.device).eval()
            self._tokenizer = tokenizer

    def _generate(self, messages: Messages) -> Completion:
        """Run one chat request through the model (blocking)."""
        import torch

        self._load()
        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        sample = self.temperature > 0
        options: dict[str, Any] = {"max_new_tokens": self.max_tokens, "do_sample": sample}
        if sample:
            options["temperature"] = self.temperature
            if self.seed is not None:
                torch.manual_seed(self.seed)
        pad_id = self._tokenizer.pad_token_id
        options["pad_token_id"] = pad_id if pad_id is not None else self._tokenizer.eos_token_id
        with torch.inference_mode():
            output = self._model.generate(**inputs, **options)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:]
        return Completion(
            text=self._tokenizer.decode(new_tokens, skip_special_tokens=True),
            prompt_tokens=int(prompt_length),
            completion_tokens=int(new_tokens.numel()),
        )

    @asynccontextmanager
    async def _open_backend(self) -> AsyncIterator[CompleteFn]:
        async def complete(messages: Messages) -> Completion:
            return await asyncio.to_thread(self._generate, messages)

        yield complete
