"""Clip transforms: same geometry on every frame and mask, nearest masks, ImageNet normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform


def striped_clip(t: int = 5, h: int = 20, w: int = 30) -> Clip:
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[:, :, : w // 2] = 255  # left half white
    masks = np.zeros((t, h, w), np.uint8)
    masks[:, :, : w // 2] = 3  # class index 3 on the left
    return Clip("c", frames, masks=masks, frame_valid=np.array([True] * (t - 1) + [False]))


def test_resize_normalise_and_nearest_masks() -> None:
    clip = striped_clip()
    sample = ClipTransform(40)(clip)
    assert sample.frames.shape == (5, 3, 40, 40) and sample.frames.dtype == np.float32
    assert sample.masks.shape == (5, 40, 40)
    assert set(np.unique(sample.masks)) == {0, 3}  # nearest: no blended class values
    white = (1.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(sample.frames[0, :, 5, 2], white, rtol=1e-5)
    black = -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(sample.frames[0, :, 5, 37], black, rtol=1e-5)
    assert np.all(sample.frames[4] == 0)  # padding frame zeroed after normalisation
    assert sample.frame_valid.tolist() == [True] * 4 + [False]


def test_short_side_center_crop_matches_avss_train() -> None:
    clip = striped_clip(h=20, w=40)  # resized to 16x32, then centre crop 16x16 → both halves
    sample = ClipTransform(16, mode="short_side_center_crop")(clip)
    assert sample.masks.shape == (5, 16, 16)
    assert sample.masks[0, :, 0].tolist() == [3] * 16 and sample.masks[0, :, -1].tolist() == [0] * 16


def test_augmentation_applies_same_flip_to_all_frames() -> None:
    clip = striped_clip()
    flipped_seen = False
    for _ in range(20):
        s = ClipTransform(24, augment=True)(clip)
        left = s.masks[:, :, 0]
        assert np.all(left == left[0:1])  # one geometry for all frames
        assert all(np.array_equal(s.masks[i], s.masks[0]) for i in range(5))
        flipped_seen |= bool(left[0, 0] == 0)
    assert flipped_seen


def test_unknown_mode_and_bad_clip() -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        ClipTransform(16, mode="letterbox")
    with pytest.raises(ClipError, match="frames must be"):
        Clip("x", np.zeros((5, 4, 4), np.uint8))
