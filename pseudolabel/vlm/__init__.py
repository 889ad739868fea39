"""Image describers (image -> text) for the OpenAVS labeler: one text per frame and prompt.

    from pseudolabel import vlm
    describer = vlm.create_vlm("qwen2_5_omni", device="cuda", dtype="bfloat16")
    texts = describer.describe(list(clip.frames))   # texts[t] -> ["The image shows a man playing ..."]

Backends: ``qwen2_5_omni`` (Qwen2.5-Omni Thinker; shares its loaded model with the ``qwen2_5_omni`` audio
describer), ``qwen2_5_vl`` (Qwen2.5-VL). Models load from a Hub id or local directory on first use;
``config=`` builds a tiny random model offline. Importing this package imports neither torch nor
transformers.
"""

from pseudolabel.vlm.base import (
    IMAGE_PROMPT,
    GenerativeImageDescriber,
    ImageDescriber,
    available,
    check_images,
    create_vlm,
    register,
)

__all__ = [
    "IMAGE_PROMPT",
    "GenerativeImageDescriber",
    "ImageDescriber",
    "available",
    "check_images",
    "create_vlm",
    "register",
]
