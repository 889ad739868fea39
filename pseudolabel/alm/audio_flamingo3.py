"""``audio_flamingo3``: NVIDIA Audio Flamingo 3 (transformers ``AudioFlamingo3ForConditionalGeneration``).

Conversation as in the transformers docs (model_doc/audioflamingo3.md): one user turn with the prompt
text then the audio; the processor's chat template places the ``<sound>`` placeholder and the processor
expands it to one token per pooled encoder frame (30-s Whisper windows at 16 kHz; a one-second segment
is one window). The checkpoint's chat template supplies any default system message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudolabel.alm.base import GenerativeAudioDescriber, register
from pseudolabel.alm.qwen2_5_omni import AUDIO_PROMPT
from pseudolabel.tiny_models import chatml_template, deep_merge, tiny_qwen2_tokenizer

DEFAULT_MODEL = "nvidia/audio-flamingo-3-hf"
SOUND_TOKEN = "<sound>"
# A 0.06M-parameter model: Whisper-style encoder + Qwen2 decoder.
TINY_AF3 = {
    "audio_config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
    "text_config": {
        "model_type": "qwen2",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    },
    "feature_extractor": {"feature_size": 128},
}


def load_audio_flamingo3(source: str, dtype: Any) -> tuple[Any, Any]:
    """The Audio Flamingo 3 processor and model from a Hub id or local directory."""
    from transformers import AudioFlamingo3ForConditionalGeneration, AutoProcessor

    processor = AutoProcessor.from_pretrained(source)
    model = AudioFlamingo3ForConditionalGeneration.from_pretrained(source, dtype=dtype)
    return processor, model


def build_tiny_audio_flamingo3(config: dict[str, Any]) -> tuple[Any, Any]:
    """A random Audio Flamingo 3 and a processor made offline, from :data:`TINY_AF3` updated with ``config``
    (``AudioFlamingo3Config`` fields plus ``feature_extractor``: ``WhisperFeatureExtractor`` kwargs)."""
    import transformers as hf

    merged = deep_merge(TINY_AF3, config)
    feature_extractor = hf.WhisperFeatureExtractor(**merged.pop("feature_extractor"))
    tokenizer = tiny_qwen2_tokenizer([SOUND_TOKEN])
    merged["text_config"] = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        **merged["text_config"],
    }
    model_config = hf.AudioFlamingo3Config(**{"audio_token_id": tokenizer.convert_tokens_to_ids(SOUND_TOKEN), **merged})
    processor = hf.AudioFlamingo3Processor(
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=chatml_template({"audio": SOUND_TOKEN}),
        audio_token=SOUND_TOKEN,
    )
    return processor, hf.AudioFlamingo3ForConditionalGeneration(model_config)


@register("audio_flamingo3")
class AudioFlamingo3Describer(GenerativeAudioDescriber):
    """Audio Flamingo 3 describing each segment; greedy decoding.

    Args:
        model: Hub id or local directory (default ``nvidia/audio-flamingo-3-hf``).
        **kwargs: :class:`~pseudolabel.alm.base.GenerativeAudioDescriber` arguments (``config``,
            ``device``, ``dtype``, ``max_new_tokens``, ``system_prompt``, ``prompts``, ``batch_size`` ...).
    """

    family = "audio_flamingo3"
    media_first = False
    default_prompts = (AUDIO_PROMPT,)
    load_pretrained = staticmethod(load_audio_flamingo3)
    build_random = staticmethod(build_tiny_audio_flamingo3)

    def __init__(self, model: str | Path = DEFAULT_MODEL, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
