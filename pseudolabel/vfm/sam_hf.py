"""The ``sam`` segmenter (SAM v1 through transformers) and the box-prompt logic it shares with ``sam2``.

``SamModel`` + ``SamProcessor`` from a Hub id or local directory (default ``facebook/sam-vit-huge``;
``facebook/sam-vit-{base,large}`` also work), loaded on first use. SAM is the OpenAVS paper's
default segmentation model, SAM 2 its alternative (implementation details of arXiv 2505.01448).
Each box is its own prompt (``input_boxes`` nested as image -> box -> xyxy, in original pixels),
decoded with ``multimask_output=False`` (one mask per box, as SAM's and SAM 2's predictors advise
for boxes and as Grounded-SAM-2 and AL-Ref-SAM2 do); the low-resolution logits are resized to the
image by the processor's ``post_process_masks`` and thresholded at 0. A batch of images whose box
counts differ is padded by repeating an image's first box; the extra masks are dropped.

torch, transformers and PIL are imported on first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pseudolabel.vfm.base import (
    BoxMasks,
    Segmenter,
    TransformersBackend,
    chunks,
    segmenter,
)

# SAM's and SAM 2's predictors binarise mask logits at 0 (segment_anything/predictor.py
# mask_threshold, sam2/sam2_image_predictor.py mask_threshold=0.0).
MASK_THRESHOLD = 0.0


class TransformersSamSegmenter(TransformersBackend, Segmenter):
    """Box prompts through a transformers SAM-family model (``SamModel`` or ``Sam2Model``).

    Args:
        model: Hub id or local directory (default: the class's ``default_model`` unless ``config``
            is given).
        batch_size: images per forward pass.
        device: torch device.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        config: a model config to build a randomly initialised model from (tests, offline).
        processor: the processor to use with ``config``.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 4,
        device: str = "cpu",
        dtype: str = "float32",
        config: Any = None,
        processor: Any = None,
    ) -> None:
        self._init_model(model, config, processor, device, dtype, batch_size)

    def _post_process(self, processor: Any, pred_masks: Any, encoded: Any) -> list[Any]:
        """Per image ``[boxes, 1, H, W]`` bool masks at the original size from ``pred_masks``
        ``[B, boxes, 1, h, w]`` logits (float32, on the CPU)."""
        return processor.image_processor.post_process_masks(
            pred_masks,
            encoded["original_sizes"],
            encoded["reshaped_input_sizes"],
            mask_threshold=MASK_THRESHOLD,
            binarize=True,
        )

    def _segment_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[BoxMasks]:
        import torch
        from PIL import Image

        loaded = self.lazy.get()
        network, processor = loaded.model, loaded.processor
        results: list[BoxMasks] = []
        for batch in chunks(range(len(images)), self.batch_size):
            most = max(len(boxes[i]) for i in batch)
            padded = [np.concatenate([boxes[i], np.repeat(boxes[i][:1], most - len(boxes[i]), axis=0)]) for i in batch]
            encoded = processor(
                images=[Image.fromarray(images[i]) for i in batch],
                input_boxes=[image_boxes.tolist() for image_boxes in padded],
                return_tensors="pt",
            )
            with torch.inference_mode():
                outputs = network(**self.lazy.to_device(encoded), multimask_output=False)
            masks = self._post_process(processor, outputs.pred_masks.float().cpu(), encoded)
            scores = outputs.iou_scores.float().cpu().numpy()  # [B, boxes, 1]
            for row, index in enumerate(batch):
                count = len(boxes[index])
                results.append(
                    BoxMasks(
                        masks=masks[row][:count, 0].numpy().astype(bool),
                        scores=scores[row, :count, 0].astype(np.float32),
                    )
                )
        return results


@segmenter.register("sam")
class SamSegmenter(TransformersSamSegmenter):
    """SAM v1 (transformers ``SamModel``) box prompts -> masks."""

    model_class = "SamModel"
    processor_class = "SamProcessor"
    default_model = "facebook/sam-vit-huge"
