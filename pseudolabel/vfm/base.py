"""Interfaces of the text -> boxes -> masks stage and their result types.

- A :class:`Grounder` finds boxes for text phrases: ``detect(images, phrases)`` takes a list of
  ``[H, W, 3]`` uint8 RGB images and, per image, a list of object phrases, and returns one
  :class:`Detections` per image (boxes ``[N, 4]`` xyxy in that image's pixels, scores ``[N]``,
  labels: the phrase each box belongs to).
- A :class:`Segmenter` turns boxes into masks: ``segment(images, boxes)`` takes per image a
  ``[N, 4]`` xyxy pixel box array and returns one ``[H, W]`` bool mask per image, the OR of the
  per-box masks (``segment_boxes`` keeps the per-box masks and scores). An image without boxes gets
  an empty mask without a model call.

Backends register with ``@grounder.register(name)`` / ``@segmenter.register(name)`` (the ``grounder`` and
``segmenter`` roles of :mod:`pseudolabel.components`) and are built by name with :func:`create_grounder` /
:func:`create_segmenter`.

Backends load their model on first use (never at import or construction time) and import torch,
transformers or sam2 only then, so importing this package stays cheap.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from pseudolabel.components import GROUNDER, SEGMENTER, Component, transformers_model

# --- result types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """A grounder's boxes for one image.

    Attributes:
        boxes: ``[N, 4]`` float32 xyxy boxes in pixels of the image (inside ``[0, W] x [0, H]``).
        scores: ``[N]`` float32 box confidences.
        labels: ``N`` phrases, each one of the phrases the image was queried with.
        texts: ``N`` strings, the detector's own text for each box (GroundingDINO: the query tokens
            whose probability passed the text threshold; may be empty or span several phrases).
        maps: ``None``, or ``N`` ``[H, W]`` float32 maps in ``[0, 1]`` in the image's pixels: a prior of
            where each box's object is (the ``cam`` grounder's activation map), passed to a segmenter
            that takes priors (``Segmenter.takes_priors``); not written to the manifest.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    texts: list[str]
    maps: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        count = len(self.labels)
        if self.boxes.shape != (count, 4) or self.scores.shape != (count,) or len(self.texts) != count:
            raise ValueError(
                f"Detections: boxes {self.boxes.shape}, scores {self.scores.shape}, {count} labels and "
                f"{len(self.texts)} texts do not describe the same N boxes"
            )
        if self.maps is not None and (len(self.maps) != count or any(np.ndim(m) != 2 for m in self.maps)):
            raise ValueError(f"Detections: maps must be {count} [H, W] arrays, one per box")

    @classmethod
    def empty(cls) -> Detections:
        """No boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [], [])

    def __len__(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for the pseudo-label manifest)."""
        return {
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "labels": list(self.labels),
            "texts": list(self.texts),
        }


@dataclass(frozen=True)
class BoxMasks:
    """A segmenter's masks for one image.

    Attributes:
        masks: ``[N, H, W]`` bool, one mask per input box, in the image's pixels.
        scores: ``[N]`` float32, the model's predicted IoU of each mask.
    """

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != np.bool_ or self.scores.shape != self.masks.shape[:1]:
            raise ValueError(
                f"BoxMasks: masks must be [N, H, W] bool and scores [N], got masks {self.masks.shape} "
                f"{self.masks.dtype} and scores {self.scores.shape}"
            )

    def union(self) -> np.ndarray:
        """``[H, W]`` bool: the OR of the per-box masks (all False without boxes)."""
        return self.masks.any(axis=0)


# --- input checks --------------------------------------------------------------------------------


def check_images(images: Sequence[np.ndarray]) -> None:
    """Raise a clear error unless ``images`` is a list of ``[H, W, 3]`` uint8 arrays."""
    if isinstance(images, np.ndarray):
        raise TypeError("images must be a list of [H, W, 3] uint8 arrays, not one array (use list(frames))")
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise ValueError(f"images[{index}] must be an [H, W, 3] uint8 RGB array, got shape {shape}, {dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"images[{index}] is empty: shape {image.shape}")


def check_priors(
    priors: Sequence[Sequence[np.ndarray] | None] | None, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]
) -> list[Sequence[np.ndarray] | None]:
    """A segmenter's ``priors`` (per image ``None`` or one ``[H, W]`` map per box, :attr:`Detections.maps`)
    checked against the images and their checked ``boxes``; ``None`` means none for every image."""
    if priors is None:
        return [None] * len(images)
    if len(priors) != len(images):
        raise ValueError(f"got {len(images)} images but {len(priors)} prior lists")
    for index, (image, image_boxes, maps) in enumerate(zip(images, boxes, priors, strict=True)):
        if maps is None:
            continue
        if len(maps) != len(image_boxes):
            raise ValueError(f"priors[{index}] has {len(maps)} maps for {len(image_boxes)} boxes")
        for map_ in maps:
            if np.shape(map_) != image.shape[:2]:
                raise ValueError(f"priors[{index}]: a map of shape {np.shape(map_)} for an image of {image.shape[:2]}")
    return list(priors)


def check_boxes(boxes: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
    """``boxes`` as ``count`` float32 ``[N, 4]`` xyxy arrays; a clear error for anything else."""
    if len(boxes) != count:
        raise ValueError(f"got {count} images but {len(boxes)} box arrays")
    checked = []
    for index, image_boxes in enumerate(boxes):
        array = np.asarray(image_boxes, dtype=np.float32)
        if array.size == 0:
            array = array.reshape(0, 4)
        if array.ndim != 2 or array.shape[1] != 4:
            raise ValueError(f"boxes[{index}] must be [N, 4] (xyxy pixels), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"boxes[{index}] contains NaN or infinite coordinates")
        if (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
            raise ValueError(f"boxes[{index}] must be xyxy with x1 >= x0 and y1 >= y0, got {array.tolist()}")
        checked.append(array)
    return checked


def clean_phrases(phrases: Sequence[str]) -> list[str]:
    """Query phrases as detectors want them: lower-case, single spaces, no surrounding periods or
    blanks, empty ones dropped, duplicates dropped (first occurrence kept)."""
    if isinstance(phrases, str):
        raise TypeError(f"phrases of one image must be a list of strings, got the string {phrases!r}")
    cleaned: list[str] = []
    for phrase in phrases:
        if not isinstance(phrase, str):
            raise TypeError(f"phrases must be strings, got {phrase!r}")
        text = re.sub(r"\s+", " ", phrase.lower()).strip(" .")
        if text and text not in cleaned:
            cleaned.append(text)
    return cleaned


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a positive int, else a ValueError."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` split into consecutive runs of at most ``size``."""
    return [list(indices[start : start + size]) for start in range(0, len(indices), size)]


def same_size_batches(images: Sequence[np.ndarray], size: int) -> list[list[int]]:
    """Indices of ``images`` in batches of at most ``size`` images that all have the same height and
    width (for models whose output changes when a batch pads its images to a common size)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(index)
    return [batch for group in groups.values() for batch in chunks(group, size)]


# --- transformers-backed backends -------------------------------------------------------------------


class TransformersBackend:
    """Mixin of the grounders and segmenters whose model is a transformers class pair: sets ``self.lazy``
    (a :class:`~pseudolabel.components.LazyModel`) and ``self.batch_size``, and gives ``from_pretrained`` /
    ``from_config`` constructors and a ``repr``.

    Subclasses set :attr:`model_class`, :attr:`processor_class` and :attr:`default_model`.
    """

    model_class: ClassVar[str]
    processor_class: ClassVar[str]
    default_model: ClassVar[str]

    def _init_model(self, model: str | None, config: Any, processor: Any, device: str, dtype: str, batch_size: int) -> None:
        if model is None and config is None:
            model = self.default_model
        self.batch_size = check_batch_size(batch_size)
        self.lazy = transformers_model(
            self.model_class, self.processor_class, model, config=config, processor=processor, device=device, dtype=dtype
        )

    @classmethod
    def from_pretrained(cls, model: str | None = None, **kwargs: Any) -> Any:
        """A backend loading ``model`` (Hub id or local directory; default: the class default) on first use."""
        return cls(model, **kwargs)

    @classmethod
    def from_config(cls, config: Any, processor: Any, **kwargs: Any) -> Any:
        """A backend with random weights built from a transformers model config (tests, offline)."""
        return cls(None, config=config, processor=processor, **kwargs)

    def _repr_fields(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}

    def __repr__(self) -> str:
        fields = {"model": self.lazy.source, **self._repr_fields(), "device": self.lazy.device, "dtype": self.lazy.dtype}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


# --- interfaces ----------------------------------------------------------------------------------


R = TypeVar("R")


def _run_where(needed: list[bool], defaults: list[R], run: Callable[[list[int]], list[R]]) -> list[R]:
    """``defaults`` with the items at the ``needed`` indices replaced by ``run(those indices)``;
    ``run`` is not called when nothing is needed."""
    selected = [index for index, flag in enumerate(needed) if flag]
    results = list(defaults)
    if selected:
        for index, result in zip(selected, run(selected), strict=True):
            results[index] = result
    return results


class Grounder(Component, ABC):
    """Text phrases -> boxes. Subclasses implement :meth:`_detect` for images with phrases."""

    def detect(self, images: Sequence[np.ndarray], phrases: Sequence[Sequence[str]]) -> list[Detections]:
        """Boxes of the phrases in each image.

        Args:
            images: ``[H, W, 3]`` uint8 RGB images (sizes may differ).
            phrases: per image, the object phrases to look for (cleaned with :func:`clean_phrases`).

        Returns:
            One :class:`Detections` per image; an image without phrases gets no boxes and costs
            no model call.
        """
        check_images(images)
        if len(phrases) != len(images):
            raise ValueError(f"got {len(images)} images but {len(phrases)} phrase lists")
        cleaned = [clean_phrases(image_phrases) for image_phrases in phrases]
        return _run_where(
            [bool(image_phrases) for image_phrases in cleaned],
            [Detections.empty() for _ in images],
            lambda selected: self._detect([images[i] for i in selected], [cleaned[i] for i in selected]),
        )

    @abstractmethod
    def _detect(self, images: list[np.ndarray], phrases: list[list[str]]) -> list[Detections]:
        """Detect for checked images, each with at least one cleaned phrase."""


class Segmenter(Component, ABC):
    """Boxes -> masks. Subclasses implement :meth:`_segment_boxes` for images with boxes.

    A segmenter with ``takes_priors = True`` also accepts ``segment_boxes(images, boxes, priors=...)``:
    per image ``None`` or one ``[H, W]`` map per box (a grounder's ``Detections.maps``), checked here and
    handed to its ``_segment_boxes(images, boxes, priors)``.
    """

    takes_priors: ClassVar[bool] = False

    def segment_boxes(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        priors: Sequence[Sequence[np.ndarray] | None] | None = None,
    ) -> list[BoxMasks]:
        """Per-box masks and scores.

        Args:
            images: ``[H, W, 3]`` uint8 RGB images (sizes may differ).
            boxes: per image an ``[N, 4]`` xyxy array in that image's pixels (N may be 0).
            priors: only for a segmenter that ``takes_priors``: per image ``None`` or one ``[H, W]`` map
                in [0, 1] per box.

        Returns:
            One :class:`BoxMasks` per image (``[N, H, W]`` masks); an image without boxes gets
            ``[0, H, W]`` and costs no model call.
        """
        check_images(images)
        checked = check_boxes(boxes, len(images))
        if priors is not None and not self.takes_priors:
            raise ValueError(f"{type(self).__name__} takes no prior maps (priors=...)")
        maps = check_priors(priors, images, checked)

        def run(selected: list[int]) -> list[BoxMasks]:
            chosen = ([images[i] for i in selected], [checked[i] for i in selected])
            if self.takes_priors:
                return self._segment_boxes(*chosen, [maps[i] for i in selected])
            return self._segment_boxes(*chosen)

        return _run_where(
            [len(image_boxes) > 0 for image_boxes in checked],
            [BoxMasks(np.zeros((0, *image.shape[:2]), dtype=bool), np.zeros(0, np.float32)) for image in images],
            run,
        )

    def segment(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One ``[H, W]`` bool mask per image: the OR of its per-box masks (empty without boxes)."""
        return [box_masks.union() for box_masks in self.segment_boxes(images, boxes)]

    @abstractmethod
    def _segment_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[BoxMasks]:
        """Segment checked images, each with at least one checked box (a segmenter that ``takes_priors``
        also receives their checked ``priors``)."""


# --- registries (the ``grounder`` and ``segmenter`` roles of pseudolabel.components) ------------------

grounder = GROUNDER
segmenter = SEGMENTER
create_grounder = GROUNDER.create  # create_grounder("grounding_dino", model=..., device=...)
create_segmenter = SEGMENTER.create  # create_segmenter("sam2" | "sam" | "sam2_official", ...)
available_grounders = GROUNDER.names
available_segmenters = SEGMENTER.names
