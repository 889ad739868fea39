"""SAM 3 backends offline with tiny random models: the ``sam3`` grounder (text -> instance boxes with masks,
presence threshold) against transformers' own post-processing, the ``grounder_masks`` segmenter, the
``sam3_video`` tracker, and OpenAVS with them end to end on the synthetic fixture (preset ``openavs_sam3``
and ``labeler.propagate`` with ``sam3_video``): the store is valid and evaluable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chat_server import ChatCompletionsServer
from test_openavs_pipeline import ChatServer
from tiny_saved_models import save_ast_tagger, save_component

from openavs_st.data.sources import AVSBenchSource
from openavs_st.data.store import PseudoLabelStore, StoreWriter, load_records
from openavs_st.data.synthetic import write_synthetic
from pseudolabel import vfm
from pseudolabel.__main__ import main as label_main
from pseudolabel.evaluate import evaluate_store
from pseudolabel.openavs import OpenAVSLabeler
from pseudolabel.runner import run_labeler
from pseudolabel.vfm.video import create_video_segmenter

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TAGS = ["dog", "cat", "man", "Silence"]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), rng.integers(0, 256, (36, 30, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random AST tagger, Sam3Model and Sam3VideoModel saved with save_pretrained (offline processors)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    return {
        "ast": save_ast_tagger(root / "ast", TAGS, top_k=1),
        "sam3": save_component(vfm.create_grounder("sam3", config={}), root / "sam3"),
        "sam3_video": save_component(create_video_segmenter("sam3_video", config={}), root / "sam3_video"),
    }


def test_sam3_grounder_gives_transformers_instances_with_masks(models) -> None:
    images, phrases = _images(), [["dog"], ["dog", "a man"]]
    grounder = vfm.create_grounder("sam3", model=str(models["sam3"]), threshold=0.25, presence_threshold=0.0)
    detections = grounder.detect(images, phrases)
    box_masks = vfm.create_segmenter("grounder_masks").segment_boxes(
        images, [d.boxes for d in detections], priors=[d.maps for d in detections]
    )
    processor = transformers.Sam3Processor.from_pretrained(models["sam3"])
    model = transformers.Sam3Model.from_pretrained(models["sam3"]).eval()
    found = 0
    for image, image_phrases, det, bm in zip(images, phrases, detections, box_masks):
        height, width = image.shape[:2]
        for phrase in image_phrases:
            inputs = processor(images=[image], text=[phrase], return_tensors="pt")
            with torch.inference_mode():
                (direct,) = processor.post_process_instance_segmentation(
                    model(**inputs), threshold=0.25, mask_threshold=0.5, target_sizes=[(height, width)]
                )
            order = torch.argsort(direct["scores"], descending=True)
            mine = [k for k, label in enumerate(det.labels) if label == phrase]
            assert len(mine) == len(order)
            np.testing.assert_allclose(det.scores[mine], direct["scores"][order].numpy(), rtol=1e-5)
            boxes = np.clip(direct["boxes"][order].numpy(), 0, [width, height, width, height])
            np.testing.assert_allclose(det.boxes[mine], boxes, atol=1e-3)
            np.testing.assert_array_equal(bm.masks[mine], direct["masks"][order].numpy().astype(bool))
            found += len(mine)
    assert found >= 1

    # A phrase whose presence probability is below presence_threshold gets no box on that image.
    inputs = processor(images=[images[0]], text=["dog"], return_tensors="pt")
    with torch.inference_mode():
        presence = float(model(**inputs).presence_logits.sigmoid()[0, 0])
    below = vfm.create_grounder("sam3", model=str(models["sam3"]), threshold=0.0, presence_threshold=min(0.99, presence + 0.01))
    above = vfm.create_grounder("sam3", model=str(models["sam3"]), threshold=0.0, presence_threshold=max(0.0, presence - 0.01),
                                max_instances=2)
    assert len(below.detect(images[:1], [["dog"]])[0]) == 0
    kept = above.detect(images[:1], [["dog"]])[0]
    assert len(kept) == 2 and kept.scores[0] >= kept.scores[1]


def test_grounder_masks_thresholds_the_grounders_maps_and_needs_them() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    maps = [np.array([[0.9, 0.5, 0.1], [0.2, 0.7, 0.0]], np.float32)]
    (bm,) = vfm.create_segmenter("grounder_masks").segment_boxes([image], [np.array([[0, 0, 3, 2]])], priors=[maps])
    np.testing.assert_array_equal(bm.masks[0], [[True, False, False], [False, True, False]])  # > 0.5, as SAM 3
    assert bm.scores[0] == pytest.approx((0.9 + 0.7) / 2)
    with pytest.raises(ValueError, match="grounder sam3.*1 boxes but 0 masks"):
        vfm.create_segmenter("grounder_masks").segment_boxes([image], [np.array([[0, 0, 3, 2]])])
    with pytest.raises(ValueError, match="threshold must be in"):
        vfm.create_segmenter("grounder_masks", threshold=1.5)


def test_sam3_video_tracks_phrases_and_takes_boxes_with_their_text(models, caplog) -> None:
    frames = np.stack([_images()[0]] * 4)
    video = create_video_segmenter("sam3_video", model=str(models["sam3_video"]), threshold=0.2, new_object_threshold=0.2)
    tracks = video.track(frames, ["dog", "A man.", "a man"])
    assert list(tracks) == ["dog", "A man.", "a man"]
    np.testing.assert_array_equal(tracks["A man."], tracks["a man"])  # one text prompt after cleaning
    assert all(m.shape == (4, 40, 48) and m.dtype == np.bool_ for m in tracks.values())
    assert tracks["dog"][0].any()  # every query passes a threshold this low on the first frame
    strict = create_video_segmenter("sam3_video", model=str(models["sam3_video"]), threshold=0.99, new_object_threshold=0.99)
    assert not any(m.any() for m in strict.track(frames, ["dog"]).values())  # nothing scores 0.99
    with caplog.at_level("WARNING", logger="pseudolabel.vfm.sam3_video"):  # no instance: empty, and said
        (none,) = strict.propagate(frames, [(2, np.array([0, 0, 48, 40]))], labels=["dog"])
    assert not none.any() and "none of the 0 tracked instances of 'dog' overlaps its box on frame 2" in caplog.text
    # Box prompts with their text (AL-Ref-SAM2: category + pivot box): the tracked instance of the text that
    # overlaps the box best, so a subset of the text's union, and on the prompt frame inside the instances.
    (one,) = video.propagate(frames, [(0, np.array([0, 0, 48, 40]))], labels=["dog"])
    assert one.shape == (4, 40, 48) and one[0].any() and not (one & ~tracks["dog"]).any()
    with pytest.raises(ValueError, match="give each box prompt its text.*sam2_video"):
        video.propagate(frames, [(0, np.array([0, 0, 10, 10]))])
    with pytest.raises(ValueError, match="one string per prompt"):
        video.propagate(frames, [(0, np.array([0, 0, 10, 10]))], labels=["dog", "cat"])


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("s4"), ("s4",), splits={"train": 1, "test": 2}, size=40, seed=3)["s4"]


def test_openavs_sam3_preset_labels_into_a_valid_evaluable_store(models, s4_root, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ChatServer()  # answers each frame with its first audio text
    out = tmp_path / "store"
    args = ["labeler=openavs_sam3", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
            f"output={out}", f"labeler.llm.base_url={server.url}", "+labeler.llm.max_retries=0",
            "labeler/alm=[ast]", f"labeler.alm.ast.model={models['ast']}",
            f"labeler.grounder.model={models['sam3']}", "labeler.grounder.threshold=0.25",
            "labeler.grounder.presence_threshold=0.0", "progress=false"]
    try:
        assert label_main(args) == 0
    finally:
        server.close()
    assert len(server.bodies) >= 1
    store, records = PseudoLabelStore(out), load_records(out)
    assert len(store) == 2
    grounder = vfm.create_grounder("sam3", model=str(models["sam3"]), threshold=0.25, presence_threshold=0.0)
    segmenter = vfm.create_segmenter("grounder_masks")
    for clip in store:
        info = records[clip.id]["frames_info"]
        detections = grounder.detect(list(clip.frames), [f["phrases"] for f in info])
        expected = [bm.union() for bm in segmenter.segment_boxes(
            list(clip.frames), [d.boxes for d in detections], priors=[d.maps for d in detections])]
        np.testing.assert_array_equal(clip.masks.astype(bool), np.stack(expected))
        assert [len(f["boxes"]) for f in info] == [len(d) for d in detections]
    assert any(clip.masks.any() for clip in store)
    result = evaluate_store(out, "avsbench_s4", s4_root, "test")
    assert result["frames_scored"] == 10


def test_openavs_propagation_with_sam3_video_tracks_the_phrases(models, s4_root, tmp_path) -> None:
    cfg = {
        "name": "sam3_video", "mode": "openavs", "propagate": True,
        "alm": {"tags": {"name": "ast", "model": str(models["ast"]), "top_k": 1}},
        "llm": {"name": "none"},
        "grounder": {"name": "sam3", "model": str(models["sam3"])},
        "video_segmenter": {"name": "sam3_video", "model": str(models["sam3_video"]), "threshold": 0.2,
                            "new_object_threshold": 0.2},
    }
    labeler = OpenAVSLabeler.from_config(cfg)
    assert labeler.tracks_text and labeler.grounder not in labeler.components()  # no grounding
    stats = run_labeler(labeler, AVSBenchSource("avsbench_s4", s4_root, "test"), StoreWriter(tmp_path / "s", labeler="x"),
                        progress=False, limit=1)
    assert stats.clips_ok == 1
    video = create_video_segmenter("sam3_video", model=str(models["sam3_video"]), threshold=0.2, new_object_threshold=0.2)
    records = load_records(tmp_path / "s")
    for clip in PseudoLabelStore(tmp_path / "s"):
        rec = records[clip.id]
        phrases = [f["phrases"] for f in rec["frames_info"]]
        distinct = list(dict.fromkeys(p for frame in phrases for p in frame))
        assert rec["propagation"] == {"video_segmenter": "sam3_video", "text": distinct}
        tracks = video.track(clip.frames, distinct)
        expected = np.stack([np.any([tracks[p][t] for p in frame], axis=0) if frame else np.zeros(clip.frames.shape[1:3], bool)
                             for t, frame in enumerate(phrases)])
        np.testing.assert_array_equal(clip.masks.astype(bool), expected)
        assert all(f["boxes"] == [] for f in rec["frames_info"])
    assert evaluate_store(tmp_path / "s", "avsbench_s4", s4_root, "test", missing="skip")["frames_scored"] == 5


class ReferenceServer(ChatCompletionsServer):
    """AL-Ref-SAM2's LLM: "dog" is the sounding object, clearest on frame 2; box 1 whenever it is asked."""

    def answer(self, body: dict) -> str:
        text = " ".join(p.get("text", "") for m in body["messages"] for p in
                        (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
        return "[1]" if "box 1 (green)" in text else "['dog': 2]"


def test_alrefsam2_with_sam3_grounding_and_sam3_video_tracking(models, s4_root, tmp_path, monkeypatch) -> None:
    """labeler=alrefsam2 with both SAM 3 backends (issue: usable by OpenAVS and AL-Ref-SAM2): the pivot box
    comes from the sam3 grounder and sam3_video tracks the category's instance from it; the stored masks are
    sam3_video's for the recorded box and category."""
    from pseudolabel.labelers import build_labeler

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    source = AVSBenchSource("avsbench_s4", s4_root, "test")
    video_options = {"threshold": 0.2, "new_object_threshold": 0.2}
    with ReferenceServer() as server:
        labeler = build_labeler({
            "name": "alrefsam2_sam3", "mode": "alrefsam2",
            "alm": {"ast": {"name": "ast", "model": str(models["ast"])}},
            "llm": {"name": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 0},
            "grounder": {"name": "sam3", "model": str(models["sam3"]), "threshold": 0.0, "presence_threshold": 0.0},
            "video_segmenter": {"name": "sam3_video", "model": str(models["sam3_video"]), **video_options},
            "strip": {"frame_height": None},
        })
        writer = StoreWriter(tmp_path / "store", labeler="alrefsam2_sam3")
        assert run_labeler(labeler, source, writer, progress=False, limit=1).clips_ok == 1
    (clip,) = PseudoLabelStore(tmp_path / "store")
    (referent,) = load_records(tmp_path / "store")[clip.id]["referents"]
    assert referent["category"] == "dog" and referent["pivot_frame"] == 1 and referent["chosen_box"] is not None
    video = create_video_segmenter("sam3_video", model=str(models["sam3_video"]), **video_options)
    (expected,) = video.propagate(clip.frames, [(1, np.asarray(referent["chosen_box"], np.float32))], labels=["dog"])
    np.testing.assert_array_equal(clip.masks.astype(bool), expected)
