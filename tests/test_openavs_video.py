"""OpenAVS with video propagation (``labeler.propagate``, preset ``openavs_video``) end to end on the synthetic
AVSBench fixture with tiny random models saved to local directories: each phrase's best box over the clip
prompts SAM 2's video predictor, the masks equal the grounder and the video segmenter run directly, the
record names the prompt frame and box, and the store is valid and evaluable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_openavs_pipeline import ChatServer
from tiny_saved_models import save_ast_tagger, save_component, save_grounding_dino

from openavs_st.data.store import PseudoLabelStore, load_records
from openavs_st.data.synthetic import write_synthetic
from pseudolabel import vfm
from pseudolabel.__main__ import main as label_main
from pseudolabel.evaluate import evaluate_store
from pseudolabel.openavs import LabelerConfigError, OpenAVSLabeler
from pseudolabel.vfm.video import create_video_segmenter

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TAGS = ["dog", "cat", "man", "Silence"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random AST tagger, GroundingDINO and SAM 2 video model saved with save_pretrained."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    return {
        "ast": save_ast_tagger(root / "ast", TAGS, top_k=1),
        "dino": save_grounding_dino(root / "dino"),
        "sam2_video": save_component(create_video_segmenter("sam2_video", config={}), root / "sam2_video"),
    }


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("s4"), ("s4",), splits={"train": 1, "test": 3}, size=40, seed=3)["s4"]


def expected(models: dict[str, Path], frames: np.ndarray, phrases: list[list[str]]) -> tuple[list[dict], np.ndarray]:
    """The best box of each phrase over the frames (grounder run directly), propagated directly, OR-ed per frame
    over the frame's phrases."""
    grounder = vfm.create_grounder("grounding_dino", model=str(models["dino"]))
    video = create_video_segmenter("sam2_video", model=str(models["sam2_video"]))
    detections = grounder.detect(list(frames), phrases)
    prompts = []
    for phrase in dict.fromkeys(p for frame in phrases for p in frame):
        found = [(float(d.scores[k]), t, d.boxes[k]) for t, d in enumerate(detections) for k, label in enumerate(d.labels)
                 if label == phrase]
        if found:
            score, t, box = max(found, key=lambda f: f[0])
            prompts.append({"phrase": phrase, "frame": t, "box": box, "score": score})
    propagated = dict(zip([p["phrase"] for p in prompts], video.propagate(frames, [(p["frame"], p["box"]) for p in prompts])))
    masks = np.zeros(frames.shape[:3], bool)
    for t, frame_phrases in enumerate(phrases):
        for phrase in frame_phrases:
            if phrase in propagated:
                masks[t] |= propagated[phrase][t]
    return prompts, masks


def test_openavs_video_preset_labels_with_propagation_into_a_valid_evaluable_store(
    models, s4_root, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ChatServer()  # answers each frame with its first audio text
    out = tmp_path / "store"
    args = ["labeler=openavs_video", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
            f"output={out}", f"labeler.llm.base_url={server.url}", "+labeler.llm.max_retries=0",
            "labeler/alm=[ast]", f"labeler.alm.ast.model={models['ast']}",
            "labeler.alm.ast.top_k=1", f"labeler.grounder.model={models['dino']}",
            f"labeler.video_segmenter.model={models['sam2_video']}",
            "labeler.gate.min_similarity=null",  # the energy gate alone: no CLAP model
            "progress=false"]
    try:
        assert label_main(args) == 0
    finally:
        server.close()
    assert len(server.bodies) >= 1  # the preset's LLM (prompt_frame) was asked
    store = PseudoLabelStore(out)
    records = load_records(out)
    assert len(store) == 3
    prompted = 0
    for clip in store:
        rec = records[clip.id]
        phrases = [f["phrases"] for f in rec["frames_info"]]
        prompts, masks = expected(models, clip.frames, phrases)
        got = rec["propagation"]
        assert got["video_segmenter"] == "sam2_video"
        assert [(p["phrase"], p["frame"]) for p in got["prompts"]] == [(p["phrase"], p["frame"]) for p in prompts]
        for recorded, direct in zip(got["prompts"], prompts):
            np.testing.assert_allclose(recorded["box"], direct["box"], atol=0.01)
            assert recorded["score"] == pytest.approx(direct["score"], abs=1e-4)
        np.testing.assert_array_equal(clip.masks.astype(bool), masks)
        for f in rec["frames_info"]:  # a frame's masks are those of its own phrases that got a prompt
            assert f["mask_labels"] == [p for p in f["phrases"] if p in {q["phrase"] for q in prompts}]
        assert "propagate_s" in rec["timings"] and "segment_s" not in rec["timings"]
        assert rec["gate"]["categories"] is not None
        assert rec["llm"]["strategy"] == "prompt_frame" and rec["llm"]["calls"] + rec["llm"]["cache_hits"] == 1
        assert [f["phrases"] for f in rec["frames_info"]] == [[f["audio_texts"][0].lower()] for f in rec["frames_info"]]
        prompted += len(prompts)
    assert prompted >= 1  # some phrase had a box to propagate
    result = evaluate_store(out, "avsbench_s4", s4_root, "test")
    assert result["frames_scored"] == 15 and 0.0 <= result["metrics"]["miou_avsbench"] <= 1.0
    assert label_main(args) == 0  # a rerun resumes: every clip is done
    assert json.loads((out / "summary.json").read_text())["run"]["clips_skipped"] == 3


def test_propagate_needs_a_video_segmenter(models) -> None:
    cfg = {
        "name": "x", "mode": "clip_label", "propagate": True,
        "grounder": {"name": "grounding_dino", "model": str(models["dino"])},
    }
    with pytest.raises(LabelerConfigError, match="labeler/video_segmenter=NAME"):
        OpenAVSLabeler.from_config(cfg)
    cfg["video_segmenter"] = {"name": "sam2_video", "model": str(models["sam2_video"])}
    labeler = OpenAVSLabeler.from_config(cfg)  # no segmenter needed: propagation makes the masks
    assert labeler.segmenter is None and labeler.video_segmenter in labeler.components()
    with pytest.raises(LabelerConfigError, match="labeler.segmenter is not set"):
        OpenAVSLabeler.from_config({**cfg, "propagate": False})


def test_propagation_tracks_only_the_valid_frames_of_a_padded_avss_clip(models, tmp_path) -> None:
    """AVSS v1 clips are 5 real frames padded to 10: only the real ones go to the video segmenter (as in
    AL-Ref-SAM2), the padding frames get empty masks, and prompt frames are clip frame indices."""
    root = write_synthetic(tmp_path / "data", ("avss",), splits={"train": 0, "val": 0, "test": 3}, size=40, seed=5)["avss"]
    out = tmp_path / "store"
    args = ["labeler=clip_label", "input=avsbench", "data=avsbench_avss", f"data.root={root}", "split=test",
            f"output={out}", f"labeler.grounder.model={models['dino']}", "labeler.propagate=true",
            "labeler/video_segmenter=sam2_video", f"labeler.video_segmenter.model={models['sam2_video']}",
            "labeler.grounder.box_threshold=0.0", "labeler.grounder.text_threshold=0.0", "progress=false"]
    assert label_main(args) == 0
    records = load_records(out)
    padded = prompted = 0
    for clip in PseudoLabelStore(out, compute_log_mel=False):
        rec = records[clip.id]
        valid = [f["t"] for f in rec["frames_info"] if f["valid"]]
        phrases = [f["phrases"] for f in rec["frames_info"] if f["valid"]]
        prompts, masks = expected(models, clip.frames[valid], phrases)
        got = rec["propagation"]["prompts"]
        assert [(p["phrase"], p["frame"]) for p in got] == [(p["phrase"], valid[p["frame"]]) for p in prompts]
        np.testing.assert_array_equal(clip.masks[valid].astype(bool), masks)
        others = [t for t in range(clip.num_frames) if t not in valid]
        assert not clip.masks[others].any()
        padded += bool(others)
        prompted += len(prompts)
    assert padded >= 1 and prompted >= 1  # the fixture has a padded v1 clip, and boxes were propagated
