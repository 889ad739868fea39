"""The ``sam2_official_video`` video segmenter: Meta's ``sam2`` package (``SAM2VideoPredictor``) with a local
checkpoint, the alternative to ``sam2_video`` (transformers).

Built like ``sam2.build_sam.build_sam2_video_predictor(model_config, checkpoint, device,
apply_postprocessing=...)`` without touching Hydra's global state (see :mod:`pseudolabel.vfm.sam2_official`,
whose config reading, overrides and strict checkpoint loading it shares). ``SAM2VideoPredictor.init_state``
reads a folder of JPEGs named ``<index>.jpg`` (``sam2/utils/misc.py`` ``load_video_frames``): the clip's
frames are written to a temporary folder first (JPEG quality ``jpeg_quality``, as AL-Ref-SAM2 turns
AVSBench's PNGs into JPEGs), removed afterwards.

Per prompt frame, as AL-Ref-SAM2's ``avs/*/sam2.py`` (appletea233/AL-Ref-SAM2): ``prompt="mask"`` (default)
segments the box on the original frame with a ``SAM2ImagePredictor`` on the same model (same weights) and
adds that mask (``add_new_mask``; it is the frame's output), ``prompt="box"`` adds the box
(``add_new_points_or_box``); then ``propagate_in_video`` forward from the frame and in reverse, logits > 0.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.components import Lazy
from pseudolabel.vfm.sam2_official import (
    DEFAULT_CONFIG,
    POSTPROCESSING_OVERRIDES,
    build_sam2_image_predictor,
    dotlist_item,
)
from pseudolabel.vfm.sam2_video import PROMPTS
from pseudolabel.vfm.video import VideoSegmenter, track_by_frame, video_segmenter

# sam2/build_sam.py build_sam2_video_predictor(apply_postprocessing=True): besides the image predictor's
# stability fallback, masks from clicks enter the memory binarised, and small holes are filled (that needs
# sam2's CUDA extension; without it sam2 warns and skips it).
VIDEO_POSTPROCESSING_OVERRIDES = (
    *POSTPROCESSING_OVERRIDES,
    "model.binarize_mask_from_pts_for_mem_enc=true",
    "model.fill_hole_area=8",
)


@video_segmenter.register("sam2_official_video")
class Sam2OfficialVideoSegmenter(VideoSegmenter):
    """SAM 2 video predictor through the ``sam2`` package (``SAM2VideoPredictor``), Meta's checkpoint.

    Args:
        checkpoint: Meta's ``.pt`` file, or None for random weights (tests only: say it explicitly).
        model_config: a sam2 package config name or a YAML path matching the checkpoint.
        prompt: ``mask`` (the box's image-predictor mask on its frame is the prompt, as AL-Ref-SAM2) or ``box``.
        apply_postprocessing: ``build_sam2_video_predictor``'s option, default True as there.
        image_size: model input size override (``model.image_size``; default the config's 1024).
        overrides: extra ``key=value`` config overrides.
        jpeg_quality: quality of the temporary JPEG frames ``init_state`` reads.
        device: torch device.
    """

    source_key = "checkpoint"

    def __init__(
        self,
        checkpoint: str | Path | None,
        model_config: str | Path = DEFAULT_CONFIG,
        *,
        prompt: str = "mask",
        apply_postprocessing: bool = True,
        image_size: int | None = None,
        overrides: Sequence[str] = (),
        jpeg_quality: int = 95,
        device: str = "cpu",
    ) -> None:
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality!r}")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.model_config = str(model_config)
        self.prompt = prompt
        self.overrides = [
            "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
            *(VIDEO_POSTPROCESSING_OVERRIDES if apply_postprocessing else ()),
            *([f"model.image_size={int(image_size)}"] if image_size is not None else []),
            *(dotlist_item(override) for override in overrides),
        ]
        self.jpeg_quality = int(jpeg_quality)
        self.device = device
        self._predictors: Lazy[tuple[Any, Any]] = Lazy(self._load)

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "sam2_official_video", "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "model_config": self.model_config, "prompt": self.prompt, "device": self.device,
        }

    @property
    def predictor(self) -> Any:
        """The ``SAM2VideoPredictor`` (built now if needed)."""
        return self._predictors.get()[0]

    def _load(self) -> tuple[Any, Any]:
        image_predictor = build_sam2_image_predictor(self.model_config, self.overrides, self.checkpoint, self.device)
        importlib.import_module("sam2.sam2_video_predictor")  # the sam2 package is initialised: a plain import
        return image_predictor.model, image_predictor

    def _propagate(
        self, frames: np.ndarray, prompts: list[tuple[int, np.ndarray]], labels: list[str] | None = None
    ) -> list[np.ndarray]:
        predictor, image_predictor = self._predictors.get()
        import torch
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="sam2_frames_") as folder, torch.inference_mode():
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(Path(folder) / f"{t}.jpg", quality=self.jpeg_quality)
            state = predictor.init_state(video_path=folder)

            def track(frame: int, indices: list[int]) -> np.ndarray:
                predictor.reset_state(state)
                masks = np.zeros((len(indices), *frames.shape[:3]), dtype=bool)
                pivot = None
                if self.prompt == "mask":
                    image_predictor.set_image(frames[frame])
                    pivot = np.stack([
                        image_predictor.predict(box=prompts[i][1], multimask_output=False)[0][0] > 0.5 for i in indices
                    ])
                for obj, index in enumerate(indices, start=1):
                    if pivot is not None:
                        predictor.add_new_mask(state, frame_idx=frame, obj_id=obj, mask=pivot[obj - 1])
                    else:
                        predictor.add_new_points_or_box(state, frame_idx=frame, obj_id=obj, box=prompts[index][1])
                for reverse in (False, True):
                    for t, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=frame, reverse=reverse):
                        for row, obj in enumerate(obj_ids):
                            masks[obj - 1, t] = (logits[row, 0] > 0.0).cpu().numpy()
                if pivot is not None:
                    masks[:, frame] = pivot  # a mask prompt is the frame's output
                return masks

            return track_by_frame(prompts, track)
