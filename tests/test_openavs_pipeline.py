"""The OpenAVS labeler end to end (``pseudolabel.openavs``, ``pseudolabel.runner``, ``openavs_st.data.sources``, ``python -m pseudolabel``,
``python -m pseudolabel.evaluate``) with tiny random models saved to local directories (so the real
``from_pretrained`` path runs) and a real chat-completions server on 127.0.0.1.

Random weights give arbitrary boxes, so masks are checked against the grounder and segmenter run directly
on the same frames and phrases; phrases come from an AST tagger whose labels are words of the tiny
GroundingDINO vocabulary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_server import ChatCompletionsServer
from tiny_vision import tiny_grounding_dino, tiny_sam2

from openavs_st.data.sources import AVSBenchSource, UnpairedSource, VideoFolderSource
from openavs_st.data.store import PseudoLabelStore, StoreWriter, load_records
from openavs_st.data.synthetic import write_synthetic
from pseudolabel import vfm
from pseudolabel.__main__ import main as label_main
from pseudolabel.evaluate import evaluate_store
from pseudolabel.evaluate import main as evaluate_main
from pseudolabel.openavs import OpenAVSLabeler
from pseudolabel.runner import run_labeler

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "guitar", "circle", "square"]
TAGS = ["dog", "cat", "man", "Silence"]
USAGE = (120, 30)


# --- tiny models and data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random AST tagger, GroundingDINO and SAM 2 saved with save_pretrained (recipes of test_alm.py and
    test_vfm.py; GroundingDINO reads images at 96-128 px so its smallest feature map stays above 1x1)."""
    from pseudolabel import alm

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tagger = alm.create_alm("ast", config={"id2label": dict(enumerate(TAGS))}, top_k=1)
    tagger.lazy.processor.save_pretrained(root / "ast")
    tagger.lazy.model.save_pretrained(root / "ast")
    dino_config, dino_processor = tiny_grounding_dino(WORDS, num_queries=6, shortest_edge=96, longest_edge=128)
    transformers.GroundingDinoForObjectDetection(dino_config).save_pretrained(root / "dino")
    dino_processor.save_pretrained(root / "dino")
    sam2_config, sam2_processor = tiny_sam2(128)
    transformers.Sam2Model(sam2_config).save_pretrained(root / "sam2")
    sam2_processor.save_pretrained(root / "sam2")
    return {"ast": root / "ast", "dino": root / "dino", "sam2": root / "sam2"}


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("s4"), ("s4",), splits={"train": 1, "test": 4}, size=40, seed=3)["s4"]


def model_overrides(models: dict[str, Path]) -> list[str]:
    return [
        "labeler/alm=[ast]",
        f"labeler.alm.ast.model={models['ast']}",
        "labeler.alm.ast.top_k=1",
        f"labeler.grounder.model={models['dino']}",
        f"labeler.segmenter.model={models['sam2']}",
        "progress=false",
    ]


def labeler_config(models: dict[str, Path], **llm: Any) -> dict[str, Any]:
    return {
        "name": "test_lite",
        "mode": "openavs",
        "alm": {"tags": {"name": "ast", "model": str(models["ast"]), "top_k": 1}},
        "llm": llm or {"name": "none"},
        "grounder": {"name": "grounding_dino", "model": str(models["dino"]), "box_threshold": 0.25},
        "segmenter": {"name": "sam2", "model": str(models["sam2"])},
    }


_DIRECT: dict[str, Any] = {}


def expected_masks(models: dict[str, Path], frames: np.ndarray, phrases: list[list[str]]) -> np.ndarray:
    """The grounder and segmenter run directly, one frame at a time."""
    if not _DIRECT:
        _DIRECT["grounder"] = vfm.create_grounder("grounding_dino", model=str(models["dino"]))
        _DIRECT["segmenter"] = vfm.create_segmenter("sam2", model=str(models["sam2"]))
    grounder, segmenter = _DIRECT["grounder"], _DIRECT["segmenter"]
    out = []
    for frame, frame_phrases in zip(frames, phrases):
        (detection,) = grounder.detect([frame], [frame_phrases])
        out.append(segmenter.segment([frame], [detection.boxes])[0])
    return np.stack(out)


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --- a chat-completions server ------------------------------------------------------------------------


class ChatServer(ChatCompletionsServer):
    """Answers every chat request with ``<answer>`` lines: the first audio text of each frame, except
    frames listed in ``silent`` (answered "none"). A ``model``-strategy request (``Image agent i:`` /
    ``Audio agent j:`` lines) gets one line of reasoning and one answer: Audio agent 0's text plus
    ``guitar`` (a word no describer produces, so it can only come from the answer)."""

    usage = USAGE

    def __init__(self, silent: tuple[int, ...] = ()) -> None:
        self.silent = silent
        super().__init__()

    def answer(self, body: dict[str, Any]) -> str:
        user = body["messages"][1]["content"]
        agent = re.search(r"^Audio agent 0: (.*)$", user, re.MULTILINE)
        if agent:
            return f"The image and audio agents agree.\n<answer>{agent.group(1)}, guitar</answer>"
        frames = re.findall(r"<frame(\d+)>(?:<exp1>)?(.*?)(?:</exp1>|</frame)", user)
        return "\n".join(f"<answer>{'none' if int(t) in self.silent else text}</answer>" for t, text in frames)


# --- the whole pipeline ---------------------------------------------------------------------------------


def test_cli_labels_an_avsbench_split_into_a_valid_store(models, s4_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = ["labeler=openavs_lite", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
            f"output={out}", "llm=none", "pipeline.frame_batch=8", *model_overrides(models)]
    assert label_main(args) == 0
    store = PseudoLabelStore(out)
    reader = AVSBenchSource("avsbench_s4", s4_root, "test").reader
    assert [clip.id for clip in store] == sorted(reader.ids) and len(store) == 4
    records = load_records(out)
    for clip in store:
        source_clip = reader[reader.ids.index(clip.id)]
        np.testing.assert_array_equal(clip.frames, source_clip.frames)
        assert clip.masks.shape == (5, 40, 40) and clip.log_mel.shape == (5, 1, 96, 64)
        rec = records[clip.id]
        info = rec["frames_info"]
        # no LLM: every ALM text (the tagger's top label) is the frame's phrase
        assert [f["phrases"] for f in info] == [[f["audio_texts"][0]] for f in info]
        assert all(f["audio_texts"][0] in TAGS for f in info)
        phrases = [f["phrases"] for f in info]
        np.testing.assert_array_equal(clip.masks.astype(bool), expected_masks(models, clip.frames, phrases))
        assert rec["mask_area"] == pytest.approx([f["mask_area"] for f in info])
        assert all(len(f["boxes"]) == len(f["box_scores"]) == len(f["mask_scores"]) for f in info)
        assert all(min(f["box_scores"], default=1.0) > 0.25 for f in info)
        assert rec["meta"]["category"] == source_clip.meta["category"]
        assert {"load_s", "alm_s", "ground_s", "segment_s"} <= set(rec["timings"])
        assert rec["llm"]["backend"] == "none" and rec["llm"]["calls"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["clips_ok"] == 4 and summary["run"]["clips_failed"] == 0
    assert summary["store"]["frames"] == 20
    assert summary["store"]["mean_mask_area"] == pytest.approx(np.mean([a for r in records.values() for a in r["mask_area"]]))
    saved = (out / "pseudolabel_config.yaml").read_text()
    assert "grounding_dino" in saved and str(models["dino"]) in saved
    assert no_temporaries(out)

    # A rerun skips every finished clip.
    assert label_main(args) == 0
    assert json.loads((out / "summary.json").read_text())["run"]["clips_skipped"] == 4
    assert sum(1 for _ in (out / "manifest.jsonl").open()) == 4


def test_a_run_whose_every_clip_fails_exits_1(models, s4_root: Path, tmp_path: Path, capsys) -> None:
    down = ["llm=openai", "labeler.llm.base_url=http://127.0.0.1:9/v1", "+labeler.llm.max_retries=0"]  # nothing listens
    args = ["labeler=openavs_lite", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
            f"output={tmp_path / 'store'}", *down, "progress=false", *model_overrides(models)]
    assert label_main(args) == 1
    assert "every clip of this run failed (4)" in capsys.readouterr().err
    records = load_records(tmp_path / "store")
    assert len(records) == 4 and not any(r["status"] == "ok" for r in records.values())


def test_llm_stage_with_a_local_server_silent_frames_tokens_and_cache(models, s4_root, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ChatServer(silent=(2,))
    try:
        cache = tmp_path / "cache"
        llm = dict(name="openai", model="gpt-4o-mini", strategy="prompt_frame", base_url=server.url,
                   cache_dir=str(cache), concurrency=2, max_retries=0)
        labeler = OpenAVSLabeler.from_config(labeler_config(models, **llm))
        source = AVSBenchSource("avsbench_s4", s4_root, "test")
        writer = StoreWriter(tmp_path / "a", labeler="test_lite")
        stats = run_labeler(labeler, source, writer, progress=False, frame_batch=10)
        # Two clips whose (tiny, random) ALM texts coincide send identical requests; the second one is
        # served by the cache when the first has already been answered, so count calls + hits.
        calls = stats.llm_calls
        assert stats.clips_ok == 4 and calls + stats.llm_cache_hits == 4 and len(server.bodies) == calls >= 1
        assert stats.llm_tokens == 4 * sum(USAGE)  # usage of the responses used, cached ones included
        assert stats.llm_cost_usd == pytest.approx(calls * (USAGE[0] * 0.15 + USAGE[1] * 0.60) / 1e6)
        for rec in load_records(tmp_path / "a").values():
            info = rec["frames_info"]
            assert [f["llm_status"] for f in info] == ["ok", "ok", "silent", "ok", "ok"]
            assert info[2]["phrases"] == [] and info[2]["boxes"] == [] and rec["mask_area"][2] == 0.0
            assert [f["phrases"] for f in info if f["t"] != 2] == [[f["audio_texts"][0].lower()] for f in info if f["t"] != 2]
            assert rec["llm"]["strategy"] == "prompt_frame"
            assert rec["llm"]["prompt_tokens"] == USAGE[0]
        assert stats.empty_mask_frames >= 4

        # Same requests into another store: all answered by the cache, nothing sent, nothing paid.
        again = run_labeler(labeler, source, StoreWriter(tmp_path / "b", labeler="test_lite"), progress=False)
        assert again.clips_ok == 4 and again.llm_calls == 0 and again.llm_cache_hits == 4 and again.llm_cost_usd == 0
        assert len(server.bodies) == calls
    finally:
        server.close()


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL saved with save_pretrained (the recipe of test_vlm.py). Its text weights are
    drawn with a wide spread (initializer_range 1.0, not 0.02) so that its few tokens depend on the image:
    with the default every frame gets the same text."""
    from pseudolabel import vlm

    directory = tmp_path_factory.mktemp("qwen_vl")
    describer = vlm.create_vlm("qwen2_5_vl", config={"text_config": {"initializer_range": 1.0}}, max_new_tokens=3)
    describer.chat.lazy.processor.save_pretrained(directory)
    describer.chat.lazy.model.save_pretrained(directory)
    return directory


def test_model_strategy_with_a_vlm_sends_image_and_audio_agents(
    models, vlm_dir, s4_root, tmp_path, monkeypatch
) -> None:
    from pseudolabel.llm.strategies import NOTHING_SOUNDS, unique_phrases

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ChatServer()
    try:
        cfg = labeler_config(
            models, name="openai", model="gpt-4o-mini", strategy="model", base_url=server.url,
            cache_dir=str(tmp_path / "cache"), concurrency=3, max_retries=0, model_scope="frame",
        )
        # Two audio describers (the tagger's top 1 and top 2 labels): Audio agents 0 and 1.
        cfg["alm"]["top2"] = {**cfg["alm"]["tags"], "top_k": 2}
        prompts = ["Please describe the image in detail", "What could be making a sound?"]  # Image agents 0 and 1
        cfg["vlm"] = {"name": "qwen2_5_vl", "model": str(vlm_dir), "max_new_tokens": 3, "prompts": prompts}
        labeler = OpenAVSLabeler.from_config(cfg)
        assert labeler.translator.model_scope == "frame"  # one request per frame
        source = AVSBenchSource("avsbench_s4", s4_root, "test")
        writer = StoreWriter(tmp_path / "a", labeler="test_model")
        stats = run_labeler(labeler, source, writer, progress=False, frame_batch=10)

        assert stats.clips_ok == 4 and stats.clips_failed == 0
        records = load_records(tmp_path / "a")
        expected_users = set()
        for rec in records.values():
            llm_rec = rec["llm"]
            assert llm_rec["strategy"] == "model" and llm_rec["requests"] == 5  # one per frame
            # Frames (or clips) with the same texts send the same request: later ones may be cache hits.
            assert llm_rec["calls"] + llm_rec["cache_hits"] == 5
            for f in rec["frames_info"]:
                images, audios = f["image_texts"], f["audio_texts"]
                assert len(images) == 2 and all(isinstance(text, str) for text in images)
                assert len(audios) == 2 and audios[0] in TAGS and audios[1].startswith(audios[0] + ", ")
                lines = [f"Image agent {i}: {' '.join(text.split())}" for i, text in enumerate(images)]
                lines += [f"Audio agent {j}: {text}" for j, text in enumerate(audios)]
                expected_users.add("\n".join(lines))
                # The answer (Audio agent 0's tag + "guitar"), not the describers' raw text, went to the grounder.
                assert f["phrases"] == [p for p in unique_phrases([audios[0], "guitar"]) if p not in NOTHING_SOUNDS]
                assert f["llm_status"] == "ok"
        assert len(expected_users) > 1  # the frames' requests differ (their image texts do)
        sent = [body["messages"][1]["content"] for body in server.bodies]
        assert set(sent) == expected_users  # every distinct request went out once the cache was empty
        assert len(sent) == stats.llm_calls == sum(r["llm"]["calls"] for r in records.values())
        assert stats.llm_calls + stats.llm_cache_hits == 20

        store = PseudoLabelStore(tmp_path / "a")
        assert len(store) == 4 and no_temporaries(tmp_path / "a")
        assert all(clip.masks.shape == (5, 40, 40) for clip in store)
        clip = store[0]  # masks: one clip against the grounder and segmenter run directly (slow on CPU)
        phrases = [f["phrases"] for f in records[clip.id]["frames_info"]]
        np.testing.assert_array_equal(clip.masks.astype(bool), expected_masks(models, clip.frames, phrases))

        # Two clips again into another store: every request is served by the cache.
        again = run_labeler(labeler, source, StoreWriter(tmp_path / "b", labeler="test_model"), progress=False, limit=2)
        assert again.clips_ok == 2 and (again.llm_calls, again.llm_cache_hits, again.llm_cost_usd) == (0, 10, 0.0)
        assert len(server.bodies) == len(sent)
    finally:
        server.close()


def test_killed_run_resumes_with_every_clip_once(models, tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "data", ("s4",), splits={"test": 8}, size=40, seed=5)["s4"]
    out = tmp_path / "store"
    command = [sys.executable, "-m", "pseudolabel", "labeler=openavs_lite", "input=avsbench", "data=avsbench_s4",
               f"data.root={root}", "split=test", f"output={out}", "llm=none", "pipeline.frame_batch=5",
               "pipeline.max_in_flight=2", *model_overrides(models)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.is_file() and manifest.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    recorded = load_records(out)
    done_before = len(recorded)
    assert done_before < 8, "the run was not killed mid-way"
    for clip_id in recorded:  # at the kill: a clip is in the manifest only once all its files are written
        assert sorted(p.name for p in (out / "masks" / clip_id).iterdir()) == [f"{t}.png" for t in range(5)]
        assert (out / "audio" / f"{clip_id}.wav").is_file()

    finished = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    ids = [json.loads(line)["id"] for line in manifest.read_text().splitlines()]
    assert sorted(ids) == sorted(f"s4_test_{i:03d}" for i in range(8))  # each clip exactly once
    assert no_temporaries(out)
    store = PseudoLabelStore(out)
    assert len(store) == 8
    for clip_id in ids:  # every file of every clip is complete
        assert sorted(p.name for p in (out / "masks" / clip_id).iterdir()) == [f"{t}.png" for t in range(5)]
    assert json.loads((out / "summary.json").read_text())["run"]["clips_skipped"] == done_before


def test_a_corrupt_video_and_an_unreadable_wav_fail_alone(models, s4_root: Path, tmp_path: Path) -> None:
    from openavs_st.data.video import write_video

    labeler = OpenAVSLabeler.from_config(labeler_config(models))
    videos = tmp_path / "videos"
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    for name in ("good_a", "good_b"):
        write_video(videos / f"{name}.mp4", rng.integers(0, 255, (30, 48, 64, 3), dtype=np.uint8), 10, (tone, 16000))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 255, 3000, dtype=np.uint8)))
    writer = StoreWriter(tmp_path / "from_videos", labeler="test_lite")
    stats = run_labeler(labeler, VideoFolderSource(videos), writer, progress=False)
    assert (stats.clips_ok, stats.clips_failed) == (2, 1)
    records = load_records(tmp_path / "from_videos")
    assert records["broken"]["status"].startswith("failed: ClipError:") and "broken.mp4" in records["broken"]["status"]
    assert records["broken"]["failed_stage"] == "load/describe"
    assert records["good_a"]["status"] == "ok" and records["good_a"]["num_frames"] == 3
    assert not (tmp_path / "from_videos" / "frames" / "broken").exists()

    copy = tmp_path / "s4"
    shutil.copytree(s4_root, copy)
    wav = next((copy / "s4_data" / "audio_wav" / "test").rglob("s4_test_001.wav"))
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    writer = StoreWriter(tmp_path / "from_s4", labeler="test_lite")
    stats = run_labeler(labeler, AVSBenchSource("avsbench_s4", copy, "test"), writer, progress=False)
    assert (stats.clips_ok, stats.clips_failed) == (3, 1)
    status = load_records(tmp_path / "from_s4")["s4_test_001"]["status"]
    assert status.startswith("failed: ClipError") and "s4_test_001.wav" in status
    assert stats.failures == {"s4_test_001": status[len("failed: "):]}
    assert len(PseudoLabelStore(tmp_path / "from_s4")) == 3


def test_unpaired_mode_pairs_each_audio_with_k_seeded_images(models, tmp_path: Path) -> None:
    import soundfile as sf
    from PIL import Image

    audio_dir, image_dir = tmp_path / "audio", tmp_path / "images"
    audio_dir.mkdir()
    image_dir.mkdir()
    rng = np.random.default_rng(1)
    for name in ("bark", "meow", "talk"):
        sf.write(audio_dir / f"{name}.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    for index in range(5):
        Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)).save(image_dir / f"img{index}.png")
    source = UnpairedSource(audio_dir, image_dir, k=2, seed=7, num_frames=3)
    assert len(source) == 6
    by_audio: dict[str, list[str]] = {}
    for clip_id in source.ids:
        audio, image = clip_id.split("+")
        by_audio.setdefault(audio, []).append(image)
    assert sorted(by_audio) == ["bark", "meow", "talk"]
    assert all(len(set(images)) == 2 for images in by_audio.values())
    assert UnpairedSource(audio_dir, image_dir, k=2, seed=7, num_frames=3).ids == source.ids  # seeded
    with pytest.raises(ValueError, match="k=6 but .* holds only 5 images"):
        UnpairedSource(audio_dir, image_dir, k=6)

    clip = source.load(source.ids[0])
    image = np.asarray(Image.open(image_dir / f"{source.ids[0].split('+')[1]}.png").convert("RGB"))
    assert clip.frames.shape == (3, 36, 44, 3) and all((frame == image).all() for frame in clip.frames)
    writer = StoreWriter(tmp_path / "store", labeler="test_lite")
    stats = run_labeler(OpenAVSLabeler.from_config(labeler_config(models)), source, writer, progress=False)
    assert stats.clips_ok == 6
    for clip_id, rec in load_records(tmp_path / "store").items():
        pairing = rec["meta"]["pairing"]
        audio, image_name = clip_id.split("+")
        assert Path(pairing["audio"]).stem == audio and Path(pairing["image"]).stem == image_name
        assert (pairing["k"], pairing["seed"]) == (2, 7)
    (audio_dir / "talk.wav").unlink()  # one audio's pairing does not depend on the others
    assert [c for c in UnpairedSource(audio_dir, image_dir, k=2, seed=7).ids if c.startswith("bark+")] == [
        c for c in source.ids if c.startswith("bark+")
    ]


def test_clip_label_mode_queries_the_class_names_and_shards_split_the_clips(models, s4_root, tmp_path) -> None:
    reader = AVSBenchSource("avsbench_s4", s4_root, "test").reader
    out = tmp_path / "store"
    for shard in ("0/2", "1/2"):
        args = ["labeler=clip_label", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", f"output={out}",
                f"labeler.grounder.model={models['dino']}", f"labeler.segmenter.model={models['sam2']}",
                "+labeler.class_prompts.circle=dog", f"shard={shard}", "progress=false"]
        assert label_main(args) == 0
    shard_ids = [set(), set()]
    for i in range(2):  # a shard that owns no clip writes no manifest
        manifest = out / f"manifest.shard-{i}-of-2.jsonl"
        if manifest.is_file():
            shard_ids[i] = {json.loads(line)["id"] for line in manifest.read_text().splitlines()}
        summary = json.loads((out / f"summary.shard-{i}-of-2.json").read_text())
        assert summary["shard"] == [i, 2] and summary["run"]["clips_ok"] == len(shard_ids[i])
    assert not shard_ids[0] & shard_ids[1] and shard_ids[0] | shard_ids[1] == set(reader.ids)
    assert (out / "pseudolabel_config.shard-1-of-2.yaml").is_file()
    records = load_records(out)
    for index, clip_id in enumerate(reader.ids):
        category = reader.records[index].category
        phrase = "dog" if category == "circle" else category
        assert [f["phrases"] for f in records[clip_id]["frames_info"]] == [[phrase]] * 5
        assert records[clip_id]["mode"] == "clip_label" and "llm" not in records[clip_id]


def test_cli_reports_configuration_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert label_main(["labeler=openavs_huge", "input=x", f"output={tmp_path}"]) == 2
    assert "unknown labeler 'openavs_huge'" in capsys.readouterr().err
    assert label_main(["input=avsbench", f"output={tmp_path}"]) == 2
    assert "data=avsbench_s4" in capsys.readouterr().err
    assert label_main([f"input={tmp_path / 'none'}", f"output={tmp_path}"]) == 2
    assert "is not a folder of video files" in capsys.readouterr().err
    assert label_main(["input=x", f"output={tmp_path}", "shard=2/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert label_main(["input=x"]) == 2
    assert "missing value(s) for ['output']" in capsys.readouterr().err
    assert label_main(["labeler=openavs", "input=unpaired", f"output={tmp_path}", "labeler.vlm=null",
                       f"unpaired.audio_dir={tmp_path}", f"unpaired.image_dir={tmp_path}"]) == 2


def test_a_model_that_is_not_on_disk_stops_before_anything_is_written(
    models, s4_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "store"
    missing = tmp_path / "no-such-model"
    args = ["labeler=openavs_lite", "input=avsbench", "data=avsbench_s4", f"data.root={s4_root}", f"output={out}",
            "llm=none", *model_overrides(models), f"labeler.grounder.model={missing}"]
    assert label_main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(err) == 1 and err[0].startswith("error: labeler.grounder: could not load")  # one line, no traceback
    assert str(missing) in err[0] and "set labeler.grounder.model=" in err[0]
    assert not out.exists()  # nothing written: no config, no manifest, no folder


# --- evaluate --------------------------------------------------------------------------------------------


def test_evaluate_scores_a_store_against_ground_truth(
    s4_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reader = AVSBenchSource("avsbench_s4", s4_root, "test").reader
    perfect = StoreWriter(tmp_path / "perfect", labeler="gt")
    empty = StoreWriter(tmp_path / "empty", labeler="nothing")
    for clip in reader:
        perfect.write(clip, clip.masks)
        empty.write(clip, np.zeros_like(clip.masks))
    result = evaluate_store(tmp_path / "perfect", "avsbench_s4", s4_root, "test")
    assert result["frames_scored"] == 20 and result["clips_missing"] == 0
    assert result["metrics"]["miou_avsbench"] == pytest.approx(1.0, abs=1e-6)
    assert result["metrics"]["f_avsbench"] == pytest.approx(1.0, abs=1e-6)
    assert result["metrics"]["miou_2class_dataset"] == pytest.approx(1.0, abs=1e-6)

    # Empty predictions: IoU 0 on frames with an object; a frame with empty GT scores 1 (AVSBench's rule).
    gt = np.concatenate([clip.masks for clip in reader])
    empty_gt = np.array([not m.any() for m in gt])
    scores = evaluate_store(tmp_path / "empty", "avsbench_s4", s4_root, "test")["metrics"]
    assert scores["miou_avsbench"] == pytest.approx(empty_gt.mean(), abs=1e-6)
    # F: only threshold 0 marks pixels (p = 0 >= 0: all of them), so precision = GT fraction, recall = 1.
    fractions = np.array([m.mean() for m in gt if m.any()])
    assert scores["f_pooled"] == pytest.approx(np.mean(1.3 * fractions / (0.3 * fractions + 1)), rel=1e-6)

    # Through the CLI: metrics.json in the store; a missing clip is an error unless told otherwise.
    capsys.readouterr()
    assert evaluate_main([f"store={tmp_path / 'perfect'}", "data=avsbench_s4", f"data.root={s4_root}", "split=test"]) == 0
    assert "scoring avsbench_s4 test: 100%|" in capsys.readouterr().err  # the progress bar (progress=false: none)
    assert evaluate_main([f"store={tmp_path / 'perfect'}", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
                          "progress=false"]) == 0
    assert "scoring" not in capsys.readouterr().err
    written = json.loads((tmp_path / "perfect" / "metrics.json").read_text())
    assert written["metrics"]["miou_avsbench"] == pytest.approx(1.0, abs=1e-6)
    partial = StoreWriter(tmp_path / "partial", labeler="gt")
    first = reader[0]
    partial.write(first, first.masks)
    assert evaluate_main([f"store={tmp_path / 'partial'}", "data=avsbench_s4", f"data.root={s4_root}"]) == 2
    (tmp_path / "a_file").write_text("x")  # out= that cannot be written: refused before scoring
    capsys.readouterr()
    assert evaluate_main([f"store={tmp_path / 'perfect'}", "data=avsbench_s4", f"data.root={s4_root}", "split=test",
                          f"out={tmp_path / 'a_file' / 'm.json'}"]) == 2
    err = capsys.readouterr().err
    assert "a_file is a file" in err and "scoring" not in err
    assert evaluate_main([f"store={tmp_path / 'partial'}", "data=avsbench_s4", f"data.root={s4_root}", "missing=skip"]) == 0
    skipped = json.loads((tmp_path / "partial" / "metrics.json").read_text())
    assert skipped["clips_scored"] == 1 and skipped["metrics"]["miou_avsbench"] == pytest.approx(1.0, abs=1e-6)


# --- back-pressure ---------------------------------------------------------------------------------------


class _CountingSource(AVSBenchSource):
    """An AVSBench source that notes, each time a clip starts loading, how many clips were loaded but not
    yet written (ok or failed) to ``writer``."""

    def __init__(self, root: Path, writer: StoreWriter) -> None:
        super().__init__("avsbench_s4", root, "test")
        self.writer = writer
        self.loaded = 0
        self.peak = 0

    def load(self, clip_id: str):  # noqa: ANN201
        written = self.writer.counts["ok"] + self.writer.counts["failed"]
        self.peak = max(self.peak, self.loaded - written + 1)
        self.loaded += 1
        return super().load(clip_id)


def test_overlapped_run_keeps_at_most_max_in_flight_clips_in_memory(models, tmp_path: Path) -> None:
    # clip_label: describing is only loading, far faster than grounding, so without back-pressure the
    # describer would read the whole input into memory ahead of the grounder. (A box threshold no random
    # box passes keeps the test fast: no segmenter call.)
    root = write_synthetic(tmp_path / "data", ("s4",), splits={"test": 5}, size=24, seed=2)["s4"]
    cfg = labeler_config(models)
    cfg.update(mode="clip_label", class_prompts={}, grounder={**cfg["grounder"], "box_threshold": 0.99})
    labeler = OpenAVSLabeler.from_config(cfg)
    writer = StoreWriter(tmp_path / "store", labeler="clip_label")
    source = _CountingSource(root, writer)
    stats = run_labeler(labeler, source, writer, progress=False, max_in_flight=1, frame_batch=5)
    assert stats.clips_ok == 5 and source.loaded == 5
    assert source.peak == 1
