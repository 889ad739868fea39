"""The ``sam2`` segmenter: SAM 2 / 2.1 image model through transformers.

``Sam2Model`` + ``Sam2Processor`` from a Hub id or local directory (default
``facebook/sam2.1-hiera-large``; ``facebook/sam2.1-hiera-{tiny,small,base-plus}`` also work),
loaded on first use. Box prompts, ``multimask_output=False``, masks resized to the image by
``Sam2Processor.post_process_masks`` and thresholded at 0: see :mod:`pseudolabel.vfm.sam_hf`.
The transformers config keeps SAM 2's stability fallback for single-mask output
(``dynamic_multimask_via_stability``), as ``sam2.build_sam.build_sam2`` does by default.
"""

from __future__ import annotations

from typing import Any

from pseudolabel.vfm.base import segmenter
from pseudolabel.vfm.sam_hf import MASK_THRESHOLD, TransformersSamSegmenter


@segmenter.register("sam2")
class Sam2Segmenter(TransformersSamSegmenter):
    """SAM 2 (transformers ``Sam2Model``) box prompts -> masks."""

    model_class = "Sam2Model"
    processor_class = "Sam2Processor"
    default_model = "facebook/sam2.1-hiera-large"

    def _post_process(self, processor: Any, pred_masks: Any, encoded: Any) -> list[Any]:
        return processor.post_process_masks(
            pred_masks, encoded["original_sizes"], mask_threshold=MASK_THRESHOLD, binarize=True
        )
