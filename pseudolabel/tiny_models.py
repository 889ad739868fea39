"""Offline building blocks for tiny random models: the tests (and anyone without downloaded weights) build
every transformers backend at toy size with a tokenizer and processor made in code, without a download.
Backends take ``config=<overrides>`` and merge it into their ``TINY_*`` defaults with :func:`deep_merge`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def deep_merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``defaults`` updated with ``overrides``, merging nested mappings key by key."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def byte_level_vocab(special_tokens: Sequence[str], *, specials_first: bool) -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: the 256 byte symbols plus ``special_tokens``."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    ordered = [*special_tokens, *symbols] if specials_first else [*symbols, *special_tokens]
    return {token: index for index, token in enumerate(ordered)}



def tiny_clip_tokenizer() -> Any:
    """An offline CLIP tokenizer without merges (one token per character): every byte-level symbol and its
    end-of-word form, then ``<|startoftext|>`` and ``<|endoftext|>`` as the two highest ids, as in CLIP's own
    vocabulary (its text model pools at the highest id when ``eos_token_id`` is the legacy 2)."""
    from transformers import CLIPTokenizer

    symbols = list(byte_level_vocab([], specials_first=False))
    words = [*symbols, *(symbol + "</w>" for symbol in symbols), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(words)}, merges=[])

# The text model of the tiny Qwen2-family test models: mrope_section sums to head_dim / 2 = (32 / 2) / 2.
TINY_QWEN2_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
}

# ... and their vision tower (Qwen2.5-VL's, also inside Qwen2.5-Omni).
TINY_QWEN2_VISION = {
    "depth": 1,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_heads": 2,
    "out_hidden_size": 32,
    "fullatt_block_indexes": [0],
}


def tiny_qwen2_tokenizer(special_tokens: Sequence[str], named_tokens: Mapping[str, str] | None = None) -> Any:
    """An offline Qwen2 (byte-level, merge-free) tokenizer with ChatML and the given special tokens.

    ``named_tokens`` maps attribute names (``audio_token``, ``image_token`` ...) to special tokens, which
    multimodal processors read from the tokenizer.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *special_tokens]
    tokenizer = Qwen2Tokenizer(
        vocab=byte_level_vocab(specials, specials_first=False),
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(named_tokens or {}),
    )
    # Every special token must stay one token (the ids already exist in the vocabulary).
    tokenizer.add_tokens([AddedToken(token, special=True) for token in specials], special_tokens=True)
    return tokenizer


def chatml_template(placeholders: Mapping[str, str]) -> str:
    """A minimal ChatML chat template (Jinja) for tiny test processors: content parts are rendered in order,
    text as is and a media part (``{"type": "audio"}`` ...) as its placeholder string."""
    media = "".join(f"{{% elif part['type'] == '{kind}' %}}{placeholder}" for kind, placeholder in placeholders.items())
    return (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        "{% if part['type'] == 'text' %}{{ part['text'] }}" + media + "{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
