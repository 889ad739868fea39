"""The offline ``cam`` grounder and ``grabcut`` segmenter (pseudolabel/vfm/cam.py, grabcut.py): phrase ->
ImageNet classes, EfficientNet-Lite0 class-activation maps on real photographs side by side, GrabCut with
and without the maps, and the labeler passing the maps on (python -m pseudolabel with cam + grabcut)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from offline_assets import farm_photo, lite0_checkpoint

from pseudolabel import vfm
from pseudolabel.vfm.cam import FAMILIES, CamGrounder, imagenet_names, phrase_classes
from pseudolabel.vfm.grabcut import GrabCutSegmenter

REPO_ROOT = Path(__file__).resolve().parents[1]
DOG_BREEDS = list(range(151, 269))


# --- phrase -> ImageNet classes ----------------------------------------------------------------------


def test_phrases_map_to_imagenet_class_sets() -> None:
    names = imagenet_names()
    assert phrase_classes("dog") == DOG_BREEDS and phrase_classes("Two barking dogs") == DOG_BREEDS
    assert [names[i] for i in phrase_classes("piano")] == ["grand piano", "upright"]
    assert [names[i] for i in phrase_classes("a man playing the acoustic guitar")] == ["acoustic guitar", "electric guitar"]
    assert [names[i] for i in phrase_classes("rooster")] == ["cock", "hen"]
    assert [names[i] for i in phrase_classes("violin")] == ["violin"]  # no family: the class name itself
    assert [names[i] for i in phrase_classes("goldfish in a bowl")] == ["goldfish"]
    assert [names[i] for i in phrase_classes("monkey")] == ["proboscis monkey", "howler monkey", "spider monkey", "squirrel monkey"]
    assert phrase_classes("unicorn") == [] and phrase_classes("the sound of") == []
    for synonyms, classes in FAMILIES.values():  # every family resolves to known classes
        assert synonyms and phrase_classes(synonyms[0])


def test_a_phrase_without_classes_gets_no_box_and_no_forward_pass() -> None:
    grounder = CamGrounder(config={})  # random weights: never loaded here
    image = np.zeros((32, 48, 3), np.uint8)
    (detections,) = grounder.detect([image], [["unicorn", "the sound"]])
    assert len(detections) == 0 and detections.maps is None and not grounder.loaded


# --- grabcut on a synthetic image ----------------------------------------------------------------------


def disk_image(height: int = 120, width: int = 160, centre=(90, 60), radius: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on a dark, slightly noisy background, and the disk's mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    disk = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    image = rng.integers(0, 40, (height, width, 3))
    image[disk] = rng.integers(200, 256, (int(disk.sum()), 3))
    return image.astype(np.uint8), disk


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_from_a_box_finds_the_disk() -> None:
    image, disk = disk_image()
    segmenter = GrabCutSegmenter()
    box = np.array([[50, 20, 130, 100]], np.float32)  # the disk (60..120 x 30..90) with a 10 px margin
    (result,) = segmenter.segment_boxes([image], [box])
    assert result.masks.shape == (1, 120, 160) and iou(result.masks[0], disk) > 0.95
    assert 0.4 < result.scores[0] < 0.7  # IoU with the box: the disk fills pi/4 * (60/80)^2 = 0.44 of it
    (again,) = segmenter.segment_boxes([image], [box])
    assert np.array_equal(again.masks, result.masks)  # seeded: deterministic
    # a whole-image box leaves nothing to learn the background from: the mask is the box
    (whole,) = segmenter.segment_boxes([image], [np.array([[0, 0, 160, 120]], np.float32)])
    assert whole.masks.all()
    # no boxes: an empty [0, H, W] result
    (empty,) = segmenter.segment_boxes([image], [np.zeros((0, 4), np.float32)])
    assert empty.masks.shape == (0, 120, 160)


def test_grabcut_seeded_by_a_prior_map() -> None:
    image, disk = disk_image()
    yy, xx = np.mgrid[:120, :160]
    prior = np.exp(-((xx - 95) ** 2 + (yy - 55) ** 2) / (2 * 25.0**2)).astype(np.float32)  # a blurry, offset blob
    box = np.array([[70, 30, 120, 80]], np.float32)
    segmenter = GrabCutSegmenter()
    (result,) = segmenter.segment_boxes([image], [box], priors=[[prior]])
    assert iou(result.masks[0], disk) > 0.9
    with pytest.raises(ValueError, match="priors\\[0\\] has 2 maps for 1 boxes"):
        segmenter.segment_boxes([image], [box], priors=[[prior, prior]])
    with pytest.raises(ValueError, match="a map of shape"):
        segmenter.segment_boxes([image], [box], priors=[[prior[:10]]])


# --- real photographs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grounder() -> CamGrounder:
    grounder = CamGrounder(str(lite0_checkpoint()))
    grounder.load()
    return grounder


def test_cam_and_grabcut_find_the_dog_in_its_half_of_a_canvas(grounder) -> None:
    """GCompris' cat and dog photographs side by side (448 x 224): the dog's mask lies in the dog's half,
    whichever side it is on; the absent owl gets no box."""
    cat, dog = farm_photo("cat", 224), farm_photo("dog", 224)
    segmenter = GrabCutSegmenter()
    for canvas, dog_half in ((np.concatenate([cat, dog], 1), slice(224, None)), (np.concatenate([dog, cat], 1), slice(0, 224))):
        start = time.perf_counter()
        (detections,) = grounder.detect([canvas], [["dog", "owl"]])
        (masks,) = segmenter.segment_boxes([canvas], [detections.boxes], priors=[detections.maps])
        elapsed = time.perf_counter() - start
        assert detections.labels and set(detections.labels) == {"dog"}, detections
        assert detections.texts[0] == "German shepherd" and detections.scores[0] > 0.1
        mask = masks.union()
        assert 0.05 < mask.mean() < 0.5
        assert mask[:, dog_half].sum() / mask.sum() > 0.9
        box = detections.boxes[0]
        assert (box[0] + box[2]) / 2 in range(448)[dog_half]
        assert elapsed < 30  # about 1 s on two loaded cores


def test_labeler_passes_the_maps_to_grabcut(tmp_path: Path) -> None:
    """python -m pseudolabel with labeler/grounder=cam labeler/segmenter=grabcut on the synthetic S4 split
    (clip_label: the class name is the phrase): the grounder's maps reach the segmenter, masks come out."""
    from openavs_st.data.store import load_records
    from openavs_st.data.synthetic import write_synthetic
    from pseudolabel.__main__ import main as label_main

    checkpoint = lite0_checkpoint()
    root = write_synthetic(tmp_path / "s4", ("s4",), splits={"train": 1, "test": 1}, size=64, seed=3)["s4"]
    out = tmp_path / "store"
    calls: list[bool] = []
    original = GrabCutSegmenter.segment_boxes

    def spy(self, images, boxes, priors=None):
        calls.append(priors is not None)
        return original(self, images, boxes, priors)

    args = ["labeler=clip_label", "input=avsbench", "data=avsbench_s4", f"data.root={root}", f"output={out}",
            "labeler/grounder=cam", "labeler/segmenter=grabcut", f"labeler.grounder.checkpoint={checkpoint}",
            "labeler.grounder.min_score=0.0", "+labeler.class_prompts.circle=dog", "+labeler.class_prompts.square=dog",
            "+labeler.class_prompts.triangle=dog", "progress=false"]
    GrabCutSegmenter.segment_boxes = spy
    try:
        assert label_main(args) == 0
    finally:
        GrabCutSegmenter.segment_boxes = original
    assert calls == [True]
    (record,) = load_records(out).values()
    frames = record["frames_info"]
    assert all(f["phrases"] == ["dog"] and f["box_labels"] for f in frames)
    assert all(f["mask_area"] > 0 for f in frames)
    config = (out / "pseudolabel_config.yaml").read_text()
    assert "pseudolabel.vfm.cam.CamGrounder" in config and "pseudolabel.vfm.grabcut.GrabCutSegmenter" in config
    json.dumps(record)  # the maps stay out of the manifest


def test_components_are_listed() -> None:
    assert {"cam"} <= set(vfm.available_grounders()) and {"grabcut"} <= set(vfm.available_segmenters())
    listing = subprocess.run([sys.executable, "-m", "pseudolabel", "--list"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120, check=True).stdout
    assert "cam" in listing and "class-activation maps" in listing
    assert "grabcut" in listing and "GrabCut" in listing
