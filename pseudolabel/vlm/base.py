"""Image describers (image -> text): the interface; backends register with ``@register(name)`` (the ``vlm``
role of :mod:`pseudolabel.components`).

OpenAVS describes each video frame with a vision-language model (VLM) and the prompt "Please describe
the image in detail" (paper, Appendix F; Qwen2.5-Omni in OpenAVS and OpenAVS-Large); the LLM translator
then reconciles these descriptions with the audio ones. :meth:`ImageDescriber.describe` returns one text
per (image, prompt).

The lazily loaded transformers plumbing (:class:`~pseudolabel.components.LazyModel`,
:class:`~pseudolabel.alm.base.ChatModel`) is shared with :mod:`pseudolabel.alm`. Nothing here imports torch
or transformers at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from pseudolabel.alm.base import ChatBackend, Describer, batched_pairs, check_prompts
from pseudolabel.components import VLM, positive_int

IMAGE_PROMPT = "Please describe the image in detail"  # OpenAVS paper, Appendix F


def check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``images`` after checking each is an RGB ``[H, W, 3]`` uint8 array."""
    if isinstance(images, np.ndarray):
        raise TypeError("images must be a list of [H, W, 3] arrays, got a single array; wrap it in a list")
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise TypeError(f"images[{index}] is {type(image).__name__}, expected a numpy array")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images[{index}] has shape {image.shape}; expected RGB [H, W, 3]")
        if image.dtype != np.uint8:
            raise TypeError(f"images[{index}] has dtype {image.dtype}; expected uint8 (0-255)")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"images[{index}] is empty (shape {image.shape})")
    return list(images)


class ImageDescriber(Describer, ABC):
    """Describes images in text: ``describe(images, prompts) -> texts[image][prompt]``.

    Args:
        prompts: default prompts for :meth:`describe` (None: :attr:`default_prompts`).
        batch_size: (image, prompt) pairs per model call.
    """

    name: ClassVar[str]
    default_prompts: ClassVar[tuple[str, ...]] = (IMAGE_PROMPT,)

    def __init__(self, *, prompts: Sequence[str] | None = None, batch_size: int = 4) -> None:
        self.prompts = check_prompts(prompts) if prompts is not None else self.default_prompts
        self.batch_size = positive_int(batch_size, "batch_size")

    @abstractmethod
    def _describe_images(self, images: list[np.ndarray], prompts: Sequence[str]) -> list[list[str]]:
        """Texts ``[image][prompt]`` for checked images."""

    def describe(self, images: Sequence[np.ndarray], prompts: Sequence[str] | None = None) -> list[list[str]]:
        """Describe each image once per prompt.

        Args:
            images: RGB uint8 arrays ``[H_i, W_i, 3]`` (e.g. a clip's frames).
            prompts: prompts for this call (None: the describer's prompts).

        Returns:
            ``texts[i][j]``: the text for image ``i`` and prompt ``j``.
        """
        resolved = check_prompts(prompts) if prompts is not None else self.prompts
        checked = check_images(images)
        if not checked:
            return []
        return self._describe_images(checked, resolved)


# The ``vlm`` role: @register(name) on a backend class; create_vlm(name, **cfg) builds one; available() lists them.
register, create_vlm, available = VLM.register, VLM.create, VLM.names


class GenerativeImageDescriber(ChatBackend, ImageDescriber):
    """A vision-language model (transformers) prompted once per (image, prompt), decoded greedily.

    Subclasses set :attr:`family` and :attr:`media_first` and provide the two loaders (see
    :class:`~pseudolabel.alm.base.ChatBackend`); their constructors give the default model id (and system
    prompt).

    Arguments: see :class:`~pseudolabel.alm.base.ChatBackend`; a batch is ``batch_size`` (image, prompt)
    pairs (default 4).
    """

    media_type = "image"
    default_batch_size = 4

    def model_inputs(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> Any:
        """The processor output (on the model's device) for ``images[i]`` paired with ``prompts[i]``."""
        prompts = check_prompts(prompts)
        checked = check_images(images)
        if len(checked) != len(prompts):
            raise ValueError(f"got {len(checked)} images but {len(prompts)} prompts; pair them one to one")
        return self.chat.inputs(list(prompts), images=checked)

    def _describe_images(self, images: list[np.ndarray], prompts: Sequence[str]) -> list[list[str]]:
        def run(chunk: list[np.ndarray], chunk_prompts: list[str]) -> list[str]:
            return self.chat.generate(self.chat.inputs(chunk_prompts, images=chunk))

        return batched_pairs(images, prompts, self.batch_size, run)
