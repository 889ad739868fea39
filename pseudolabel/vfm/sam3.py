"""The ``sam3`` grounder: SAM 3 through transformers, text phrases -> instance boxes WITH their masks.

``Sam3Model`` + ``Sam3Processor`` from a Hub id or local directory (default ``facebook/sam3``), loaded on
first use. SAM 3 finds every instance of a text concept in an image: per phrase one forward (the image's
vision features computed once per image) gives, per query, a box, a mask and a score; the score is
``sigmoid(pred_logits) * sigmoid(presence_logits)`` as in ``Sam3Processor.post_process_instance_segmentation``
(``presence_logits``: is the concept in the image at all). A phrase whose presence probability is below
``presence_threshold`` gets no box on that image (SAM 3's own "nothing of this here"), the others keep the
queries scoring above ``threshold``. Masks are the sigmoid of the mask logits resized (bilinear) to the image;
they go out as the detections' per-box ``maps``, which the ``grounder_masks`` segmenter thresholds at
``mask_threshold`` (0.5, SAM 3's): so ``grounder=sam3 segmenter=grounder_masks`` replaces GroundingDINO +
SAM in one model (preset ``openavs_sam3``).

torch, transformers and PIL are imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pseudolabel.components import LazyModel, fraction, transformers_loader
from pseudolabel.tiny_models import deep_merge, tiny_clip_tokenizer
from pseudolabel.vfm.base import Detections, Grounder, grounder

DEFAULT_MODEL = "facebook/sam3"
TEXT_LENGTH = 32  # Sam3Processor pads every phrase to 32 tokens

# A tiny random Sam3Config (~4 M parameters at 112 px: 8 x 8 patches of 14 px, windows of 4): ViT 64 wide x
# 2 layers, CLIP text 64 x 2, DETR / geometry / mask decoder 32 wide, 10 queries.
TINY_SAM3: dict[str, Any] = {
    "vision_config": {
        "backbone_config": {
            "model_type": "sam3_vit_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 112,
            "window_size": 4,
            "pretrain_image_size": 56,
            "global_attn_indexes": [1],
        },
        "fpn_hidden_size": 32,
        "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
    },
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
        "max_position_embeddings": TEXT_LENGTH,
    },
    "geometry_encoder_config": {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "detr_encoder_config": {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "detr_decoder_config": {
        "hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "num_queries": 10
    },
    "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2},
}


def tiny_sam3_config(config: Mapping[str, Any], vocab_size: int) -> Any:
    """A ``Sam3Config`` from :data:`TINY_SAM3` updated with ``config``."""
    import transformers

    merged = deep_merge(TINY_SAM3, config)
    # the tiny tokenizer's ids: <|startoftext|> 0, <|endoftext|> 1 (also CLIP's padding)
    special = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    merged["text_config"] = {"vocab_size": vocab_size, **special, **merged["text_config"]}
    return transformers.Sam3Config(**merged)


def build_tiny_sam3(config: Any) -> tuple[Any, Any]:
    """A random ``Sam3Model`` and an offline ``Sam3Processor`` (overrides of :data:`TINY_SAM3`, or a config)."""
    import transformers

    tokenizer = tiny_clip_tokenizer()
    if isinstance(config, Mapping):
        config = tiny_sam3_config(config, len(tokenizer))
    size = config.vision_config.backbone_config.image_size
    image_processor = transformers.Sam3ImageProcessor(size={"height": size, "width": size})
    return transformers.Sam3Processor(image_processor=image_processor, tokenizer=tokenizer), transformers.Sam3Model(config)


@grounder.register("sam3")
class Sam3Grounder(Grounder):
    """SAM 3 (transformers ``Sam3Model``) text -> instance boxes with masks (segmenter ``grounder_masks``).

    Args:
        model: Hub id or local directory (default ``facebook/sam3``).
        threshold: keep a query whose score (detection x presence probability) exceeds it (0.5).
        presence_threshold: a phrase whose presence probability in the image is below it gets no box (0.5).
        max_instances: at most this many boxes per phrase and image (highest scores first); None: all.
        device, dtype, config, seed: see :class:`~pseudolabel.components.LazyModel` (``config``: overrides
            of :data:`TINY_SAM3`, a random model for tests).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        threshold: float = 0.5,
        presence_threshold: float = 0.5,
        max_instances: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        config: Any = None,
        seed: int = 0,
    ) -> None:
        if model is None and config is None:
            model = DEFAULT_MODEL
        self.threshold = fraction(threshold, "threshold")
        self.presence_threshold = fraction(presence_threshold, "presence_threshold")
        if max_instances is not None and int(max_instances) < 1:
            raise ValueError(f"max_instances must be a positive integer or None, got {max_instances!r}")
        self.max_instances = None if max_instances is None else int(max_instances)
        self.lazy = LazyModel(
            "Sam3Model", model, config=config, device=device, dtype=dtype, seed=seed,
            load_pretrained=transformers_loader("Sam3Model", "Sam3Processor"), build_random=build_tiny_sam3,
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "sam3", "threshold": self.threshold, "presence_threshold": self.presence_threshold,
            "max_instances": self.max_instances, **self.lazy.provenance(),
        }

    def _detect(self, images: list[np.ndarray], phrases: list[list[str]]) -> list[Detections]:
        import torch
        from PIL import Image

        loaded = self.lazy.get()
        network, processor = loaded.model, loaded.processor
        results = []
        for image, image_phrases in zip(images, phrases, strict=True):
            height, width = image.shape[:2]
            pixels = self.lazy.to_device(processor(images=[Image.fromarray(image)], return_tensors="pt"))["pixel_values"]
            boxes, scores, labels, maps = [], [], [], []
            with torch.inference_mode():
                vision = network.get_vision_features(pixel_values=pixels)
                for phrase in image_phrases:
                    text = processor.tokenizer(
                        [phrase], padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt"
                    )
                    out = network(vision_embeds=vision, **self.lazy.to_device(text))
                    presence = float(out.presence_logits.float().sigmoid()[0, 0])
                    if presence < self.presence_threshold:
                        continue
                    probs = out.pred_logits[0].float().sigmoid() * presence
                    keep = torch.nonzero(probs > self.threshold).flatten()
                    keep = keep[torch.argsort(probs[keep], descending=True)][: self.max_instances]
                    if len(keep) == 0:
                        continue
                    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
                    boxes.append((out.pred_boxes[0, keep].float().cpu() * scale).numpy())
                    scores.append(probs[keep].cpu().numpy())
                    masks = torch.nn.functional.interpolate(
                        out.pred_masks[0, keep][None].float().sigmoid(), size=(height, width), mode="bilinear",
                        align_corners=False,
                    )[0]
                    maps.extend(masks.cpu().numpy().astype(np.float32))
                    labels.extend([phrase] * len(keep))
            if not labels:
                results.append(Detections.empty())
                continue
            stacked = np.concatenate(boxes).astype(np.float32)
            stacked = np.clip(stacked, 0, [width, height, width, height]).astype(np.float32)
            stacked[:, 2:] = np.maximum(stacked[:, 2:], stacked[:, :2])
            results.append(
                Detections(stacked, np.concatenate(scores).astype(np.float32), labels, list(labels), maps)
            )
        return results
