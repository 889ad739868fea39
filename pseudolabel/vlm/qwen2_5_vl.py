"""``qwen2_5_vl``: Qwen2.5-VL (transformers ``Qwen2_5_VLForConditionalGeneration``) describing images.

One user turn holds the image, then the prompt text (the Qwen2.5-VL model card's message layout); the
checkpoint's chat template adds its default system message and renders
``<|vision_start|><|image_pad|><|vision_end|>``, which the processor expands to one token per 2x2 group
of 14-px patches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudolabel.tiny_models import (
    TINY_QWEN2_TEXT,
    TINY_QWEN2_VISION,
    chatml_template,
    deep_merge,
    tiny_qwen2_tokenizer,
)
from pseudolabel.vlm.base import GenerativeImageDescriber, register

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
_NAMED_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", *_NAMED_TOKENS.values()]
# A 0.05M-parameter model: mrope_section sums to head_dim / 2 = (32 / 2) / 2.
TINY_QWEN2_5_VL = {
    "text_config": TINY_QWEN2_TEXT,
    "vision_config": TINY_QWEN2_VISION,
    "image_processor": {},
}


def load_qwen2_5_vl(source: str, dtype: Any) -> tuple[Any, Any]:
    """The Qwen2.5-VL processor and model from a Hub id or local directory."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(source)
    return processor, Qwen2_5_VLForConditionalGeneration.from_pretrained(source, dtype=dtype)


def build_tiny_qwen2_5_vl(config: dict[str, Any]) -> tuple[Any, Any]:
    """A random Qwen2.5-VL and a processor made offline, from :data:`TINY_QWEN2_5_VL` updated with
    ``config`` (``Qwen2_5_VLConfig`` fields plus ``image_processor``: ``Qwen2VLImageProcessor`` kwargs)."""
    import transformers as hf

    merged = deep_merge(TINY_QWEN2_5_VL, config)
    image_processor = hf.Qwen2VLImageProcessor(**merged.pop("image_processor"))
    tokenizer = tiny_qwen2_tokenizer(_VISION_TOKENS, _NAMED_TOKENS)
    token_id = tokenizer.convert_tokens_to_ids
    merged["text_config"] = {
        "vocab_size": len(tokenizer),
        "bos_token_id": None,
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        **merged["text_config"],
    }
    model_config = hf.Qwen2_5_VLConfig(
        **{
            "image_token_id": token_id("<|image_pad|>"),
            "video_token_id": token_id("<|video_pad|>"),
            "vision_start_token_id": token_id("<|vision_start|>"),
            "vision_end_token_id": token_id("<|vision_end|>"),
            **merged,
        }
    )
    processor = hf.Qwen2_5_VLProcessor(
        image_processor=image_processor,
        video_processor=hf.Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=chatml_template({"image": "<|vision_start|><|image_pad|><|vision_end|>"}),
    )
    return processor, hf.Qwen2_5_VLForConditionalGeneration(model_config)


@register("qwen2_5_vl")
class Qwen25VLImageDescriber(GenerativeImageDescriber):
    """Qwen2.5-VL describing each image; greedy decoding.

    Args:
        model: Hub id or local directory (default ``Qwen/Qwen2.5-VL-7B-Instruct``; 3B and 72B also exist).
        **kwargs: :class:`~pseudolabel.vlm.base.GenerativeImageDescriber` arguments (``config``,
            ``device``, ``dtype``, ``max_new_tokens``, ``system_prompt``, ``prompts``, ``batch_size`` ...).
    """

    family = "qwen2_5_vl"
    media_first = True
    load_pretrained = staticmethod(load_qwen2_5_vl)
    build_random = staticmethod(build_tiny_qwen2_5_vl)

    def __init__(self, model: str | Path = DEFAULT_MODEL, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
