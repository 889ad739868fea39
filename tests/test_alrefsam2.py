"""The AL-Ref-SAM2 labeler (``pseudolabel.alrefsam2``): answer parsing, the frame strip, the prompts, and the
whole labeler end to end on the synthetic fixture with tiny random models saved to local directories and a
real chat-completions server on 127.0.0.1 that refuses any request without the frame strip as its image.

Random weights give arbitrary boxes and masks, so the store is checked against the grounder and the video
segmenter run directly with the boxes and pivot frames the record names.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_server import ChatCompletionsServer, Reply, completion
from tiny_vision import tiny_grounding_dino

from openavs_st.data.avsbench import AVSS_CLASSES
from openavs_st.data.sources import AVSBenchSource
from openavs_st.data.store import PseudoLabelStore, load_records
from openavs_st.data.synthetic import write_synthetic
from pseudolabel import vfm
from pseudolabel.__main__ import main as label_main
from pseudolabel.alm.ast import ASTAudioTagger
from pseudolabel.alrefsam2 import (
    ALRefSAM2Labeler,
    avsbench_objects,
    draw_strip,
    parse_box_choice,
    parse_references,
)
from pseudolabel.alrefsam2.answers import (
    BOX_PROMPT,
    REFERENCE_PROMPT,
    box_prompt,
    reference_prompt,
)
from pseudolabel.alrefsam2.labeler import tag_windows
from pseudolabel.components import VIDEO_SEGMENTER, ComponentConfigError
from pseudolabel.evaluate import evaluate_store
from pseudolabel.labelers import build_labeler
from pseudolabel.llm.strategies import load_prompt
from pseudolabel.runner import run_labeler

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "guitar", "circle", "square"]
TAGS = ["dog", "cat", "man", "Silence"]
USAGE = (1000, 10)
STRIP_SIZE = (5 * 40 + 4 * 4, 40)  # five 40 x 40 frames in a row, 4 px apart: (width, height)


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "pivots", "note"),
    [
        ("['dog': 3]", {"dog": 3}, None),
        ("['dog': 2, 'man': 5]", {"dog": 2, "man": 5}, None),
        ('{"Dog": 4}', {"dog": 4}, None),
        ("```\n['dog': 3]\n```", {"dog": 3}, None),
        ("The sounding object is dog: 3", {"dog": 3}, None),
        ("['man': '2']", {"man": 2}, None),
        ("['guitar, acoustic guitar': 2]", {"guitar": 2}, None),
        ("['dog': 9]", {"dog": 5}, "outside 1..5, clamped to 5"),
        ("['dog': 0]", {"dog": 1}, "clamped to 1"),
        ("['dog': 2, 'dog': 4]", {"dog": 2}, "repeated: kept frame 2"),
        ("['dog', 'man']", {"dog": 1, "man": 1}, "no frame numbers"),
        ("[]", {}, "no category named"),
        ("I cannot tell which object sounds.", {}, "no category named"),
        ("", {}, "no category named"),
        # prose before the answer's bracketed block does not count
        ("Visible sounding objects: 2. Answer: ['dog': 3, 'man': 1]", {"dog": 3, "man": 1}, None),
        ("Objects: 2\ndog: 3", {"dog": 3}, None),  # no brackets: the last line only
        ("['man's voice': 2]", {"man's voice": 2}, None),  # an apostrophe inside a quoted name
        ("['dog', 'rock'n'roll band']", {"dog": 1, "rock'n'roll band": 1}, "no frame numbers"),
        ('{"category": "dog", "frame": 3}', {"dog": 3}, "fields read as category and frame"),
        ('[{"object": "Man", "frame": "1"}, {"category": "cat"}]', {"man": 1, "cat": 1}, "fields read"),
        ("['dog': 3", {"dog": 3}, None),  # cut off before its closing bracket
    ],
)
def test_reference_answers_parse_to_category_and_pivot_frame(answer: str, pivots: dict[str, int], note: str | None) -> None:
    parsed = parse_references(answer, 5)
    assert parsed.pivots == pivots
    if note is None:
        assert parsed.notes == []
    else:
        assert any(note in n for n in parsed.notes), parsed.notes


def test_a_reference_outside_the_closed_list_is_kept_with_a_note() -> None:
    parsed = parse_references("['dog': 1, 'unicorn': 2]", 5, ["dog", "man"])
    assert parsed.pivots == {"dog": 1, "unicorn": 2}
    assert parsed.notes == ["'unicorn' is not in the category list: kept"]


@pytest.mark.parametrize(
    ("answer", "box", "noted"),
    [
        ("[2]", 2, False),
        ("I choose [3] because it is larger", 3, False),
        ("[box 2]", 2, False),
        ("[1] or maybe [3]", 1, False),
        ("2", 1, True),  # no brackets: the default
        ("[5]", 1, True),  # not a box id
        ("[]", 1, True),
        ("", 1, True),
    ],
)
def test_box_answers_take_the_first_integer_in_brackets_default_1(answer: str, box: int, noted: bool) -> None:
    choice = parse_box_choice(answer, 3)
    assert choice.box == box and bool(choice.notes) == noted


# --- strip and prompts --------------------------------------------------------------------------------------


def test_strip_tiles_frames_numbers_them_and_draws_boxes_on_the_pivot_only() -> None:
    frames = np.full((5, 30, 50, 3), 100, np.uint8)
    strip = draw_strip(frames, gap=2)
    assert strip.shape == (30, 5 * 50 + 4 * 2, 3)
    assert (strip[:, 50:52] == 255).all()  # the white gap after frame 1
    tile = strip[:, 52:102]
    assert (tile[:12, :12] != 100).any() and (tile[20:, 20:] == 100).all()  # number circle top-left only
    ten = draw_strip(np.full((10, 30, 50, 3), 100, np.uint8), gap=2, frame_height=60)
    assert ten.shape == (2 * 60 + 2, 5 * 100 + 4 * 2, 3)  # two rows of five, frames scaled to 60 rows
    boxed = draw_strip(frames, gap=2, boxes=(2, np.array([[10, 10, 40, 25]], np.float32)))
    changed = np.argwhere((boxed != strip).any(axis=2))
    assert len(changed) and changed[:, 1].min() >= 2 * 52 and changed[:, 1].max() < 3 * 52  # inside frame 3
    assert tuple(boxed[25, 2 * 52 + 25]) == (0, 200, 0)  # box 1 is green (bottom edge)


def test_prompts_carry_tags_closed_list_and_normalised_boxes() -> None:
    text = reference_prompt(
        load_prompt(REFERENCE_PROMPT), num_frames=5, tags=["Dog", "Bark"], categories=avsbench_objects(), several=False
    )
    assert "'Dog', 'Bark'" in text and "'emergency-car'" in text and "typing" in text and "$" not in text
    assert "1 to 5" in text and "['category': frame]" in text and "category1" not in text
    assert len(avsbench_objects()) == 70
    open_world = reference_prompt(load_prompt(REFERENCE_PROMPT), num_frames=10, tags=[], categories=None, several=True)
    assert "two rows of 5" in open_world and "'emergency-car'" not in open_world and "category1" in open_world
    boxes = box_prompt(
        load_prompt(BOX_PROMPT), num_frames=5, frame=3, category="dog",
        boxes=np.array([[0, 0, 50, 20], [25, 10, 75, 40]], np.float32), frame_hw=(40, 100),
    )
    assert "box 1 (green): centre (0.25, 0.25), width 0.5, height 0.5" in boxes
    assert "box 2 (magenta): centre (0.5, 0.625), width 0.5, height 0.75" in boxes
    assert "frame 3" in boxes and '"dog"' in boxes and "from 1 to 2" in boxes


# --- tiny models, data and a chat server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random AST tagger, GroundingDINO and SAM 2 video model saved with save_pretrained."""
    from pseudolabel import alm

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tagger = alm.create_alm("ast", config={"id2label": dict(enumerate(TAGS))}, top_k=5)
    tagger.lazy.processor.save_pretrained(root / "ast")
    tagger.lazy.model.save_pretrained(root / "ast")
    dino_config, dino_processor = tiny_grounding_dino(WORDS, num_queries=6, shortest_edge=96, longest_edge=128)
    transformers.GroundingDinoForObjectDetection(dino_config).save_pretrained(root / "dino")
    dino_processor.save_pretrained(root / "dino")
    video = VIDEO_SEGMENTER.create("sam2_video", config={})
    video.lazy.model.save_pretrained(root / "sam2_video")
    video.lazy.processor.save_pretrained(root / "sam2_video")
    return {"ast": root / "ast", "dino": root / "dino", "sam2_video": root / "sam2_video"}


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("s4"), ("s4",), splits={"train": 1, "test": 3}, size=40, seed=3)["s4"]


class StripServer(ChatCompletionsServer):
    """A chat-completions server that answers the reference question with ``reference`` and the box question
    with ``box``. A request whose content is not one text part plus one base64 JPEG image of
    ``strip_size`` is refused (HTTP 400) and noted in ``errors``."""

    usage = USAGE

    def __init__(self, strip_size: tuple[int, int], reference: str, box: str = "[2]") -> None:
        self.strip_size, self.reference, self.box = strip_size, reference, box
        self.kinds: list[str] = []
        self.texts: list[str] = []
        self.errors: list[str] = []
        super().__init__()

    def respond(self, body: dict[str, Any], request: Any) -> Reply:
        from PIL import Image

        try:
            (message,) = body["messages"]
            text_part, image_part = message["content"]
            assert text_part["type"] == "text" and image_part["type"] == "image_url"
            prefix = "data:image/jpeg;base64,"
            url = image_part["image_url"]["url"]
            assert url.startswith(prefix), url[:40]
            image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
            assert image.format == "JPEG" and image.size == self.strip_size, (image.format, image.size)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            error = f"{type(exc).__name__}: {exc}"
            self.errors.append(error)
            return 400, {"error": {"message": error, "type": "invalid_request_error"}}, {}
        is_box = "candidates for the category" in text_part["text"]
        self.kinds.append("box" if is_box else "reference")
        self.texts.append(text_part["text"])
        return 200, completion(self.box if is_box else self.reference, body["model"], self.usage), {}


def second_best_score(grounder: Any, frame: np.ndarray, phrase: str) -> float:
    (det,) = grounder.detect([frame], [[phrase]])
    scores = np.sort(det.scores)[::-1]
    return float(scores[1]) if len(scores) > 1 else 0.0


_DIRECT: dict[str, Any] = {}


def direct_masks(models: dict[str, Path], frames: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """The video segmenter run directly with the record's chosen boxes on their pivot frames, OR-ed."""
    if "video" not in _DIRECT:
        _DIRECT["video"] = VIDEO_SEGMENTER.create("sam2_video", model=str(models["sam2_video"]))
    segmenter = _DIRECT["video"]
    prompts = [(r["pivot_frame"], np.array(r["chosen_box"], np.float32)) for r in record["referents"] if r["chosen_box"]]
    masks = np.zeros(frames.shape[:3], bool)
    for masklet in segmenter.propagate(frames, prompts):
        masks |= masklet
    return masks


# --- end to end ----------------------------------------------------------------------------------------------


def test_cli_labels_with_one_request_per_clip_plus_one_per_ambiguous_category(
    models: dict[str, Path], s4_root: Path, tmp_path: Path
) -> None:
    """``python -m pseudolabel labeler=alrefsam2``: every request carries the strip; the LLM names two
    categories with their pivot frames; the grounder threshold is set between the two categories'
    second-best box scores on clip 0, so one category has >= 2 candidates there (a box question) and the
    other at most 1 (none): clip 0 costs 2 requests, and every clip 1 + its categories with >= 2 boxes."""
    source = AVSBenchSource("avsbench_s4", s4_root, "test")
    first = source.load(source.ids[0])
    probe = vfm.create_grounder("grounding_dino", model=str(models["dino"]), box_threshold=0.0)
    # the server's answer: dog on frame 2, cat on frame 4
    dog, cat = second_best_score(probe, first.frames[1], "dog"), second_best_score(probe, first.frames[3], "cat")
    assert dog != cat
    threshold = (dog + cat) / 2
    server = StripServer(STRIP_SIZE, reference="['dog': 2, 'cat': 4]", box="[2]")
    out = tmp_path / "store"
    try:
        args = [
            "labeler=alrefsam2", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
            f"output={out}", "labeler/alm=[ast]", f"labeler.alm.ast.model={models['ast']}", f"labeler.grounder.model={models['dino']}",
            f"labeler.grounder.box_threshold={threshold}", f"labeler.video_segmenter.model={models['sam2_video']}",
            f"labeler.llm.base_url={server.url}", "+labeler.llm.max_retries=0", "labeler.strip.frame_height=null",
            "labeler.semantic=avss", "progress=false",
        ]
        assert label_main(args) == 0
    finally:
        server.close()
    assert server.errors == []
    records = load_records(out)
    assert sorted(records) == sorted(source.ids) and all(r["status"] == "ok" for r in records.values())
    requests = 0
    for clip_id, record in records.items():
        referents = {r["category"]: r for r in record["referents"]}
        assert {c: r["pivot_frame"] for c, r in referents.items()} == {"dog": 1, "cat": 3}
        assert record["reference"] == {"answer": "['dog': 2, 'cat': 4]", "parsed": {"dog": 2, "cat": 4}, "notes": []}
        assert [t["label"] for t in record["tags"]] and "Silence" not in [t["label"] for t in record["tags"]]
        assert len(record["tags"]) == 3 and record["strip_size"] == list(STRIP_SIZE)
        ambiguous = [r for r in referents.values() if len(r["candidate_boxes"]) >= 2]
        llm = record["llm"]
        assert llm["requests"] == llm["calls"] == 1 + len(ambiguous)
        assert llm["prompt_tokens"] == USAGE[0] * llm["calls"] and llm["cost_usd"] == pytest.approx(
            llm["calls"] * (USAGE[0] * 2.5 + USAGE[1] * 10.0) / 1e6
        )
        for referent in referents.values():
            boxes = referent["candidate_boxes"]
            assert len(boxes) <= 3 and referent["candidate_scores"] == sorted(referent["candidate_scores"], reverse=True)
            if len(boxes) >= 2:
                assert referent["box_answer"] == "[2]" and referent["chosen_box"] == boxes[1]
            else:
                assert referent["box_answer"] is None
                assert referent["chosen_box"] == (boxes[0] if boxes else None)
        requests += llm["calls"]
        if clip_id == source.ids[0]:
            assert [len(referents["dog"]["candidate_boxes"]) >= 2, len(referents["cat"]["candidate_boxes"]) >= 2] == [
                dog > cat, cat > dog
            ]
            assert llm["calls"] == 2
    assert len(server.kinds) == requests and server.kinds.count("reference") == len(records)
    for kind, text in zip(server.kinds, server.texts):
        if kind == "reference":  # the clip's tags, and the AVSBench object list for an AVSBench input
            assert "'emergency-car'" in text and "1 to 5" in text and any(f"'{tag}'" in text for tag in TAGS[:3])
        else:
            assert "box 1 (green)" in text and "box 2 (magenta)" in text and "frame " in text
    # the masks are the video segmenter's for the chosen boxes; the store reads back and evaluates
    store = PseudoLabelStore(out)
    classes = {c.id: c.masks for c in PseudoLabelStore(out, semantic=True, compute_log_mel=False)}
    dog_id, cat_id = AVSS_CLASSES.index("dog"), AVSS_CLASSES.index("cat")
    for clip in store:
        expected = direct_masks(models, clip.frames, records[clip.id])
        np.testing.assert_array_equal(clip.masks.astype(bool), expected)
        # labeler.semantic=avss: each category's pixels carry its AVSS class (both categories are classes)
        assert records[clip.id]["category_classes"] == {"dog": dog_id, "cat": cat_id}
        assert set(np.unique(classes[clip.id]).tolist()) <= {0, dog_id, cat_id}
        np.testing.assert_array_equal(classes[clip.id] > 0, expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["llm_calls"] == requests and summary["run"]["clips_ok"] == 3
    scores = evaluate_store(out, "avsbench_s4", s4_root, "test")
    assert scores["frames_scored"] == 15 and scores["clips_missing"] == 0
    assert 0.0 <= scores["metrics"]["miou_avsbench"] <= 1.0
    # the LLM cache holds each answer with the image's hash, not the image; a rerun asks nothing
    cached = [json.loads(p.read_text()) for p in (out / "llm_cache").rglob("*.json")]
    assert len(cached) == requests
    assert all("base64" not in json.dumps(entry) for entry in cached)
    from openavs_st.data.store import StoreWriter

    llm = {"name": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 0, "seed": 0, "max_tokens": 256,
           "cache_dir": str(out / "llm_cache")}  # the preset's generation settings: the same requests
    config = alref_config(models, llm=llm)
    config["grounder"]["box_threshold"] = threshold
    again = run_labeler(build_labeler(config), source, StoreWriter(tmp_path / "again", labeler="again"), progress=False, limit=1)
    assert again.clips_ok == 1 and again.llm_calls == 0 and again.llm_cost_usd == 0.0  # the server is closed
    assert again.llm_cache_hits == records[source.ids[0]]["llm"]["requests"] == 2
    np.testing.assert_array_equal(PseudoLabelStore(tmp_path / "again")[0].masks, store[0].masks)


def s4_with_first_wav(
    s4_root: Path, tmp_path: Path, edit: Callable[[np.ndarray, int], np.ndarray]
) -> tuple[AVSBenchSource, str]:
    """A copy of the S4 tree whose first test clip's wav is ``edit(samples, rate)``: the source and that clip."""
    import shutil

    import soundfile as sf

    root = tmp_path / "s4"
    shutil.copytree(s4_root, root)
    source = AVSBenchSource("avsbench_s4", root, "test")
    clip_id = source.ids[0]
    (wav,) = [p for p in root.rglob("*.wav") if p.stem == clip_id]
    samples, rate = sf.read(wav, dtype="float32")
    sf.write(wav, edit(samples, rate), rate)
    return source, clip_id


def test_no_category_or_silent_audio_gives_empty_masks_and_counts_the_requests(
    models: dict[str, Path], s4_root: Path, tmp_path: Path
) -> None:
    """An answer naming nothing: one request, empty masks. A clip whose audio is digital silence (clip 0,
    its wav zeroed): no tags, no request, empty masks, frames marked silent."""
    from openavs_st.data.store import StoreWriter

    source, quiet = s4_with_first_wav(s4_root, tmp_path, lambda samples, rate: np.zeros_like(samples))
    server = StripServer(STRIP_SIZE, reference="I cannot see what sounds.")
    try:
        llm = {"name": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 0}
        labeler = build_labeler(alref_config(models, llm=llm))
        assert isinstance(labeler, ALRefSAM2Labeler)
        stats = run_labeler(labeler, source, StoreWriter(tmp_path / "store", labeler="alrefsam2"), progress=False)
    finally:
        server.close()
    assert server.errors == [] and stats.clips_ok == 3 and stats.llm_calls == 2 and len(server.kinds) == 2
    for clip_id, record in load_records(tmp_path / "store").items():
        assert record["referents"] == [] and record["mask_area"] == [0.0] * 5
        if clip_id == quiet:
            assert "llm" not in record and record["tags"] == [] and record["reference"]["answer"] is None
            assert [f["audio"] for f in record["frames_info"]] == ["silent"] * 5
        else:
            assert record["reference"]["notes"] == ["no category named: empty masks"]
            assert record["llm"]["requests"] == 1 and len(record["tags"]) == 3
            assert record["llm"]["cost_known"] is False  # gpt-4o has no price in the backend's own table


class BoxFailsServer(StripServer):
    """Answers the reference question; the box question gets HTTP 500."""

    def respond(self, body: dict[str, Any], request: Any) -> Reply:
        status, payload, headers = super().respond(body, request)
        if self.kinds and self.kinds[-1] == "box":
            return 500, {"error": {"message": "the box model is down", "type": "server_error"}}, {}
        return status, payload, headers


def test_a_clip_failing_at_its_box_question_keeps_the_reference_reply_cost(
    models: dict[str, Path], s4_root: Path, tmp_path: Path
) -> None:
    """The reference question is answered (and paid for), the box question fails (HTTP 500, no retries):
    the failed record and the run's summary still carry the reference request's tokens and cost."""
    from openavs_st.data.store import StoreWriter

    source = AVSBenchSource("avsbench_s4", s4_root, "test")
    server = BoxFailsServer(STRIP_SIZE, reference="['dog': 2]")
    try:  # box threshold 0: the grounder's 6 queries give 3 candidates, so the box question is asked
        llm = {"name": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 0, "prices": {"gpt-4o": [2.5, 10.0]}}
        labeler = build_labeler(alref_config(models, llm=llm))
        stats = run_labeler(labeler, source, StoreWriter(tmp_path / "store", labeler="alrefsam2"), progress=False, limit=1)
    finally:
        server.close()
    assert server.errors == [] and server.kinds == ["reference", "box"]
    (record,) = load_records(tmp_path / "store").values()
    assert record["status"].startswith("failed: TranslationError") and "HTTP 500" in record["status"]
    assert record["failed_stage"] == "llm/ground"
    cost = (USAGE[0] * 2.5 + USAGE[1] * 10.0) / 1e6
    assert record["llm"]["requests"] == record["llm"]["calls"] == 1 and record["llm"]["raw_responses"] == ["['dog': 2]"]
    assert record["llm"]["prompt_tokens"] == USAGE[0] and record["llm"]["cost_usd"] == pytest.approx(cost)
    assert stats.clips_failed == 1 and stats.llm_calls == 1 and stats.llm_cost_usd == pytest.approx(cost)


def test_config_errors_name_the_key(models: dict[str, Path]) -> None:
    base = {
        "mode": "alrefsam2",
        "alm": {"ast": {"name": "ast", "model": str(models["ast"])}},
        "grounder": {"name": "grounding_dino", "model": str(models["dino"])},
        "video_segmenter": {"name": "sam2_video", "config": {}},
    }
    with pytest.raises(ComponentConfigError, match="multimodal LLM"):
        build_labeler({**base, "llm": {"name": "none"}})
    with pytest.raises(ComponentConfigError, match="labeler.llm: the 'hf' translator takes no images"):
        build_labeler({**base, "llm": {"name": "hf", "model": "some/chat-model"}})
    with pytest.raises(ComponentConfigError, match="both set"):
        build_labeler({**base, "llm": {"name": "openai"}, "vlm": {"name": "qwen2_5_vl", "config": {}}})
    with pytest.raises(ComponentConfigError, match="labeler.video_segmenter is not set"):
        build_labeler({**base, "llm": {"name": "openai"}, "video_segmenter": None})
    with pytest.raises(ComponentConfigError, match="labeler.mode='nope' is no labeler"):
        build_labeler({**base, "mode": "nope"})
    with pytest.raises(ComponentConfigError, match="labeler.categories"):
        build_labeler({**base, "llm": {"name": "openai"}, "categories": "all"})
    # numbers: a value that is not one, or out of range, is named before any clip is labelled
    with pytest.raises(ComponentConfigError, match="labeler.strip.max_frames must be an integer, got 'abc'"):
        build_labeler({**base, "llm": {"name": "openai"}, "strip": {"max_frames": "abc"}})
    with pytest.raises(ComponentConfigError, match="labeler.tag_window_s must be a number, got 'x'"):
        build_labeler({**base, "llm": {"name": "openai"}, "tag_window_s": "x"})
    with pytest.raises(ComponentConfigError, match="labeler.strip.gap must be >= 0 pixels, got -5"):
        build_labeler({**base, "llm": {"name": "openai"}, "strip": {"gap": -5}})


def alref_config(models: dict[str, Path], **changes: Any) -> dict[str, Any]:
    return {
        "name": "alrefsam2_test",
        "mode": "alrefsam2",
        "alm": {"ast": {"name": "ast", "model": str(models["ast"])}},
        "grounder": {"name": "grounding_dino", "model": str(models["dino"]), "box_threshold": 0.0},
        "video_segmenter": {"name": "sam2_video", "model": str(models["sam2_video"])},
        "strip": {"frame_height": None},
        **changes,
    }


def test_gate_empties_the_seconds_where_a_category_does_not_sound(
    models: dict[str, Path], s4_root: Path, tmp_path: Path
) -> None:
    """Clip 0 with seconds 4-5 zeroed: with the energy gate its masks there are empty, seconds 1-3 keep the
    ungated masks, and the decision is in the record."""
    from openavs_st.data.store import StoreWriter

    def zero_seconds_4_5(samples: np.ndarray, rate: int) -> np.ndarray:
        samples[3 * rate :] = 0.0
        return samples

    source, clip_id = s4_with_first_wav(s4_root, tmp_path, zero_seconds_4_5)
    server = StripServer(STRIP_SIZE, reference="['dog': 2]", box="[1]")
    masks = {}
    try:
        llm = {"name": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 0}
        gate = {"name": "energy_clap", "min_similarity": None, "max_gap": None, "silence_db": -50.0}
        for name, changes in {"plain": {}, "gated": {"gate": gate}}.items():
            labeler = build_labeler(alref_config(models, llm=llm, **changes))
            writer = StoreWriter(tmp_path / name, labeler=name)
            assert run_labeler(labeler, source, writer, progress=False, limit=1).clips_ok == 1
            masks[name] = PseudoLabelStore(tmp_path / name)[0].masks.astype(bool)
    finally:
        server.close()
    assert server.errors == []
    assert masks["plain"][:3].any()  # something to gate
    np.testing.assert_array_equal(masks["gated"][:3], masks["plain"][:3])
    assert not masks["gated"][3:].any()
    record = load_records(tmp_path / "gated")[clip_id]
    assert record["gate"]["categories"] == ["dog"]
    assert np.asarray(record["gate"]["sounding"]).reshape(5).tolist() == [True, True, True, False, False]
    assert "gate" not in load_records(tmp_path / "plain")[clip_id]


def test_a_local_vlm_answers_from_the_strip_and_the_prompt(models: dict[str, Path], s4_root: Path, tmp_path: Path) -> None:
    """labeler/vlm=qwen2_5_vl llm=none: the tiny VLM's answer is its answer to the strip and the reference
    prompt asked directly; its random text names no category (empty masks, one request, no cost known)."""
    from openavs_st.data.store import StoreWriter

    vlm_cfg = {"name": "qwen2_5_vl", "config": {"text_config": {"initializer_range": 1.0}}, "max_new_tokens": 3}
    labeler = build_labeler(alref_config(models, llm={"name": "none"}, vlm=vlm_cfg))
    source = AVSBenchSource("avsbench_s4", s4_root, "test")
    assert run_labeler(labeler, source, StoreWriter(tmp_path / "store", labeler="vlm"), progress=False, limit=1).clips_ok == 1
    (record,) = load_records(tmp_path / "store").values()
    clip = source.load(record["id"])
    text = reference_prompt(
        load_prompt(REFERENCE_PROMPT), num_frames=5, tags=[t["label"] for t in record["tags"]],
        categories=avsbench_objects(), several=True,
    )
    direct = labeler.chat.vlm.describe([draw_strip(clip.frames)], [text])[0][0]
    llm = record["llm"]
    assert llm["backend"] == "vlm" and llm["raw_responses"] == [direct] and llm["requests"] == llm["calls"] == 1
    assert llm["cost_known"] is False
    assert record["referents"] == [] and record["mask_area"] == [0.0] * 5


def test_closed_category_list_follows_the_source_not_its_address(models: dict[str, Path], tmp_path: Path) -> None:
    """categories=auto: an AVSS source offers its own label2idx.json names, an S4 source the 70 AVSBench
    objects; a source freed and another built (possibly at the same address) never inherits the old list,
    and the labeler does not keep a source alive."""
    import weakref

    labeler = build_labeler(alref_config(models, llm={"name": "openai"}))
    roots = write_synthetic(tmp_path, ("s4", "avss"), splits={"train": 1, "test": 1}, size=24, seed=0)
    avss_names = json.loads((roots["avss"] / "label2idx.json").read_text())
    assert avss_names and sorted(avss_names) != avsbench_objects()  # two different lists to tell apart
    expected = {"s4": avsbench_objects(), "avss": sorted(avss_names, key=avss_names.get)[1:]}  # index order, no background
    assert expected["avss"][:3] == ["circle", "square", "triangle"]
    for k in range(20):  # sources built and freed in turn: CPython reuses addresses (an id() key would mix them)
        kind = ("s4", "avss")[k % 2]
        source = AVSBenchSource(f"avsbench_{kind}", roots[kind], "test")
        assert labeler.closed_list(source) == expected[kind], (k, kind)
        alive = weakref.ref(source)
        del source  # freed at once (no reference cycle, the labeler holds it weakly)
        assert alive() is None


def test_tag_windows_are_near_equal_pieces_no_longer_than_the_window() -> None:
    assert tag_windows(24 * 16000, 10 * 16000) == [(0, 128000), (128000, 256000), (256000, 384000)]  # 3 x 8 s
    assert tag_windows(25, 10) == [(0, 9), (9, 17), (17, 25)]  # ceil(2.5) = 3 pieces: 9, 8, 8
    assert tag_windows(11, 10) == [(0, 6), (6, 11)]
    assert tag_windows(10, 10) == [(0, 10)] and tag_windows(3, 10) == [(0, 3)] and tag_windows(0, 10) == [(0, 0)]
    with pytest.raises(ValueError, match="window must be >= 1"):
        tag_windows(10, 0)


class RecordingAST(ASTAudioTagger):
    """The AST tagger, noting the length of every wave it is asked to score."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lengths: list[list[int]] = []

    def scores(self, waves: list[np.ndarray], sample_rate: int, prompt: str | None = None) -> np.ndarray:
        self.lengths.append([len(w) for w in waves])
        return super().scores(waves, sample_rate, prompt)


def test_long_clips_show_evenly_spaced_frames_and_are_tagged_by_windows(models: dict[str, Path]) -> None:
    config = alref_config(models, llm={"name": "openai"}, strip={"max_frames": 4}, tag_window_s=10.0)
    labeler = build_labeler(config)
    assert labeler.strip_positions(list(range(10))) == [0, 3, 6, 9]
    assert labeler.strip_positions([2, 5, 7]) == [2, 5, 7]
    rate = 16000
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 24 * rate).astype(np.float32)
    wave[8 * rate : 16 * rate] *= 0.01
    # two different random taggers naming at most 2 labels each
    taggers = [RecordingAST(models["ast"], top_k=2), RecordingAST(config={"id2label": dict(enumerate(TAGS))}, top_k=2, seed=1)]
    labeler.taggers = taggers
    tags = labeler.tag(wave, rate)
    # a 24 s clip is three 8 s windows (not 10 s + 14 s, whose last 3.76 s AST would never read)
    assert [t.lengths for t in taggers] == [[[8 * rate] * 3]] * 2
    pieces = [wave[: 8 * rate], wave[8 * rate : 16 * rate], wave[16 * rate :]]
    named: dict[str, list[float]] = {}
    for tagger in taggers:  # each label's score is its best window's, a tagger's top 2 without Silence
        scores = tagger.scores(pieces, rate).max(axis=0)
        order = [i for i in np.argsort(-scores, kind="stable") if tagger.labels[i] != "Silence"][:2]
        for i in order:
            named.setdefault(tagger.labels[i], []).append(round(float(scores[i]), 4))
    assert any(len(s) == 2 and s[0] != s[1] for s in named.values())  # a label both name, scored differently
    assert {label: max(s) for label, s in named.items()} == dict(tags)  # the best of the taggers
    assert [score for _, score in tags] == sorted((score for _, score in tags), reverse=True)  # best first


def test_strip_numbers_map_to_clip_frames_with_a_short_strip_and_padded_clips(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """With a 3-frame strip, the LLM's frame numbers 1..3 are strip positions: the pivot is the clip frame
    shown there (record ``strip_frames``), and only an AVSS clip's valid frames are tracked, the pivot given as
    its position among them; padding frames stay empty."""
    root = write_synthetic(tmp_path / "data", ("avss",), splits={"train": 0, "val": 0, "test": 3}, size=40, seed=5)["avss"]
    server = StripServer((3 * 40 + 2 * 4, 40), reference="['dog': 2, 'cat': 3]", box="[2]")
    out = tmp_path / "store"
    try:
        args = [
            "labeler=alrefsam2", "input=avsbench", "data=avsbench_avss", f"data.root={root}", "split=test",
            f"output={out}", "labeler/alm=[ast]", f"labeler.alm.ast.model={models['ast']}",
            f"labeler.grounder.model={models['dino']}", "labeler.grounder.box_threshold=0.0",
            f"labeler.video_segmenter.model={models['sam2_video']}", f"labeler.llm.base_url={server.url}",
            "+labeler.llm.max_retries=0", "labeler.strip.frame_height=null", "labeler.strip.max_frames=3",
            "progress=false",
        ]
        assert label_main(args) == 0
    finally:
        server.close()
    assert server.errors == []
    records = load_records(out)
    video = VIDEO_SEGMENTER.create("sam2_video", model=str(models["sam2_video"]))
    padded = 0
    for clip in AVSBenchSource("avsbench_avss", root, "test").reader:
        record = records[clip.id]
        valid = np.flatnonzero(clip.frame_valid).tolist() if clip.frame_valid is not None else list(range(clip.num_frames))
        shown = [valid[round(i * (len(valid) - 1) / 2)] for i in range(3)]  # evenly spaced, first and last
        assert record["strip_frames"] == shown
        pivots = {r["category"]: r["pivot_frame"] for r in record["referents"]}
        assert pivots == {"dog": shown[1], "cat": shown[2]}
        prompts = [(valid.index(r["pivot_frame"]), np.array(r["chosen_box"], np.float32))
                   for r in record["referents"] if r["chosen_box"]]
        assert len(prompts) == 2  # box threshold 0: every category has candidates
        expected = np.zeros((len(valid), *clip.frames.shape[1:3]), bool)
        for masklet in video.propagate(clip.frames[valid], prompts):
            expected |= masklet
        masks = PseudoLabelStore(out, compute_log_mel=False)[PseudoLabelStore(out).ids.index(clip.id)].masks
        # the record's boxes are rounded to 0.01 px, which can move a pixel at a pivot frame's mask edge
        assert (masks[valid].astype(bool) != expected).mean() < 1e-3
        assert expected.any()
        others = [t for t in range(clip.num_frames) if t not in valid]
        assert not masks[others].any()
        padded += bool(others)
    assert padded >= 1
