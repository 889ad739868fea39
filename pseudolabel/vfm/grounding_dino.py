"""The ``grounding_dino`` grounder: GroundingDINO through transformers.

``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor`` from a Hub id or local directory
(default ``IDEA-Research/grounding-dino-tiny``; ``IDEA-Research/grounding-dino-base`` also works),
loaded on first use. We use the transformers port rather than IDEA's ``groundingdino`` package,
which breaks on transformers 5 (its ``groundingdino/models/GroundingDINO/bertwarper.py`` calls
``BertModel.get_extended_attention_mask``, gone in 5.x; IDEA-Research/GroundingDINO issue #446).

Per image the phrases become one caption ``"a. b."``: lower-case, each phrase ending with a period
(IDEA's ``predict`` lower-cases and appends the final period; Grounded-SAM-2's demos join several
classes this way). A query is kept when its best token probability exceeds the box threshold (0.25,
the OpenAVS paper's value); its box comes back in the image's pixels (transformers post-processing:
cxcywh -> xyxy, times ``[W, H, W, H]``), clipped to the image. The text threshold (0.25) only
decides the detector's own text for a box (``Detections.texts``: the tokens above it, without
periods), as in IDEA's ``predict``, which keeps boxes whose text comes out empty. Each box is also
assigned the queried phrase it matches best (``Detections.labels``: highest token probability
within the phrase's tokens), so labels are always query phrases. Batches hold images of one size
only, so a result does not depend on which other images share its batch.

GroundingDINO reads at most ``config.max_text_len`` (256) tokens; phrases beyond that are never
matched (a warning names them). torch, transformers and PIL are imported on first use.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from pseudolabel.components import fraction
from pseudolabel.vfm.base import (
    Detections,
    Grounder,
    TransformersBackend,
    clean_phrases,
    grounder,
    same_size_batches,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "IDEA-Research/grounding-dino-tiny"
# Box threshold: OpenAVS (arXiv 2505.01448, implementation details and Fig. A2: 0.25 for all
# experiments). Text threshold: OpenAVS does not state one; 0.25 is AL-Ref-SAM2's for AVS (paper and
# avs/*/gdino.py) and IDEA's demo default.
BOX_THRESHOLD = 0.25
TEXT_THRESHOLD = 0.25
PHRASE_SEPARATOR = ". "


def format_caption(phrases: Sequence[str]) -> str:
    """GroundingDINO's text query for ``phrases``: cleaned, joined as ``"a. b."``."""
    return PHRASE_SEPARATOR.join(clean_phrases(phrases)) + "."


def phrase_spans(phrases: Sequence[str]) -> list[tuple[int, int]]:
    """Character ``[start, end)`` of each (already cleaned) phrase in :func:`format_caption`'s text."""
    spans: list[tuple[int, int]] = []
    start = 0
    for phrase in phrases:
        spans.append((start, start + len(phrase)))
        start += len(phrase) + len(PHRASE_SEPARATOR)
    return spans


def threshold_keyword(processor: Any) -> str:
    """The box-threshold keyword of ``processor.post_process_grounded_object_detection``:
    ``threshold`` in transformers >= 4.55 / 5.x, ``box_threshold`` before (IDEA-Research/Grounded-SAM-2 PR #119)."""
    parameters = inspect.signature(processor.post_process_grounded_object_detection).parameters
    return "threshold" if "threshold" in parameters else "box_threshold"


@grounder.register("grounding_dino")
class GroundingDinoGrounder(TransformersBackend, Grounder):
    """GroundingDINO (transformers) text -> boxes.

    Args:
        model: Hub id or local directory (default ``IDEA-Research/grounding-dino-tiny`` unless
            ``config`` is given).
        box_threshold: keep a query whose best token probability exceeds this.
        text_threshold: tokens above this make up a box's ``texts`` entry.
        batch_size: images per forward pass. A batch only holds images of one size: padding images to
            a common size changes GroundingDINO's output, and IDEA's ``predict`` sees one image.
        device: torch device.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        config: a ``GroundingDinoConfig`` to build a randomly initialised model from (tests).
        processor: the ``GroundingDinoProcessor`` to use with ``config``.
    """

    model_class = "GroundingDinoForObjectDetection"
    processor_class = "GroundingDinoProcessor"
    default_model = DEFAULT_MODEL

    def __init__(
        self,
        model: str | None = None,
        *,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        config: Any = None,
        processor: Any = None,
        batch_size: int = 4,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.box_threshold = fraction(box_threshold, "box_threshold")
        self.text_threshold = fraction(text_threshold, "text_threshold")
        self._init_model(model, config, processor, device, dtype, batch_size)

    def _repr_fields(self) -> dict[str, Any]:
        return {"box_threshold": self.box_threshold, "text_threshold": self.text_threshold, **super()._repr_fields()}

    def _detect(self, images: list[np.ndarray], phrases: list[list[str]]) -> list[Detections]:
        import torch
        from PIL import Image

        loaded = self.lazy.get()
        network, processor = loaded.model, loaded.processor
        keyword = threshold_keyword(processor)
        # The text encoder's output must fit the model's max_text_len (256) token slots: a longer caption
        # (e.g. several untranslated ALM descriptions) makes transformers' GroundingDINO raise a shape
        # error, so it is truncated, as IDEA's model does (groundingdino/models/GroundingDINO/groundingdino.py
        # cuts the tokenized caption to max_text_len).
        max_text_len = int(getattr(network.config, "max_text_len", 256))
        found: dict[int, Detections] = {}
        for batch in same_size_batches(images, self.batch_size):
            encoded = processor(
                images=[Image.fromarray(images[i]) for i in batch],
                text=[format_caption(phrases[i]) for i in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_text_len,
                return_offsets_mapping=True,
            )
            offsets = encoded.pop("offset_mapping")
            inputs = self.lazy.to_device(encoded)
            with torch.inference_mode():
                outputs = network(**inputs)
            sizes = [images[i].shape[:2] for i in batch]
            processed = processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                **{keyword: self.box_threshold},
                text_threshold=self.text_threshold,
                target_sizes=sizes,
            )
            token_probs = outputs.logits.float().sigmoid()  # [B, queries, max_text_len]
            for row, index in enumerate(batch):
                found[index] = self._detections(
                    processed[row], token_probs[row], offsets[row], phrases[index], sizes[row]
                )
        return [found[index] for index in range(len(images))]

    def _detections(
        self,
        processed: dict[str, Any],
        token_probs: Any,
        offsets: Any,
        phrases: list[str],
        size: tuple[int, int],
    ) -> Detections:
        """One image's post-processed output as :class:`Detections` with phrase labels.

        ``token_probs`` is ``[queries, max_text_len]``; ``offsets`` the ``[tokens, 2]`` character
        offsets of the caption's tokens (special and padding tokens are ``(0, 0)``).
        """
        import torch

        kept = token_probs[token_probs.max(dim=-1).values > self.box_threshold]  # the post-processor's rule
        if len(kept) != len(processed["scores"]):
            raise RuntimeError(
                f"GroundingDINO post-processing kept {len(processed['scores'])} boxes, expected {len(kept)}"
            )
        if not len(kept):
            return Detections.empty()
        token_indices = self._phrase_tokens(offsets, phrases, kept.shape[-1])
        phrase_scores = torch.stack(
            [
                kept[:, indices].max(dim=-1).values if indices else kept.new_full((len(kept),), -1.0)
                for indices in token_indices
            ]
        )  # [phrases, boxes]
        height, width = size
        boxes = processed["boxes"].float().cpu().numpy().astype(np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return Detections(
            boxes=boxes,
            scores=processed["scores"].float().cpu().numpy().astype(np.float32),
            labels=[phrases[i] for i in phrase_scores.argmax(dim=0).tolist()],
            # periods removed as in IDEA's groundingdino/util/inference.py predict()
            texts=[str(text).replace(".", "").strip() for text in processed["text_labels"]],
        )

    @staticmethod
    def _phrase_tokens(offsets: Any, phrases: list[str], max_text_len: int) -> list[list[int]]:
        """Per phrase, the indices of its tokens among the first ``max_text_len``."""
        token_spans = offsets.tolist()
        indices: list[list[int]] = []
        for phrase, (start, end) in zip(phrases, phrase_spans(phrases)):
            indices.append(
                [
                    token
                    for token, (token_start, token_end) in enumerate(token_spans[:max_text_len])
                    if token_end > token_start >= start and token_end <= end
                ]
            )
        unread = [phrase for phrase, phrase_indices in zip(phrases, indices) if not phrase_indices]
        if unread:
            log.warning(
                "GroundingDINO reads only the first %d tokens of the caption %r: phrases %s are ignored",
                max_text_len,
                format_caption(phrases),
                unread,
            )
        return indices
