"""Clip transforms: one albumentations pipeline applied with the same geometry to every frame and mask.

The original recipes use no augmentation for S4/MS3 (no flip, no jitter) and only a deterministic
short-side resize + centre crop for AVSS training (``avss/color_dataloader.py::crop_resize_img``), so
augmentation is off by default. Frames are resized bilinearly, masks with nearest neighbour, then
ImageNet-normalised (mean 0.485/0.456/0.406, std 0.229/0.224/0.225, as every original loader; for SAM
this equals its own pixel mean/std on the 0–255 scale).

Resizing uses OpenCV's bilinear filter. The originals resize with PIL, which antialiases when
shrinking; AVSBench S4/MS3 frames ship at 224² so TPAVI never resizes, and the 224→512 (AVSegFormer)
and 224→1024 (SAMA-AVS) upsamplings are plain bilinear in both libraries (differences are rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from openavs_st.data.clip import Clip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("resize", "short_side_center_crop")


@dataclass
class ClipSample:
    """A transformed clip, ready to become tensors.

    Attributes:
        frames: ``[T, 3, H, W]`` float32, ImageNet-normalised; padding frames are all zero (the
            original AVSS loader pads with zero tensors after normalisation).
        masks: ``[T, H, W]`` uint8 (binary or class indices), zeros where there is no label.
        has_label, frame_valid: ``[T]`` bool, copied from the clip.
    """

    frames: np.ndarray
    masks: np.ndarray
    has_label: np.ndarray
    frame_valid: np.ndarray


def build_pipeline(size: int | tuple[int, int], *, mode: str = "resize", augment: bool = False) -> A.Compose:
    """The albumentations pipeline (geometry + optional photometric augmentation + normalisation).

    Args:
        size: output side (int) or (height, width).
        mode: ``"resize"`` (plain resize, every original S4/MS3 loader and AVSS val/test) or
            ``"short_side_center_crop"`` (AVSS train: short side to ``size``, centre crop).
        augment: add horizontal flip and mild colour jitter (off in every original recipe).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if mode == "resize":
        geometry: list[A.BasicTransform] = [
            A.Resize(h, w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
        ]
    elif mode == "short_side_center_crop":
        if h != w:
            raise ValueError(f"short_side_center_crop needs a square size, got {(h, w)}")
        geometry = [
            A.SmallestMaxSize(h, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
            A.CenterCrop(h, w),
        ]
    else:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    extra: list[A.BasicTransform] = []
    if augment:
        extra = [A.HorizontalFlip(p=0.5), A.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.5)]
    return A.Compose([*geometry, *extra, A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])


class ClipTransform:
    """Callable ``Clip -> ClipSample`` applying one pipeline to all frames and masks of a clip."""

    def __init__(self, size: int | tuple[int, int], *, mode: str = "resize", augment: bool = False) -> None:
        self.pipeline = build_pipeline(size, mode=mode, augment=augment)

    def __call__(self, clip: Clip) -> ClipSample:
        masks = clip.masks if clip.masks is not None else np.zeros(clip.frames.shape[:3], np.uint8)
        out = self.pipeline(images=clip.frames, masks=masks)
        frames = np.ascontiguousarray(np.asarray(out["images"], dtype=np.float32).transpose(0, 3, 1, 2))
        frames[~clip.frame_valid] = 0.0
        return ClipSample(
            frames=frames,
            masks=np.ascontiguousarray(np.asarray(out["masks"], dtype=np.uint8)),
            has_label=clip.has_label.copy(),
            frame_valid=clip.frame_valid.copy(),
        )
