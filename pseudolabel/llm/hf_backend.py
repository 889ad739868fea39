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
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from pseudolabel.components import LazyModel, check_dtype
from pseudolabel.llm.base import (
    ChatTranslator,
    CompleteFn,
    Completion,
    Messages,
    register,
)


def load_chat_model(source: str, dtype: Any) -> tuple[Any, Any]:
    """The tokenizer (which must have a chat template) and causal LM of ``source``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer of {source!r} has no chat template; the hf translator needs a chat model")
    return tokenizer, AutoModelForCausalLM.from_pretrained(source, dtype=dtype)


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
        check_dtype(dtype)
        super().__init__(model=model, concurrency=1, **kwargs)
        self.device = device
        self.dtype = dtype
        self.lazy = LazyModel("causal_lm", model, device=device, dtype=dtype, load_pretrained=load_chat_model)

    def _repr_fields(self) -> dict[str, Any]:
        return {**super()._repr_fields(), "device": self.device, "dtype": self.dtype}

    def _generate(self, messages: Messages) -> Completion:
        """Run one chat request through the model (blocking)."""
        import torch

        loaded = self.lazy.get()
        tokenizer, model = loaded.processor, loaded.model
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        sample = self.temperature > 0
        options: dict[str, Any] = {"max_new_tokens": self.max_tokens, "do_sample": sample}
        if sample:
            options["temperature"] = self.temperature
            if self.seed is not None:
                torch.manual_seed(self.seed)
        pad_id = tokenizer.pad_token_id
        options["pad_token_id"] = pad_id if pad_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:]
        return Completion(
            text=tokenizer.decode(new_tokens, skip_special_tokens=True),
            prompt_tokens=int(prompt_length),
            completion_tokens=int(new_tokens.numel()),
        )

    @asynccontextmanager
    async def _open_backend(self) -> AsyncIterator[CompleteFn]:
        async def complete(messages: Messages) -> Completion:
            return await asyncio.to_thread(self._generate, messages)

        yield complete
