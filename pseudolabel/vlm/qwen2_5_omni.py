"""``qwen2_5_omni``: Qwen2.5-Omni's Thinker describing images (the VLM of OpenAVS and OpenAVS-Large).

Same model, loaders and system prompt as the ``qwen2_5_omni`` audio describer
(:mod:`pseudolabel.alm.qwen2_5_omni`): an audio and an image describer on the same checkpoint, device and
dtype share one loaded Thinker. One user turn holds the image, then the prompt text (transformers docs,
model_doc/qwen2_5_omni.md); the chat template renders ``<|vision_bos|><|IMAGE|><|vision_eos|>``.
"""

from __future__ import annotations

from pseudolabel.alm.qwen2_5_omni import QwenOmniThinker
from pseudolabel.vlm.base import GenerativeImageDescriber, register


@register("qwen2_5_omni")
class Qwen25OmniImageDescriber(QwenOmniThinker, GenerativeImageDescriber):
    """Qwen2.5-Omni (Thinker) describing each image; greedy decoding.

    Arguments: :class:`~pseudolabel.alm.qwen2_5_omni.QwenOmniThinker`.
    """
