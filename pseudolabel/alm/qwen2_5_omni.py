"""``qwen2_5_omni``: Qwen2.5-Omni's Thinker (its text-generating half) describing audio segments.

Only ``Qwen2_5OmniThinkerForConditionalGeneration`` is loaded: the full
``Qwen2_5OmniForConditionalGeneration`` adds the speech Talker and checks ``speaker`` against a map that a
randomly built model lacks (transformers ``models/qwen2_5_omni/modeling_qwen2_5_omni.py``), and OpenAVS
needs text only. The same
loaders serve :mod:`pseudolabel.vlm.qwen2_5_omni`; an ALM and a VLM on the same checkpoint, device and
dtype share one loaded Thinker.

Conversation (transformers docs, model_doc/qwen2_5_omni.md): the Qwen system prompt, then one user turn
with the audio before the prompt text; the processor's chat template renders
``<|audio_bos|><|AUDIO|><|audio_eos|>`` and the processor expands ``<|AUDIO|>`` to one token per encoder
frame. Audio is fed at the feature extractor's rate (16 kHz for the released checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudolabel.alm.base import GenerativeAudioDescriber, register
from pseudolabel.tiny_models import (
    TINY_QWEN2_TEXT,
    TINY_QWEN2_VISION,
    chatml_template,
    deep_merge,
    tiny_qwen2_tokenizer,
)

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"
FAMILY = "qwen2_5_omni_thinker"
# The system prompt of every example in the Qwen2.5-Omni model card and transformers docs.
QWEN_OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)
# OpenAVS paper, Appendix F: the prompt used for Audio Flamingo 3 and Qwen2.5-Omni.
AUDIO_PROMPT = "Please describe the audio in detail"

# Special tokens of the Qwen2.5-Omni tokenizer that the processor reads by attribute name.
_NAMED_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}
_PLACEHOLDERS = {
    "audio": "<|audio_bos|><|AUDIO|><|audio_eos|>",
    "image": "<|vision_bos|><|IMAGE|><|vision_eos|>",
}
# A 0.1M-parameter Thinker: mrope_section sums to head_dim / 2 = (32 / 2) / 2.
TINY_THINKER = {
    "text_config": TINY_QWEN2_TEXT,
    "audio_config": {
        "num_mel_bins": 128,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "d_model": 16,
        "output_dim": 32,
    },
    "vision_config": TINY_QWEN2_VISION,
    "feature_extractor": {"feature_size": 128},
    "image_processor": {},
}


def load_thinker(source: str, dtype: Any) -> tuple[Any, Any]:
    """The Qwen2.5-Omni processor and Thinker from a Hub id or local directory."""
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    processor = Qwen2_5OmniProcessor.from_pretrained(source)
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(source, dtype=dtype)
    return processor, model


def build_tiny_thinker(config: dict[str, Any]) -> tuple[Any, Any]:
    """A random Thinker and a processor made offline, from :data:`TINY_THINKER` updated with ``config``.

    ``config`` keys: ``text_config``, ``audio_config``, ``vision_config`` and other
    ``Qwen2_5OmniThinkerConfig`` fields, plus ``feature_extractor`` (``WhisperFeatureExtractor`` kwargs,
    e.g. ``sampling_rate``) and ``image_processor`` (``Qwen2VLImageProcessor`` kwargs). Token ids and the
    vocabulary size come from the tokenizer.
    """
    import transformers as hf

    merged = deep_merge(TINY_THINKER, config)
    feature_extractor = hf.WhisperFeatureExtractor(**merged.pop("feature_extractor"))
    image_processor = hf.Qwen2VLImageProcessor(**merged.pop("image_processor"))
    tokenizer = tiny_qwen2_tokenizer(list(_NAMED_TOKENS.values()), _NAMED_TOKENS)
    token_id = tokenizer.convert_tokens_to_ids
    merged["text_config"] = {
        "vocab_size": len(tokenizer),
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        **merged["text_config"],
    }
    model_config = hf.Qwen2_5OmniThinkerConfig(
        **{
            "audio_token_index": token_id("<|AUDIO|>"),
            "image_token_index": token_id("<|IMAGE|>"),
            "video_token_index": token_id("<|VIDEO|>"),
            "audio_start_token_id": token_id("<|audio_bos|>"),
            "audio_end_token_id": token_id("<|audio_eos|>"),
            **merged,
        }
    )
    # get_rope_index reads this attribute, which the config class does not define (transformers
    # models/qwen2_5_omni/modeling_qwen2_5_omni.py).
    model_config.vision_start_token_id = token_id("<|vision_bos|>")
    processor = hf.Qwen2_5OmniProcessor(
        image_processor=image_processor,
        video_processor=hf.Qwen2VLVideoProcessor(),
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=chatml_template(_PLACEHOLDERS),
    )
    return processor, hf.Qwen2_5OmniThinkerForConditionalGeneration(model_config)


class QwenOmniThinker:
    """Mixin of the Qwen2.5-Omni audio and image describers: one family (so an audio and an image describer
    of one checkpoint share the loaded Thinker), its loaders, default model and system prompt.

    Args:
        model: Hub id or local directory (default ``Qwen/Qwen2.5-Omni-7B``; ``-3B`` also exists).
        system_prompt: the Qwen system prompt by default; None for no system message.
        **kwargs: the describer's :class:`~pseudolabel.alm.base.ChatBackend` arguments (``config``,
            ``device``, ``dtype``, ``max_new_tokens``, ``prompts``, ``batch_size`` ...).
    """

    family = FAMILY
    media_first = True
    load_pretrained = staticmethod(load_thinker)
    build_random = staticmethod(build_tiny_thinker)

    def __init__(
        self, model: str | Path = DEFAULT_MODEL, *, system_prompt: str | None = QWEN_OMNI_SYSTEM_PROMPT, **kwargs: Any
    ) -> None:
        super().__init__(model, system_prompt=system_prompt, **kwargs)  # type: ignore[call-arg]


@register("qwen2_5_omni")
class Qwen25OmniAudioDescriber(QwenOmniThinker, GenerativeAudioDescriber):
    """Qwen2.5-Omni (Thinker) describing each segment; greedy decoding.

    Arguments: :class:`QwenOmniThinker`.
    """

    default_prompts = (AUDIO_PROMPT,)
