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
    again = StoreWriter(tmp_path, labeler="x")
    assert again.pending(["a", "b", "c"]) == ["c"]
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
    assert load_records(tmp_path)[cid]["status"] == "ok"
    assert StoreWriter(tmp_path, labeler="x", retry_failed=True).pending([cid]) == []
    assert [c.id for c in PseudoLabelStore(tmp_path)] == [cid]


def test_a_clip_id_that_looks_like_a_key_is_kept(tmp_path: Path) -> None:
    cid = "talk-sk-Ab3dEf9hIj"  # a file stem / YouTube-style id matching the API-key pattern
    w = StoreWriter(tmp_path, labeler="x")
    w.write(*make_clip(cid, t=2, size=8))
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
    }
    assert summarize([]) == dict.fromkeys(SUMMARY_KEYS, 0) | {"mean_mask_area": 0.0, "llm_cost_usd": 0.0}
    assert summarize(iter(records)) == s  # any iterable, one pass
