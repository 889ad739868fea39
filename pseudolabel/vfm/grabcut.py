"""The ``grabcut`` segmenter: OpenCV GrabCut masks from boxes, seeded by a grounder's maps when it has them.

GrabCut (Rother et al., SIGGRAPH 2004; ``cv2.grabCut``) fits colour mixtures to the foreground and the
background and cuts the image between them. No learned weights: it runs after any grounder, on the CPU.

- **With a prior map** (the ``cam`` grounder's class-activation map, ``Detections.maps``): the map
  seeds the cut: ``> fg`` (0.8) is foreground, ``> probable_fg`` (0.5) probable foreground,
  ``< bg`` (0.05) background, the rest probable background; ``cv2.GC_INIT_WITH_MASK``. These values
  gave the cleanest silhouettes on photographs of animals side by side (our measurements).
- **Without one**: the box initialises the cut (``cv2.GC_INIT_WITH_RECT``: outside is background,
  inside probably foreground). A box covering the whole image leaves GrabCut no background to learn
  from; its mask is then the box itself.

Images larger than ``max_side`` are cut at that size and the mask is resized back (nearest). Each box's
score is the IoU of its mask with its seed (the map's probable foreground, or the box): how much the
cut kept of what it was told. OpenCV's random generator is seeded before each cut, so masks are
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from openavs_st.memo import Memo
from pseudolabel.components import positive_int
from pseudolabel.vfm.base import (
    BoxMasks,
    Segmenter,
    segmenter,
)

ITERATIONS = 5
FG, PROBABLE_FG, BG = 0.8, 0.5, 0.05
MAX_SIDE = 512


@segmenter.register("grabcut")
class GrabCutSegmenter(Segmenter):
    """OpenCV GrabCut masks per box, seeded by the grounder's prior maps when given (no model, CPU).

    Args:
        iterations: GrabCut iterations.
        fg, probable_fg, bg: prior-map levels for sure foreground, probable foreground and sure
            background (``bg < probable_fg <= fg``).
        max_side: images whose longer side exceeds this are cut at this size (speed).
        seed: OpenCV's random seed (GrabCut initialises its colour models with k-means).
    """

    takes_priors = True

    def __init__(
        self,
        *,
        iterations: int = ITERATIONS,
        fg: float = FG,
        probable_fg: float = PROBABLE_FG,
        bg: float = BG,
        max_side: int = MAX_SIDE,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= bg < probable_fg <= fg <= 1.0:
            raise ValueError(f"need 0 <= bg < probable_fg <= fg <= 1, got bg={bg}, probable_fg={probable_fg}, fg={fg}")
        self.iterations = positive_int(iterations, "iterations")
        self.max_side = positive_int(max_side, "max_side")
        self.fg, self.probable_fg, self.bg = float(fg), float(probable_fg), float(bg)
        self.seed = int(seed)
        self._memo = Memo()  # (image, boxes, maps) -> BoxMasks: GrabCut is deterministic given its seed

    def provenance(self) -> dict[str, Any]:
        settings = ("iterations", "fg", "probable_fg", "bg", "max_side")
        return {**super().provenance(), **{key: getattr(self, key) for key in settings}}

    def _segment_boxes(  # type: ignore[override]  # takes_priors: the base hands the checked priors over
        self, images: list[np.ndarray], boxes: list[np.ndarray], priors: list[Sequence[np.ndarray] | None]
    ) -> list[BoxMasks]:
        results = []
        for image, image_boxes, maps in zip(images, boxes, priors, strict=True):
            key = Memo.key(image, image_boxes, *(maps or ()))
            found = self._memo.get(key)
            if found is None:
                found = self._segment_image(image, image_boxes, maps)
                self._memo.put(key, found)
            results.append(found)
        return results

    def _segment_image(self, image: np.ndarray, boxes: np.ndarray, maps: Sequence[np.ndarray] | None) -> BoxMasks:
        import cv2

        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image if scale == 1.0 else cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[..., ::-1])
        masks, scores = [], []
        done: dict[int, tuple[np.ndarray, float]] = {}  # boxes of one phrase share their map: cut once
        for k, box in enumerate(boxes):
            prior = None if maps is None else maps[k]
            if prior is not None and id(prior) in done:
                mask, score = done[id(prior)]
            else:
                small_prior = None
                if prior is not None:
                    small_prior = np.asarray(prior, np.float32)
                    if scale != 1.0:
                        small_prior = cv2.resize(small_prior, small_size, interpolation=cv2.INTER_LINEAR)
                mask, score = self._cut(bgr, box * scale, small_prior)
                if scale != 1.0:
                    mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                if prior is not None:
                    done[id(prior)] = (mask, score)
            masks.append(mask)
            scores.append(score)
        return BoxMasks(masks=np.stack(masks).astype(bool), scores=np.asarray(scores, np.float32))

    def _seed_from_prior(self, prior: np.ndarray) -> np.ndarray:
        import cv2

        seed = np.full(prior.shape, cv2.GC_PR_BGD, np.uint8)
        seed[prior > self.probable_fg] = cv2.GC_PR_FGD
        seed[prior > self.fg] = cv2.GC_FGD
        seed[prior < self.bg] = cv2.GC_BGD
        return seed

    def _cut(self, bgr: np.ndarray, box: np.ndarray, prior: np.ndarray | None) -> tuple[np.ndarray, float]:
        """One box's ``[h, w]`` bool mask at ``bgr``'s size and its score."""
        import cv2

        height, width = bgr.shape[:2]
        x0, y0 = int(np.clip(np.floor(box[0]), 0, width - 1)), int(np.clip(np.floor(box[1]), 0, height - 1))
        x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 1, width)), int(np.clip(np.ceil(box[3]), y0 + 1, height))
        rect_mask = np.zeros((height, width), bool)
        rect_mask[y0:y1, x0:x1] = True
        seed, wanted = None, rect_mask
        if prior is not None:
            seed = self._seed_from_prior(prior)
            wanted = prior > self.probable_fg
            foreground = np.isin(seed, (cv2.GC_FGD, cv2.GC_PR_FGD))
            if not foreground.any() or foreground.all():
                seed, wanted = None, rect_mask  # nothing to learn one side from: fall back to the box
        if seed is None and rect_mask.all():
            return rect_mask, 1.0  # a whole-image box: no background to model
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        if seed is None:
            seed = np.zeros((height, width), np.uint8)
            cv2.grabCut(bgr, seed, (x0, y0, x1 - x0, y1 - y0), background_model, foreground_model,
                        self.iterations, cv2.GC_INIT_WITH_RECT)
        else:
            cv2.grabCut(bgr, seed, None, background_model, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        mask = np.isin(seed, (cv2.GC_FGD, cv2.GC_PR_FGD))
        union = np.logical_or(mask, wanted).sum()
        return mask, float(np.logical_and(mask, wanted).sum() / union) if union else 0.0
