"""The pseudo-label store: round trip, resume after SIGKILL, sharding, failures, no secrets on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.store import (
    PseudoLabelStore,
    StoreWriter,
    config_hash,
    load_records,
    scrub_secrets,
    shard_of,
)


def make_clip(cid: str, t: int = 5, size: int = 16, seed: int = 0) -> tuple[Clip, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(t * 16000) / 16000)).astype(np.float32)
    masks = np.zeros((t, size, size), bool)
    masks[:, 2:6, 3:9] = True
    masks[-1] = False  # an empty-mask frame
    return Clip(cid, frames, wave, 16000, meta={"category": "dog"}), masks


def test_round_trip_and_summary(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, labeler="openavs_lite", config={"alm": "clap"})
    clip, masks = make_clip("vid_a")
    rec = w.write(clip, masks, {"llm": {"calls": 1, "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": 2e-5}})
    assert rec["mask_area"][0] == pytest.approx(24 / 256) and rec["mask_area"][-1] == 0
    w.write_failure("vid_b", "no audio stream in /x/vid_b.mp4")
    store = PseudoLabelStore(tmp_path)
    assert len(store) == 1
    back = store[0]
    np.testing.assert_array_equal(back.frames, clip.frames)  # png is lossless
    np.testing.assert_array_equal(back.masks, masks.astype(np.uint8))
    assert back.log_mel.shape == (5, 1, 96, 64) and back.sample_rate == 16000
    assert back.meta["labeler"] == "openavs_lite" and back.meta["category"] == "dog"
    s = store.summary()
    assert s["clips_ok"] == 1 and s["clips_failed"] == 1 and s["empty_mask_frames"] == 1
    assert s["llm_calls"] == 1 and s["llm_tokens"] == 110 and s["llm_cost_usd"] == pytest.approx(2e-5)
    # readable without this package: plain files and JSON lines
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["ok", "failed: no audio stream in /x/vid_b.mp4"]
    assert (tmp_path / "masks" / "vid_a" / "0.png").is_file() and (tmp_path / "audio" / "vid_a.wav").is_file()


def test_rerun_skips_finished_clips(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, labeler="x")
    w.write(*make_clip("a"))
    w.write_failure("b", "boom")
    w.close()  # one writer per shard manifest at a time
    again = StoreWriter(tmp_path, labeler="x")
    assert again.pending(["a", "b", "c"]) == ["c"]
    again.close()
    retry = StoreWriter(tmp_path, labeler="x", retry_failed=True)
    assert retry.pending(["a", "b", "c"]) == ["b", "c"]


def test_shards_are_disjoint_and_manifests_concatenate(tmp_path: Path) -> None:
    ids = [f"clip{i}" for i in range(12)]
    writers = [StoreWriter(tmp_path, labeler="x", shard=(i, 3)) for i in range(3)]
    owned = [w.pending(ids) for w in writers]
    assert sorted(sum(owned, [])) == sorted(ids)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(owned) for b in owned[i + 1 :])
    assert all(shard_of(c, 3) == i for i, part in enumerate(owned) for c in part)
    for w, part in zip(writers, owned):
        for c in part[:2]:
            w.write(*make_clip(c, t=2, size=8))
    assert len(list(tmp_path.glob("manifest.shard-*-of-3.jsonl"))) == 3
    assert len(PseudoLabelStore(tmp_path)) == sum(min(2, len(p)) for p in owned)
    with pytest.raises(ValueError, match="shard"):
        StoreWriter(tmp_path, labeler="x", shard=(3, 3))


def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    key = "sk-test-abcdefghijklmnop123"
    cfg = {"llm": {"api_key": key, "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:1"}}
    w = StoreWriter(tmp_path, labeler="x", config=cfg)
    w.write(*make_clip("a"), {"llm": {"raw_request": f"Authorization: Bearer {key}"}})
    w.write_failure("b", f"HTTP 401 for key {key}")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert config_hash(cfg) == config_hash({"llm": {**cfg["llm"], "api_key": "sk-other-zzzzzzzzzzzz"}})
    assert scrub_secrets({"token": "abc", "nested": [{"password": "p"}], "n": 1}) == {
        "token": "***", "nested": [{"password": "***"}], "n": 1
    }


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, labeler="x")
    w.write(*make_clip("a", t=1, size=8))
    with (tmp_path / "manifest.jsonl").open("a") as fh:
        fh.write('{"id": "b", "status": "o')  # killed mid-append
    assert set(load_records(tmp_path)) == {"a"}
    w.close()
    w2 = StoreWriter(tmp_path, labeler="x")
    assert w2.pending(["a", "b"]) == ["b"]
    w2.write(*make_clip("b", t=1, size=8))
    assert set(load_records(tmp_path)) == {"a", "b"}
    (tmp_path / "manifest.jsonl").write_text('{"id": "a", "status": "ok"}\nnot json\n{"id": "c", "status": "ok"}\n')
    with pytest.raises(ClipError, match="manifest.jsonl: line 2"):
        load_records(tmp_path)


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, labeler="x")
    clip, masks = make_clip("a")
    with pytest.raises(ClipError, match="do not match"):
        w.write(clip, masks[:, :4])
    with pytest.raises(ClipError, match="cannot be used as a folder"):
        w.write(Clip("../evil", clip.frames), masks)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="not a pseudo-label store"):
        PseudoLabelStore(tmp_path / "empty")
    with pytest.raises(ClipError, match="not found"):
        PseudoLabelStore(tmp_path / "nope")


WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from openavs_st.data.clip import Clip
    from openavs_st.data.store import StoreWriter
    root, n = sys.argv[1], int(sys.argv[2])
    w = StoreWriter(root, labeler="x")
    ids = [f"clip{i:02d}" for i in range(n)]
    for cid in w.pending(ids):
        frames = np.full((5, 64, 64, 3), int(cid[-2:]), np.uint8)
        wave = np.zeros(5 * 16000, np.float32)
        w.write(Clip(cid, frames, wave, 16000), frames[..., 0] > 0)
        print(cid, flush=True)
        time.sleep(0.05)
    print("done", flush=True)
    """
)


def test_sigkill_mid_run_then_resume_labels_every_clip_once(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store = tmp_path / "store"
    n = 12
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(n)], stdout=subprocess.PIPE, text=True)
    seen = [proc.stdout.readline().strip() for _ in range(3)]
    assert seen[0].startswith("clip")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = set(load_records(store))
    assert 3 <= len(partial) < n
    out = subprocess.run([sys.executable, str(script), str(store), str(n)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("done")
    redone = [line for line in out.stdout.split() if line.startswith("clip")]
    assert not set(redone) & partial  # finished clips were skipped
    lines = (store / "manifest.jsonl").read_text().splitlines()
    ids = [json.loads(x)["id"] for x in lines if x.strip().endswith("}")]
    assert sorted(set(ids)) == [f"clip{i:02d}" for i in range(n)]
    assert len(ids) == n  # every clip exactly once
    assert not [p for p in store.rglob("*.tmp*")]  # no partial files left visible
    clips = PseudoLabelStore(store)
    assert len(clips) == n and int(clips[7].frames[0, 0, 0, 0]) == 7


def test_an_ok_record_wins_over_a_failure_in_another_manifest(tmp_path: Path) -> None:
    # Failed under shard=i/2, redone by an unsharded rerun: manifest.jsonl sorts before the shard's manifest.
    cid = next(c for c in (f"clip{i}" for i in range(20)) if shard_of(c, 2) == 1)
    StoreWriter(tmp_path, labeler="x", shard=(1, 2)).write_failure(cid, "boom")
    rerun = StoreWriter(tmp_path, labeler="x", retry_failed=True)
    assert rerun.pending([cid]) == [cid]
    rerun.write(*make_clip(cid, t=2, size=8))
    rerun.close()
    assert load_records(tmp_path)[cid]["status"] == "ok"
    assert StoreWriter(tmp_path, labeler="x", retry_failed=True).pending([cid]) == []
    assert [c.id for c in PseudoLabelStore(tmp_path)] == [cid]


def test_a_clip_id_that_looks_like_a_key_is_kept(tmp_path: Path) -> None:
    cid = "talk-sk-Ab3dEf9hIj"  # a file stem / YouTube-style id matching the API-key pattern
    w = StoreWriter(tmp_path, labeler="x")
    w.write(*make_clip(cid, t=2, size=8))
    w.close()
    rec = load_records(tmp_path)[cid]
    assert rec["frames"] == [f"frames/{cid}/0.png", f"frames/{cid}/1.png"] and rec["audio"] == f"audio/{cid}.wav"
    assert StoreWriter(tmp_path, labeler="x").pending([cid]) == []
    assert PseudoLabelStore(tmp_path)[0].id == cid


def test_summarize_hand_computed_records() -> None:
    from openavs_st.data.store import SUMMARY_KEYS, summarize

    records = [
        {  # a labeler record: frames_info decides which frames count (the padding frame 2 does not)
            "id": "a",
            "status": "ok",
            "mask_area": [0.5, 0.0, 0.0],
            "frames_info": [{"t": 0, "valid": True, "mask_area": 0.5}, {"t": 1, "valid": True, "mask_area": 0.0},
                            {"t": 2, "valid": False, "mask_area": 0.0}],
            "llm": {"calls": 2, "cache_hits": 1, "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.25},
        },
        {"id": "b", "status": "ok", "mask_area": [0.25, 0.75]},  # no frames_info: every frame counts
        {  # a failure still spent LLM tokens
            "id": "c",
            "status": "failed: ground/segment boom",
            "llm": {"calls": 1, "cache_hits": 0, "prompt_tokens": 7, "completion_tokens": 3, "cost_usd": 0.5},
        },
        {"id": "d", "status": "failed: no audio", "llm": None},
    ]
    s = summarize(records)
    assert tuple(s) == SUMMARY_KEYS
    assert s == {
        "clips_ok": 2,
        "clips_failed": 2,
        "frames": 4,
        "empty_mask_frames": 1,
        "mean_mask_area": pytest.approx((0.5 + 0.0 + 0.25 + 0.75) / 4),
        "llm_calls": 3,
        "llm_cache_hits": 1,
        "llm_tokens": 130,
        "llm_cost_usd": pytest.approx(0.75),
        "llm_fallback_clips": 0,
    }
    assert summarize([]) == dict.fromkeys(SUMMARY_KEYS, 0) | {"mean_mask_area": 0.0, "llm_cost_usd": 0.0}
    assert summarize(iter(records)) == s  # any iterable, one pass


# --- the record schema -----------------------------------------------------------------------------------


def test_record_schema_is_checked_on_write_and_read(tmp_path: Path) -> None:
    from openavs_st.data.store import RECORD_FIELDS, check_record

    assert [f.name for f in RECORD_FIELDS][:4] == ["id", "status", "labeler", "config_hash"]
    w = StoreWriter(tmp_path, labeler="x")
    with pytest.raises(ClipError, match=r"'llm' of clip 'a' must be dict or null"):
        w.write(*make_clip("a", t=1, size=8), {"llm": "lots"})
    with pytest.raises(ClipError, match=r"'timings' of clip 'b' must be dict"):
        w.write_failure("b", "boom", {"timings": [1.0]})
    assert not (tmp_path / MANIFEST_NAME).exists() or not (tmp_path / MANIFEST_NAME).read_text()
    rec = w.write(*make_clip("c", t=2, size=8))
    check_record(rec, complete=True)
    with pytest.raises(ClipError, match=r"no 'mask_area'"):
        check_record({k: v for k, v in rec.items() if k != "mask_area"}, complete=True)
    with pytest.raises(ClipError, match=r"num_frames=3 but \['frames', 'masks', 'mask_area'\] differ"):
        check_record({**rec, "num_frames": 3}, complete=True)
    with pytest.raises(ClipError, match=r"'num_frames' of clip 'c' must be int, got True"):
        check_record({**rec, "num_frames": True})
    check_record({"id": "d", "status": "failed: x"})  # what resume needs: id and status
    (tmp_path / "manifest.shard-0-of-2.jsonl").write_text('{"id": "e", "status": "ok", "frames": "f.png"}\n')
    with pytest.raises(ClipError, match=r"manifest\.shard-0-of-2\.jsonl: line 1: 'frames' of clip 'e' must be list"):
        load_records(tmp_path)
    (tmp_path / "manifest.shard-0-of-2.jsonl").write_text('{"id": "e", "status": "ok"}\n')
    assert set(load_records(tmp_path)) == {"c", "e"}
    with pytest.raises(ClipError, match=r"the clip record has no 'labeler'"):  # the reader needs whole ok records
        PseudoLabelStore(tmp_path)


MANIFEST_NAME = "manifest.jsonl"


# --- the log-mel cache -----------------------------------------------------------------------------------


def test_log_mel_cache_equals_recomputation_and_serves_the_second_access(tmp_path: Path, monkeypatch) -> None:
    from openavs_st.data import audio
    from openavs_st.data.audio import load_audio, log_mel_examples
    from openavs_st.data.logmel_cache import LOG_MEL_CACHE_VERSION, log_mel_cache_path

    w = StoreWriter(tmp_path, labeler="x")
    clip, masks = make_clip("a", t=3, size=8)
    wave = (0.3 * np.sin(2 * np.pi * 300 * np.arange(3 * 44100) / 44100)).astype(np.float32)
    w.write(Clip("a", clip.frames, wave, 44100), masks)  # a 44.1 kHz track: resampled by the front end
    w.write(*make_clip("b", t=3, size=8, seed=1))
    wav = tmp_path / "audio" / "a.wav"
    expected = log_mel_examples(*load_audio(wav), num_frames=3, pad="repeat")
    calls = []
    real = audio.log_mel_examples
    monkeypatch.setattr(audio, "log_mel_examples", lambda *a, **k: calls.append(1) or real(*a, **k))

    store = PseudoLabelStore(tmp_path)
    first = store[0].log_mel
    assert len(calls) == 1 and store.log_mel_cache_hits == 0
    cache = log_mel_cache_path(wav)
    assert cache == tmp_path / "audio" / "a.logmel.npz" and cache.is_file()
    np.testing.assert_array_equal(first, expected)
    again = PseudoLabelStore(tmp_path)  # a new epoch / a new worker process
    np.testing.assert_array_equal(again[0].log_mel, expected)
    np.testing.assert_array_equal(again.log_mel_of(0), expected)
    assert len(calls) == 1 and again.log_mel_cache_hits == 2  # no recomputation
    with np.load(cache, allow_pickle=False) as npz:
        assert set(npz.files) == {"log_mel", "wav_sha256", "version"} and int(npz["version"]) == LOG_MEL_CACHE_VERSION
        assert npz["log_mel"].dtype == np.float32

    # A changed wav invalidates its cache; a damaged cache is recomputed; cache_log_mel=False never reads it.
    sf.write(wav, np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    silent = again[0].log_mel
    assert len(calls) == 2
    np.testing.assert_array_equal(silent, log_mel_examples(np.zeros(3 * 16000, np.float32), 16000, 3))
    cache.write_bytes(b"not a zip")
    np.testing.assert_array_equal(again[0].log_mel, silent)
    assert len(calls) == 3
    again[0]
    assert len(calls) == 3  # the damaged cache was rewritten
    PseudoLabelStore(tmp_path, cache_log_mel=False)[0]
    assert len(calls) == 4


def test_a_store_that_cannot_be_written_is_read_without_the_cache(tmp_path: Path, monkeypatch, caplog) -> None:
    import openavs_st.data.store as store_module

    w = StoreWriter(tmp_path, labeler="x")
    w.write(*make_clip("a", t=2, size=8))

    def read_only(path: Path, write, tag: str = "") -> None:  # noqa: ANN001
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store_module, "atomic_write", read_only)
    store = PseudoLabelStore(tmp_path)
    assert store[0].log_mel.shape == (2, 1, 96, 64) and store[0].log_mel.shape == (2, 1, 96, 64)
    assert caplog.text.count("cannot write log-mel caches") == 1  # one warning, not one per clip
    assert not list((tmp_path / "audio").glob("*.npz"))


def test_the_datamodule_reads_a_store_with_cached_log_mels_and_offscreen_negatives(tmp_path: Path) -> None:
    from openavs_st.data.transforms import ClipTransform
    from openavs_st.datamodule import ClipDataset, SourceSpec

    w = StoreWriter(tmp_path, labeler="x")
    for i, category in enumerate(("dog", "cat", "dog")):
        clip, masks = make_clip(f"c{i}", t=2, size=16, seed=i)
        clip.meta["category"] = category
        w.write(clip, masks)
    clips = SourceSpec("pseudo", str(tmp_path)).open("train")
    data = ClipDataset(clips, ClipTransform(16), negative_ratio=0.5, negative_kinds=("offscreen",), seed=0)
    items = [data[i] for i in range(len(data))]
    assert len(items) == 6 and sum(int(x["negative"]) for x in items) == 3
    assert all(x["audio"].shape == (2, 1, 96, 64) for x in items)
    assert len(list((tmp_path / "audio").glob("*.logmel.npz"))) == 3
