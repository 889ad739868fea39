"""The ``video_segmenter`` role: prompts on one frame of a clip -> masks over the whole clip.

A :class:`VideoSegmenter` takes a clip's frames (``[T, H, W, 3]`` uint8) and prompts, each
``(frame index, box)`` with the box ``[4]`` xyxy in pixels of that frame for ONE object, and returns one
``[T, H, W]`` bool mask per prompt: the object propagated forward and backward from its frame.
A backend that also finds objects from text (``sam3_video``) offers ``track(frames, phrases)``:
phrase -> ``[T, H, W]`` bool, every instance of the phrase over the clip.

Backends register with ``@video_segmenter.register(name)`` and are built with
:func:`create_video_segmenter`. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pseudolabel.components import VIDEO_SEGMENTER, Component

video_segmenter = VIDEO_SEGMENTER
create_video_segmenter = VIDEO_SEGMENTER.create  # create_video_segmenter("sam2_video", model=..., device=...)
available_video_segmenters = VIDEO_SEGMENTER.names

Prompt = tuple[int, np.ndarray]


def check_frames(frames: Any) -> np.ndarray:
    """``frames`` as a ``[T, H, W, 3]`` uint8 array (T >= 1), else a clear error."""
    if isinstance(frames, (list, tuple)):
        frames = np.stack(frames) if len(frames) else np.zeros((0, 0, 0, 3), np.uint8)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"frames must be a [T, H, W, 3] uint8 RGB array, got shape {shape}, {dtype}")
    if 0 in frames.shape[:3]:
        raise ValueError(f"frames is empty: shape {frames.shape}")
    return frames


def check_prompts(prompts: Sequence[Prompt], num_frames: int, height: int, width: int) -> list[tuple[int, np.ndarray]]:
    """Prompts as ``(frame, float32 [4] xyxy box)`` pairs after checking the frame index and the box."""
    checked = []
    for index, prompt in enumerate(prompts):
        try:
            frame, box = prompt
        except (TypeError, ValueError):
            raise ValueError(f"prompts[{index}] must be (frame index, [4] xyxy box), got {prompt!r}") from None
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < num_frames:
            raise ValueError(f"prompts[{index}]: frame index must be an int in [0, {num_frames}), got {frame!r}")
        array = np.asarray(box, dtype=np.float32).reshape(-1)
        if array.shape != (4,) or not np.isfinite(array).all():
            raise ValueError(f"prompts[{index}]: box must be 4 finite numbers xyxy, got {box!r}")
        if array[2] < array[0] or array[3] < array[1]:
            raise ValueError(f"prompts[{index}]: box must be xyxy with x1 >= x0 and y1 >= y0, got {array.tolist()}")
        checked.append((int(frame), np.clip(array, 0, [width, height, width, height]).astype(np.float32)))
    return checked


class VideoSegmenter(Component, ABC):
    """Box prompts on frames -> masks over the clip. Subclasses implement :meth:`_propagate`."""

    def propagate(
        self, frames: np.ndarray, prompts: Sequence[Prompt], *, labels: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """One ``[T, H, W]`` bool mask per prompt.

        Args:
            frames: the clip, ``[T, H, W, 3]`` uint8 RGB.
            prompts: ``(frame index, [4] xyxy box in pixels)`` per object.
            labels: optional, the text of each prompt's object (a text tracker, ``sam3_video``, needs it;
                box propagators ignore it).

        Returns:
            Per prompt, the object's mask on every frame, propagated forward and backward from the
            prompt's frame; no prompts give ``[]`` without a model call.
        """
        frames = check_frames(frames)
        checked = check_prompts(prompts, *frames.shape[:3])
        if labels is not None and (isinstance(labels, str) or len(labels) != len(checked)):
            raise ValueError(f"labels must be one string per prompt ({len(checked)}), got {labels!r}")
        if not checked:
            return []
        masks = self._propagate(frames, checked, labels=None if labels is None else [str(x) for x in labels])
        assert len(masks) == len(checked) and all(m.shape == frames.shape[:3] and m.dtype == np.bool_ for m in masks)
        return masks

    @abstractmethod
    def _propagate(
        self, frames: np.ndarray, prompts: list[tuple[int, np.ndarray]], labels: list[str] | None = None
    ) -> list[np.ndarray]:
        """Propagate checked prompts (at least one) over checked frames (``labels``: one per prompt or None)."""


def track_by_frame(
    prompts: Sequence[tuple[int, np.ndarray]], track: Callable[[int, list[int]], np.ndarray]
) -> list[np.ndarray]:
    """Per prompt, its ``[T, H, W]`` mask from ``track(frame, indices) -> [len(indices), T, H, W]``, called
    once per prompt frame (in order of first appearance) with the indices of the prompts on it: the objects
    one tracking session starts from together."""
    groups: dict[int, list[int]] = {}
    for index, (frame, _) in enumerate(prompts):
        groups.setdefault(frame, []).append(index)
    results: list[np.ndarray] = [np.empty(0)] * len(prompts)
    for frame, indices in groups.items():
        for index, mask in zip(indices, track(frame, indices), strict=True):
            results[index] = mask
    return results
