"""The ``sam2_video`` video segmenter: SAM 2 / 2.1's video predictor through transformers.

``Sam2VideoModel`` + ``Sam2VideoProcessor`` from a Hub id or local directory (default
``facebook/sam2.1-hiera-large``; ``facebook/sam2.1-hiera-{tiny,small,base-plus}`` also work: the same
checkpoints the ``sam2`` image segmenter loads with ``Sam2Model``, which reads their image part).
The clip's frames stay in memory (``Sam2VideoProcessor.init_video_session(video=frames)``, no JPEG
folder).

Per prompt frame, following AL-Ref-SAM2's ``avs/*/sam2.py`` (appletea233/AL-Ref-SAM2):

1. ``prompt="mask"`` (default): SAM 2's image model segments the box on that frame (``Sam2Model`` made of
   the video model's own image encoder, prompt encoder and mask decoder: the same weights, no copy), and
   that mask is the object's prompt (AL-Ref-SAM2's ``SAM2ImagePredictor`` + ``add_new_mask``). SAM 2 keeps a
   mask prompt as the frame's output (``_use_mask_as_output``), but at its low mask resolution (a quarter of
   the model's input size), which blurs a small object away; we give that frame the prompt mask itself at
   full resolution, so the frame's mask IS the image predictor's (the tests check it). The memory the other
   frames are tracked from is SAM 2's own.
   ``prompt="box"``: the box is the prompt (the Grounded-SAM-2 tracking demos' ``"box"`` mode); the video
   model then empties the frame's mask when its object score is negative, which the image model does not;
2. propagation forward from the frame to the end, then in reverse to frame 0
   (``propagate_in_video_iterator``); mask logits resized to the frame size and thresholded at 0.

Objects prompted on the same frame share one tracking session; each prompt frame starts its own.
torch and transformers are imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pseudolabel.components import Lazy, LazyModel, transformers_loader
from pseudolabel.tiny_models import deep_merge
from pseudolabel.vfm.video import VideoSegmenter, track_by_frame, video_segmenter

DEFAULT_MODEL = "facebook/sam2.1-hiera-large"
PROMPTS = ("mask", "box")
MASK_THRESHOLD = 0.0  # sam2/sam2_video_predictor.py: video_res_masks > 0.0

# A tiny random Sam2VideoConfig (~1M parameters, 128 px). The memory attention's cross-attention reads
# 64-channel memories (a fixed kv_in_dim in transformers), and object pointers are split into
# memory-sized tokens, so the prompt / mask-decoder / FPN width must be a multiple of 64 above it.
TINY_SAM2_VIDEO: dict[str, Any] = {
    "image_size": 128,
    "vision_config": {
        "backbone_config": {
            "model_type": "sam2_hiera_det_model",
            "hidden_size": 8,
            "embed_dim_per_stage": [8, 16, 32, 64],
            "blocks_per_stage": [1, 1, 2, 1],
            "num_attention_heads_per_stage": [1, 1, 1, 1],
            "global_attention_blocks": [3],
            "image_size": [128, 128],
            "window_size_per_stage": [4, 4, 4, 4],
            "window_positional_embedding_background_size": [2, 2],
        },
        "backbone_channel_list": [64, 32, 16, 8],
        "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        "fpn_hidden_size": 128,
    },
    "prompt_encoder_config": {"hidden_size": 128, "image_size": 128},
    "mask_decoder_config": {"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    "memory_attention_hidden_size": 128,
    "memory_attention_num_layers": 1,
    "memory_attention_feed_forward_hidden_size": 64,
    "memory_attention_rope_feat_sizes": [8, 8],
    "memory_encoder_hidden_size": 128,
    "memory_encoder_output_channels": 64,
    "mask_downsampler_embed_dim": 128,
    "memory_fuser_embed_dim": 128,
    "memory_fuser_intermediate_dim": 64,
    "num_maskmem": 3,
    "max_object_pointers_in_encoder": 4,
}


def sam2_video_processor(image_size: int) -> Any:
    """A ``Sam2VideoProcessor`` for ``image_size`` square inputs, made offline."""
    import transformers

    size = {"height": int(image_size), "width": int(image_size)}
    return transformers.Sam2VideoProcessor(
        image_processor=transformers.Sam2ImageProcessor(size=size),
        video_processor=transformers.Sam2VideoVideoProcessor(size=size),
    )


def build_tiny_sam2_video(config: Any) -> tuple[Any, Any]:
    """A random ``Sam2VideoModel`` and its processor from :data:`TINY_SAM2_VIDEO` updated with ``config``
    (a mapping), or from a ``Sam2VideoConfig``."""
    import transformers

    if isinstance(config, Mapping):
        config = transformers.Sam2VideoConfig(**deep_merge(TINY_SAM2_VIDEO, config))
    return sam2_video_processor(config.image_size), transformers.Sam2VideoModel(config)


def image_model(video: Any) -> Any:
    """A ``Sam2Model`` (SAM 2's image path) whose modules ARE ``video``'s (a ``Sam2VideoModel``): built on
    the meta device, then given the video model's image encoder, prompt encoder, mask decoder and
    no-memory embedding, so no weight is copied."""
    import torch
    import transformers

    config = video.config
    image_config = transformers.Sam2Config(
        vision_config=config.vision_config.to_dict(),
        prompt_encoder_config=config.prompt_encoder_config.to_dict(),
        mask_decoder_config=config.mask_decoder_config.to_dict(),
    )
    with torch.device("meta"):
        image = transformers.Sam2Model(image_config)
    for name in ("shared_image_embedding", "vision_encoder", "prompt_encoder", "mask_decoder"):
        setattr(image, name, getattr(video, name))
    image.no_memory_embedding = video.no_memory_embedding
    left = [name for name, tensor in [*image.named_parameters(), *image.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"Sam2Model parts not found in the Sam2VideoModel: {left[:5]}")
    return image.eval()


@video_segmenter.register("sam2_video")
class Sam2VideoSegmenter(VideoSegmenter):
    """SAM 2 video predictor (transformers ``Sam2VideoModel``): a box on one frame -> masks over the clip.

    Args:
        model: Hub id or local directory (default ``facebook/sam2.1-hiera-large``).
        prompt: ``mask`` (the box's mask on its frame is the prompt, as AL-Ref-SAM2) or ``box``.
        device: torch device.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        config: random weights instead: a mapping of overrides of :data:`TINY_SAM2_VIDEO` (``{}``: tiny
            defaults) or a ``Sam2VideoConfig`` (tests, offline).
        seed: seed of the random initialisation (``config`` only).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt: str = "mask",
        device: str = "cpu",
        dtype: str = "float32",
        config: Any = None,
        seed: int = 0,
    ) -> None:
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
        if model is None and config is None:
            model = DEFAULT_MODEL
        self.prompt = prompt
        self.lazy = LazyModel(
            "Sam2VideoModel",
            model,
            config=config,
            device=device,
            dtype=dtype,
            seed=seed,
            load_pretrained=transformers_loader("Sam2VideoModel", "Sam2VideoProcessor"),
            build_random=build_tiny_sam2_video,
        )
        self.image = Lazy(lambda: image_model(self.lazy.model))  # the image predictor on the same weights

    def provenance(self) -> dict[str, Any]:
        return {"backend": "sam2_video", "prompt": self.prompt, **self.lazy.provenance()}

    def segment_frame(self, frame: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        """``[N, H, W]`` bool: SAM 2's image-model masks of ``boxes`` (xyxy pixels) on one frame, as the
        ``sam2`` segmenter makes them (``multimask_output=False``, logits > 0)."""
        import torch
        from PIL import Image

        processor, image = self.lazy.processor, self.image.get()
        encoded = processor(images=[Image.fromarray(frame)], input_boxes=[[b.tolist() for b in boxes]], return_tensors="pt")
        with torch.inference_mode():
            inputs = self.lazy.to_device({k: v for k, v in encoded.items() if k in ("pixel_values", "input_boxes")})
            outputs = image(**inputs, multimask_output=False)
        (masks,) = processor.post_process_masks(
            outputs.pred_masks.float().cpu(), encoded["original_sizes"], mask_threshold=MASK_THRESHOLD, binarize=True
        )
        return masks[:, 0].numpy().astype(bool)

    def _masks(self, processor: Any, pred_masks: Any, session: Any) -> np.ndarray:
        """``[objects, H, W]`` bool masks at the frame size from ``[objects, 1, h, w]`` logits."""
        (masks,) = processor.post_process_masks(
            [pred_masks.float().cpu()],
            original_sizes=[[session.video_height, session.video_width]],
            mask_threshold=MASK_THRESHOLD,
            binarize=True,
        )
        return masks[:, 0].numpy().astype(bool)

    def _propagate(
        self, frames: np.ndarray, prompts: list[tuple[int, np.ndarray]], labels: list[str] | None = None
    ) -> list[np.ndarray]:
        import torch

        loaded = self.lazy.get()
        network, processor = loaded.model, loaded.processor
        with torch.inference_mode():
            session = processor.init_video_session(video=list(frames), inference_device=network.device, dtype=network.dtype)

        def track(frame: int, indices: list[int]) -> np.ndarray:
            obj_ids = list(range(1, len(indices) + 1))
            masks = np.zeros((len(indices), *frames.shape[:3]), dtype=bool)
            with torch.inference_mode():
                # (the session keeps the id list it is given and empties it: pass copies)
                session.reset_tracking_data()  # the processed frames and their cached features stay
                if self.prompt == "mask":
                    pivot = self.segment_frame(frames[frame], [prompts[i][1] for i in indices])
                    processor.add_inputs_to_inference_session(
                        inference_session=session, frame_idx=frame, obj_ids=list(obj_ids), input_masks=list(pivot)
                    )
                else:
                    boxes = [[prompts[i][1].tolist() for i in indices]]
                    processor.add_inputs_to_inference_session(
                        inference_session=session, frame_idx=frame, obj_ids=list(obj_ids), input_boxes=boxes
                    )
                for reverse in (False, True):
                    for output in network.propagate_in_video_iterator(session, start_frame_idx=frame, reverse=reverse):
                        masks[:, output.frame_idx] = self._masks(processor, output.pred_masks, session)
                if self.prompt == "mask":
                    masks[:, frame] = pivot  # the prompt at full resolution (SAM 2 returns it at its mask size)
            return masks

        return track_by_frame(prompts, track)
