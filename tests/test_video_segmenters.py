"""Video segmenters (``pseudolabel.vfm`` role ``video_segmenter``) offline with tiny random models: SAM 2's
video predictor through transformers (frames in memory, a box on one frame propagated forward and backward;
the prompt frame's mask equals the image predictor's for the same box and weights), input checks, and the
registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pseudolabel import vfm
from pseudolabel.components import build
from pseudolabel.vfm.video import create_video_segmenter

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from test_vfm import TINY_SAM2_CONFIG, TINY_SAM2_OVERRIDES  # noqa: E402  (a tiny hiera-t at 128 px)

BOX = np.array([6.0, 5.0, 34.0, 30.0], np.float32)
SMALL = np.array([20.5, 30.4, 24.2, 38.2], np.float32)  # the tiny model scores it "no object"


def _frames(count: int = 5, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """A bright square drifting right over a noisy background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 80, (count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, 8:28, 8 + 2 * t : 28 + 2 * t] = 230
    return frames


@pytest.fixture(scope="module")
def sam2_video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Sam2VideoModel saved with save_pretrained (the real from_pretrained path)."""
    directory = tmp_path_factory.mktemp("sam2_video")
    segmenter = create_video_segmenter("sam2_video", config={})
    segmenter.lazy.model.save_pretrained(directory)
    segmenter.lazy.processor.save_pretrained(directory)
    return directory


def _direct(directory: Path, frames: np.ndarray, frame: int, box: np.ndarray) -> np.ndarray:
    """transformers' video predictor run by hand: box on ``frame``, forward then reverse, logits > 0."""
    processor = transformers.Sam2VideoProcessor.from_pretrained(directory)
    model = transformers.Sam2VideoModel.from_pretrained(directory).eval()
    out = np.zeros(frames.shape[:3], bool)
    with torch.inference_mode():
        session = processor.init_video_session(video=list(frames), inference_device="cpu")
        processor.add_inputs_to_inference_session(session, frame_idx=frame, obj_ids=1, input_boxes=[[box.tolist()]])
        for reverse in (False, True):
            for o in model.propagate_in_video_iterator(session, start_frame_idx=frame, reverse=reverse):
                (masks,) = processor.post_process_masks([o.pred_masks], original_sizes=[list(frames.shape[1:3])])
                out[o.frame_idx] = masks[0, 0].numpy()
    return out


@pytest.mark.parametrize("prompt", ["mask", "box"])
def test_pivot_on_frame_3_gives_masks_for_frames_1_to_5_and_the_image_predictors_mask_there(
    sam2_video_dir: Path, prompt: str
) -> None:
    frames = _frames()
    video = create_video_segmenter("sam2_video", model=str(sam2_video_dir), prompt=prompt)
    (masks, small) = video.propagate(frames, [(2, BOX), (2, SMALL)])  # frame 3 of 1..5
    assert masks.shape == small.shape == (5, 40, 48) and masks.dtype == np.bool_
    # The image predictor (segmenter sam2, Sam2Model) reads the same checkpoint: same weights, same box.
    image = vfm.create_segmenter("sam2", model=str(sam2_video_dir)).segment_boxes([frames[2]], [np.stack([BOX, SMALL])])[0]
    assert image.masks[0].any() and image.masks[1].any()
    np.testing.assert_array_equal(masks[2], image.masks[0])
    if prompt == "mask":  # also where the video model's object score is negative
        np.testing.assert_array_equal(small[2], image.masks[1])
    else:  # there a box prompt's mask is emptied by the video model, not by the image model
        assert not small[2].any()
    direct = _direct(sam2_video_dir, frames, 2, BOX)
    if prompt == "box":  # every frame as transformers' own forward-then-reverse propagation gives it
        np.testing.assert_array_equal(masks, direct)
    else:  # a mask prompt changes the memory, so the other frames are the model's own propagation
        assert all(masks[t].shape == (40, 48) for t in range(5))
    assert sum(masks[t].any() for t in (0, 1, 3, 4)) >= 1  # frames before and after the pivot were tracked


def test_objects_on_different_frames_each_propagate_from_their_own(sam2_video_dir: Path) -> None:
    frames = _frames()
    video = create_video_segmenter("sam2_video", model=str(sam2_video_dir), prompt="box")
    other = np.array([20.0, 10.0, 47.0, 39.0], np.float32)
    together = video.propagate(frames, [(2, BOX), (4, other), (2, other)])
    assert len(together) == 3
    np.testing.assert_array_equal(together[0], _direct(sam2_video_dir, frames, 2, BOX))
    np.testing.assert_array_equal(together[1], _direct(sam2_video_dir, frames, 4, other))
    assert video.propagate(frames, []) == []
    labeled = video.propagate(frames, [(2, BOX)], labels=["dog"])  # a box propagator ignores the text
    np.testing.assert_array_equal(labeled[0], together[0])


def test_bad_inputs_are_named(sam2_video_dir: Path) -> None:
    video = create_video_segmenter("sam2_video", model=str(sam2_video_dir))
    frames = _frames(3)
    with pytest.raises(ValueError, match=r"frame index must be an int in \[0, 3\), got 3"):
        video.propagate(frames, [(3, BOX)])
    with pytest.raises(ValueError, match=r"prompts\[0\]: box must be 4 finite numbers"):
        video.propagate(frames, [(0, [1, 2, 3])])
    with pytest.raises(ValueError, match="x1 >= x0"):
        video.propagate(frames, [(0, [9, 2, 3, 8])])
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\] uint8"):
        video.propagate(frames.astype(np.float32), [(0, BOX)])
    with pytest.raises(ValueError, match="prompt must be one of"):
        create_video_segmenter("sam2_video", config={}, prompt="points")
    assert not video.lazy.loaded  # checks come before the model loads


def test_built_from_its_config_node_by_target_and_by_name(sam2_video_dir: Path) -> None:
    node = {"_target_": "pseudolabel.vfm.sam2_video.Sam2VideoSegmenter", "model": str(sam2_video_dir)}
    assert build("video_segmenter", node).provenance()["model"] == str(sam2_video_dir)
    named = build("video_segmenter", {"name": "sam2_video", "config": {}, "prompt": "box"})
    assert named.provenance()["prompt"] == "box" and named.provenance()["model"] == "random-init"


# --- sam2_official_video (Meta's sam2 package) --------------------------------------------------------

HAS_SAM2 = importlib.util.find_spec("sam2") is not None


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:cannot import name '_C':UserWarning")  # no CUDA extension: no hole filling
@pytest.mark.skipif(not HAS_SAM2, reason="the sam2 package is not installed")
def test_sam2_official_video_pivot_mask_is_the_image_predictors_from_metas_checkpoint(tmp_path: Path) -> None:
    tiny = dict(model_config=TINY_SAM2_CONFIG, image_size=128, overrides=TINY_SAM2_OVERRIDES)
    image = vfm.create_segmenter("sam2_official", checkpoint=None, **tiny)
    checkpoint = tmp_path / "sam2.1_tiny.pt"  # Meta's layout: {"model": SAM2Base state dict}
    torch.save({"model": image.predictor.model.state_dict()}, checkpoint)
    video = create_video_segmenter("sam2_official_video", checkpoint=str(checkpoint), **tiny)  # strict load
    frames = _frames()
    (masks,) = video.propagate(frames, [(2, BOX)])
    assert masks.shape == (5, 40, 48) and masks.dtype == np.bool_
    pivot = image.segment_boxes([frames[2]], [BOX[None]])[0].masks[0]
    assert pivot.any()
    np.testing.assert_array_equal(masks[2], pivot)
    boxed = create_video_segmenter("sam2_official_video", checkpoint=str(checkpoint), prompt="box", **tiny)
    assert boxed.propagate(frames, [(2, BOX), (0, BOX)])[1].shape == (5, 40, 48)
    broken = tmp_path / "broken.pt"
    torch.save({"model": {"not_a_key": torch.zeros(1)}}, broken)
    with pytest.raises(KeyError, match=r"broken.pt: unexpected key\(s\) not_a_key"):
        create_video_segmenter("sam2_official_video", checkpoint=str(broken), **tiny).load()
