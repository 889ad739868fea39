"""The ``grounder_masks`` segmenter: the masks a grounder already made with its boxes.

A grounder that segments as it detects (``sam3``: SAM 3 gives each instance a box and a mask) returns
per-box maps in [0, 1] (``Detections.maps``); the labeler passes them to a segmenter that takes priors,
and this one thresholds them (``> threshold``, 0.5 as SAM 3's ``mask_threshold``) without a model of its
own. Its scores are each mask's mean map value inside the mask (0 for an empty mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pseudolabel.components import fraction
from pseudolabel.vfm.base import (
    BoxMasks,
    Segmenter,
    segmenter,
)


@segmenter.register("grounder_masks")
class GrounderMasks(Segmenter):
    """The grounder's own per-box masks (grounder ``sam3``), thresholded; no model."""

    takes_priors = True

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = fraction(threshold, "threshold")

    def provenance(self) -> dict[str, Any]:
        return {"backend": "grounder_masks", "threshold": self.threshold}

    def _segment_boxes(  # type: ignore[override]  # takes_priors: the base hands the checked priors over
        self, images: list[np.ndarray], boxes: list[np.ndarray], priors: list[Sequence[np.ndarray] | None]
    ) -> list[BoxMasks]:
        """Per-box masks from ``priors`` (per image one ``[H, W]`` map in [0, 1] per box)."""
        results = []
        for image_boxes, maps in zip(boxes, priors, strict=True):
            if maps is None:
                raise ValueError(
                    f"segmenter grounder_masks uses the masks a grounder returns with its boxes (grounder sam3); "
                    f"an image has {len(image_boxes)} boxes but 0 masks"
                )
            stack = np.stack([np.asarray(m, np.float32) for m in maps])
            masks = stack > self.threshold
            area = masks.sum(axis=(1, 2))
            scores = np.where(area > 0, (stack * masks).sum(axis=(1, 2)) / np.maximum(area, 1), 0.0)
            results.append(BoxMasks(masks, scores.astype(np.float32)))
        return results
