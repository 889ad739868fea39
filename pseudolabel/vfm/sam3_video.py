"""The ``sam3_video`` video segmenter: SAM 3 finds and tracks every instance of text phrases through a clip.

``Sam3VideoModel`` + ``Sam3VideoProcessor`` from a Hub id or local directory (default ``facebook/sam3``),
loaded on first use; frames stay in memory (``init_video_session(video=frames)``). :meth:`track` adds the
phrases as text prompts and runs the model over the clip from frame 0 (its detector looks for the phrases on
every frame, its SAM 2-style tracker carries the instances found): per phrase the OR of its instances'
masks on each frame (``Sam3VideoProcessor.postprocess_outputs``: ``prompt_to_obj_ids``, masks > 0).
A detection counts when its score (detection x presence probability, so a concept absent from the frame
scores low) exceeds ``threshold`` (the model's ``score_threshold_detection``) and starts a new track above
``new_object_threshold`` (``new_det_thresh``).

It tracks text: :meth:`propagate` takes box prompts only with ``labels=`` (each box's text), tracks those
texts and gives each prompt the instance overlapping its box best on its frame (AL-Ref-SAM2: the category
and its pivot box); box-only prompts are ``sam2_video``'s. OpenAVS uses it with
``labeler.propagate=true labeler/video_segmenter=sam3_video`` (the phrases go to :meth:`track`; no grounder
runs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pseudolabel.components import LazyModel, fraction, transformers_loader
from pseudolabel.tiny_models import deep_merge, tiny_clip_tokenizer
from pseudolabel.vfm.base import clean_phrases
from pseudolabel.vfm.sam2_video import TINY_SAM2_VIDEO
from pseudolabel.vfm.sam3 import TINY_SAM3, tiny_sam3_config
from pseudolabel.vfm.video import VideoSegmenter, check_frames, video_segmenter

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam3"
SIZE = TINY_SAM3["vision_config"]["backbone_config"]["image_size"]  # tiny models: 8 x 8 patches of 14 px

# A tiny random Sam3VideoConfig: the tiny SAM 3 detector at 112 px (its FPN 128 wide, as the tracker's
# prompt encoder reads it) and a SAM 2-style tracker as tiny as sam2_video's on the same vision config, at most
# 4 objects, no hot start.
_TINY_DETECTOR = deep_merge(
    TINY_SAM3,
    {
        "vision_config": {"fpn_hidden_size": 128},
        "geometry_encoder_config": {"hidden_size": 128},
        "detr_encoder_config": {"hidden_size": 128},
        "detr_decoder_config": {"hidden_size": 128, "num_queries": 3},
        "mask_decoder_config": {"hidden_size": 128},
    },
)
TINY_SAM3_VIDEO: dict[str, Any] = {
    "detector_config": _TINY_DETECTOR,
    "tracker_config": {
        **{k: v for k, v in TINY_SAM2_VIDEO.items() if k.startswith(("memory_", "mask_downsampler", "num_maskmem", "max_object"))},
        "image_size": SIZE,
        "memory_attention_rope_feat_sizes": [SIZE // 14] * 2,
        "vision_config": deep_merge(_TINY_DETECTOR["vision_config"], {}),
        "prompt_encoder_config": {"hidden_size": 128, "image_size": SIZE, "patch_size": 14},
        "mask_decoder_config": {"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    },
    "low_res_mask_size": 32,
    "max_num_objects": 4,
    "hotstart_delay": 0,
}


def build_tiny_sam3_video(config: Any) -> tuple[Any, Any]:
    """A random ``Sam3VideoModel`` and an offline ``Sam3VideoProcessor`` (overrides of
    :data:`TINY_SAM3_VIDEO`, or a config)."""
    import transformers

    tokenizer = tiny_clip_tokenizer()
    if isinstance(config, Mapping):
        merged = deep_merge(TINY_SAM3_VIDEO, config)
        merged["detector_config"] = tiny_sam3_config(merged["detector_config"], len(tokenizer)).to_dict()
        config = transformers.Sam3VideoConfig(**merged)
    size = config.detector_config.vision_config.backbone_config.image_size
    shape = {"height": size, "width": size}
    processor = transformers.Sam3VideoProcessor(
        image_processor=transformers.Sam3ImageProcessor(size=shape),
        video_processor=transformers.Sam2VideoVideoProcessor(size=shape, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tokenizer,
    )
    return processor, transformers.Sam3VideoModel(config)


@video_segmenter.register("sam3_video")
class Sam3VideoSegmenter(VideoSegmenter):
    """SAM 3 video (transformers ``Sam3VideoModel``): text phrases -> every instance tracked over the clip.

    Args:
        model: Hub id or local directory (default ``facebook/sam3``).
        threshold: detection score (x presence) a detection must exceed (the model's default 0.5).
        new_object_threshold: score a detection needs to start a new track (the model's default 0.7).
        device, dtype, config, seed: see :class:`~pseudolabel.components.LazyModel` (``config``: overrides
            of :data:`TINY_SAM3_VIDEO`, a random model for tests).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        threshold: float = 0.5,
        new_object_threshold: float = 0.7,
        device: str = "cpu",
        dtype: str = "float32",
        config: Any = None,
        seed: int = 0,
    ) -> None:
        if model is None and config is None:
            model = DEFAULT_MODEL
        self.threshold = fraction(threshold, "threshold")
        self.new_object_threshold = fraction(new_object_threshold, "new_object_threshold")
        self.lazy = LazyModel(
            "Sam3VideoModel", model, config=config, device=device, dtype=dtype, seed=seed,
            load_pretrained=transformers_loader("Sam3VideoModel", "Sam3VideoProcessor"),
            build_random=build_tiny_sam3_video,
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "sam3_video", "threshold": self.threshold, "new_object_threshold": self.new_object_threshold,
            **self.lazy.provenance(),
        }

    def _propagate(
        self, frames: np.ndarray, prompts: list[tuple[int, np.ndarray]], labels: list[str] | None = None
    ) -> list[np.ndarray]:
        """Box prompts with their ``labels``: the label's text is tracked and each prompt gets the tracked
        instance whose mask on the prompt's frame overlaps its box best (IoU of the mask with the filled box);
        none overlapping: an empty mask, with a warning naming the label and frame."""
        if labels is None:
            raise ValueError(
                "video_segmenter sam3_video tracks text: give each box prompt its text (propagate(frames, "
                "prompts, labels=[...])) or use track(frames, phrases); box-only prompts are sam2_video's"
            )
        objects = self._objects(frames, labels)
        height, width = frames.shape[1:3]
        out = []
        for (frame, box), label in zip(prompts, labels, strict=True):
            x0, y0, x1, y1 = np.round(box).astype(int)
            rect = np.zeros((height, width), bool)
            rect[y0:y1, x0:x1] = True
            best, best_iou = None, 0.0
            for masks in objects.get(label, {}).values():
                union = np.logical_or(masks[frame], rect).sum()
                overlap = np.logical_and(masks[frame], rect).sum() / union if union else 0.0
                if overlap > best_iou:
                    best, best_iou = masks, overlap
            if best is None:
                found = len(objects.get(label, {}))
                logger.warning("sam3_video: none of the %d tracked instances of %r overlaps its box on frame %d; "
                               "its masks are empty", found, label, frame)
            out.append(best.copy() if best is not None else np.zeros(frames.shape[:3], bool))
        return out

    def track(self, frames: np.ndarray, phrases: Sequence[str]) -> dict[str, np.ndarray]:
        """Per phrase, ``[T, H, W]`` bool: the OR of the masks of every instance of it on each frame.

        Args:
            frames: the clip, ``[T, H, W, 3]`` uint8 RGB.
            phrases: text concepts (cleaned: lower case, no periods, duplicates dropped); the keys of the
                result are the phrases as given.
        """
        frames = check_frames(frames)
        if isinstance(phrases, str):
            raise TypeError(f"phrases must be a list of strings, got the string {phrases!r}")
        objects = self._objects(frames, phrases)
        out = {p: np.zeros(frames.shape[:3], bool) for p in phrases}
        for phrase, tracks in objects.items():
            for masks in tracks.values():
                out[phrase] |= masks
        return out

    def _objects(self, frames: np.ndarray, phrases: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
        """Per phrase (as given), its tracked instances: object id -> ``[T, H, W]`` bool."""
        import torch

        keys: dict[str, list[str]] = {}  # cleaned text -> the phrases given that clean to it
        for phrase in phrases:
            for text in clean_phrases([phrase]):
                keys.setdefault(text, []).append(phrase)
        out: dict[str, dict[int, np.ndarray]] = {p: {} for p in phrases}
        if not keys:
            return out
        loaded = self.lazy.get()
        network, processor = loaded.model, loaded.processor
        network.score_threshold_detection = self.threshold
        network.new_det_thresh = self.new_object_threshold
        with torch.inference_mode():
            session = processor.init_video_session(video=list(frames), inference_device=network.device, dtype=network.dtype)
            processor.add_text_prompt(session, list(keys))
            for output in network.propagate_in_video_iterator(session, start_frame_idx=0):
                result = processor.postprocess_outputs(session, output)
                ids = result["object_ids"].tolist()
                masks = result["masks"].cpu().numpy().astype(bool)
                for text, obj_ids in result["prompt_to_obj_ids"].items():
                    for obj_id in obj_ids:
                        if obj_id not in ids:
                            continue
                        for phrase in keys[text]:
                            track = out[phrase].setdefault(obj_id, np.zeros(frames.shape[:3], bool))
                            track[output.frame_idx] = masks[ids.index(obj_id)]
        return out
