"""``qwen2_5_omni``: Qwen2.5-Omni's Thinker describing images (the VLM of OpenAVS and OpenAVS-Large).

Same model, loaders and system prompt as the ``qwen2_5_omni`` audio describer
(:mod:`pseudolabel.alm.qwen2_5_omni`): an audio and an image describer on the same checkpoint, device and
dtype share one loaded Thinker. One user turn holds the image, then the prompt text (transformers docs,
model_doc/qwen2_5_omni.md); the chat template renders ``<|vision_bos|><|IMAGE|><|vision_eos|>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudolabel.alm.qwen2_5_omni import (
    DEFAULT_MODEL,
    FAMILY,
    QWEN_OMNI_SYSTEM_PROMPT,
    build_tiny_thinker,
    load_thinker,
)
from pseudolabel.vlm.base import GenerativeImageDescriber, register


@register("qwen2_5_omni")
class Qwen25OmniImageDescriber(GenerativeImageDescriber):
    """Qwen2.5-Omni (Thinker) describing each image; greedy decoding.

    Args:
        model: Hub id or local directory (default ``Qwen/Qwen2.5-Omni-7B``).
        system_prompt: the Qwen system prompt by default; None for no system message.
        **kwargs: :class:`~pseudolabel.vlm.base.GenerativeImageDescriber` arguments (``config``,
            ``device``, ``dtype``, ``max_new_tokens``, ``prompts``, ``batch_size`` ...).
    """

    family = FAMILY
    media_first = True
    load_pretrained = staticmethod(load_thinker)
    build_random = staticmethod(build_tiny_thinker)

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        system_prompt: str | None = QWEN_OMNI_SYSTEM_PROMPT,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, system_prompt=system_prompt, **kwargs)
