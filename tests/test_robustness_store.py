"""The store and the labeler under attack and accident (issue "Nothing leaks, nothing is lost"): one secret
policy for every file and log line, one writer per shard, no temporary file left by a kill, stores of
mixed clip lengths that train, silent audio, the frame count at integer rates, the stored frame size cap,
errors that name the clip and file, and the clips whose LLM answers all fell back.

The CLIs run for real (``python -m pseudolabel``, ``python train.py``) on files written into a temporary
folder, with the tiny random models of ``test_openavs_pipeline.py`` and a chat-completions server on
127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_server import ChatCompletionsServer, Reply, completion
from test_openavs_pipeline import model_overrides, models  # noqa: F401 - models is a fixture

from openavs_st.data.redact import scrub_secrets, scrub_text
from openavs_st.data.store import StoreWriter, load_records
from openavs_st.data.store_lock import StoreLockedError
from openavs_st.data.synthetic import write_synthetic

pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
ENV_SECRET = "envSecretValue0123"  # planted as OPENAI_API_KEY
OVERRIDE_SECRET = "overrideSecret4567"  # planted as +notes.api_key=...
URL_PASSWORD = "urlPassw0rd89"  # planted in labeler.llm.base_url


@pytest.fixture(scope="module")
def s4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("s4"), ("s4",), splits={"test": 4}, size=40, seed=3)["s4"]


class Endpoint(ChatCompletionsServer):
    """A chat-completions server answering ``<answer>dog</answer>`` for every frame of a request.

    ``fail_first``: the first n requests get HTTP 500 quoting the request's Authorization header (a careless
    proxy). ``unusable_first``: the next n get an answer with no ``<answer>`` in it. ``hold``: requests wait until :meth:`release` (a run that stays busy while the test looks at it).
    """

    usage = (10, 2)

    def __init__(self, *, fail_first: int = 0, unusable_first: int = 0, hold: bool = False) -> None:
        self.requests = 0
        self.arrived = 0
        self.frames_asked: list[int] = []  # frames each request asked about
        self.fail_first = fail_first
        self.unusable_first = unusable_first
        self.released = threading.Event()
        if not hold:
            self.released.set()
        super().__init__()

    def respond(self, body: dict[str, Any], request: Any) -> Reply:
        asked = re.findall(r"<frame(\d+)>", body["messages"][-1]["content"])
        self.frames_asked.append(len(asked))
        self.arrived += 1
        self.released.wait(120)
        self.requests += 1
        if self.requests <= self.fail_first:
            return 500, {"error": {"message": f"upstream refused {request.headers.get('Authorization')}"}}, {}
        usable = self.requests > self.fail_first + self.unusable_first
        text = "\n".join("<answer>dog</answer>" for _ in asked or [0]) if usable else "I cannot tell."
        return 200, completion(text, body["model"], self.usage), {}

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        super().close()


def label_command(models: dict[str, Path], s4: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pseudolabel", "labeler=openavs_lite", "input=avsbench", "data=avsbench_s4",
            f"data.root={s4}", "split=test", f"output={out}", *model_overrides(models), *extra]


def llm_overrides(url: str, cache: Path, *extra: str) -> list[str]:
    return ["labeler.llm.strategy=prompt_frame", f"labeler.llm.base_url={url}", f"labeler.llm.cache_dir={cache}",
            "labeler.llm.concurrency=1", "+labeler.llm.backoff_base_s=0.01", *extra]


def run_cli(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
                          capture_output=True, text=True, timeout=600)


def label_via(server: Endpoint, models: dict[str, Path], data_root: Path, out: Path, *extra: str,
              userinfo: str = "", api_key: str = "unused") -> subprocess.CompletedProcess:
    """``python -m pseudolabel`` on an AVSBench S4 split into ``out``, its LLM at ``server`` (closed after)."""
    try:
        overrides = llm_overrides(server.base_url(userinfo), out.parent / "cache", *extra)
        return run_cli(label_command(models, data_root, out, *overrides), OPENAI_API_KEY=api_key)
    finally:
        server.close()


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --- 1. one secret policy ------------------------------------------------------------------------------


def test_secret_policy_masks_keys_key_values_and_url_credentials() -> None:
    assert scrub_text("http://user:pass@host/v1") == "http://user:***@host/v1"
    assert scrub_text("https://ghp_tok@example.org/x.git") == "https://***@example.org/x.git"
    assert scrub_text("GET http://h/v1?api_key=k1&x=1&token=k2") == "GET http://h/v1?api_key=***&x=1&token=***"
    assert scrub_text("python train.py +notes.api_key=abc hf.token=def max_tokens=5") == (
        "python train.py +notes.api_key=*** hf.token=*** max_tokens=5"
    )
    assert scrub_text('{"password": "p", "prompt_tokens": 3}') == '{"password": "***", "prompt_tokens": 3}'
    assert scrub_text("Authorization: Bearer abcdef123") == "Authorization: *** ***"
    assert scrub_text("key sk-abcdefgh12 and hf_abcdefgh12") == "key *** and ***"
    assert scrub_text("api_key_env: OPENAI_API_KEY at 12:30") == "api_key_env: OPENAI_API_KEY at 12:30"
    cfg = {"llm": {"api_key": "x", "token": "", "base_url": "http://u:pw@h/v1"}, "tags": ["hf_abcdefgh12"], "n": 1}
    assert scrub_secrets(cfg) == {"llm": {"api_key": "***", "token": "", "base_url": "http://u:***@h/v1"},
                                  "tags": ["***"], "n": 1}


def test_log_records_of_every_logger_are_scrubbed_once_installed(tmp_path: Path) -> None:
    """httpx logs each request's URL with its password at INFO; exception texts quote URLs too."""
    server = Endpoint()
    script = (
        "import logging, httpx\n"
        "from openavs_st.data.redact import install_log_scrubbing\n"
        "install_log_scrubbing()\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        f"httpx.post({server.base_url('bob:' + URL_PASSWORD + '@') + '/chat/completions'!r}, json={{'model': 'm', 'messages': [{{'role': 'user', 'content': 'x'}}]}})\n"
        "try:\n"
        f"    raise ValueError('cannot reach http://bob:{URL_PASSWORD}@h/v1')\n"
        "except ValueError:\n"
        "    logging.getLogger('openai').exception('request failed')\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    assert "HTTP Request: POST http://bob:***@127.0.0.1" in proc.stderr  # httpx logged it, scrubbed
    assert "cannot reach http://bob:***@h/v1" in proc.stderr
    assert URL_PASSWORD not in proc.stderr


def test_labeler_writes_and_logs_none_of_three_planted_secrets(models, s4: Path, tmp_path: Path) -> None:
    """An env key, an override and a URL password: none in any file of the store, the LLM cache or the
    output. The first clip's requests fail (HTTP 500 quoting the Authorization header, retried once), so its
    failure record and the retry warning name the endpoint too."""
    out, cache = tmp_path / "store", tmp_path / "cache"
    proc = label_via(Endpoint(fail_first=2), models, s4, out, "+labeler.llm.max_retries=1",
                     f"+notes.api_key={OVERRIDE_SECRET}", userinfo=f"labeler:{URL_PASSWORD}@", api_key=ENV_SECRET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = load_records(out)
    failed = [r for r in records.values() if r["status"] != "ok"]
    assert len(records) == 4 and len(failed) == 1
    assert "http://labeler:***@127.0.0.1" in failed[0]["status"] and "HTTP 500" in failed[0]["status"]
    assert "retry 1/1" in proc.stderr and "http://labeler:***@127.0.0.1" in proc.stderr
    saved = (out / "pseudolabel_config.yaml").read_text()
    assert "base_url: http://labeler:***@127.0.0.1" in saved and "api_key: '***'" in saved
    written = [p for root in (out, cache) for p in root.rglob("*") if p.is_file()]
    assert len(written) > 20
    for secret in (ENV_SECRET, OVERRIDE_SECRET, URL_PASSWORD):
        assert secret not in proc.stdout + proc.stderr
        for path in written:
            assert secret.encode() not in path.read_bytes(), (secret, path)


# --- 2. one writer per shard manifest ------------------------------------------------------------------


def test_a_second_writer_of_a_shard_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = StoreWriter(tmp_path, labeler="x")
    with pytest.raises(StoreLockedError, match=rf"pid {os.getpid()} on host .*manifest\.jsonl"):
        StoreWriter(tmp_path, labeler="x")
    with StoreWriter(tmp_path, labeler="x", shard=(1, 2)):  # another shard's manifest: its own lock
        pass
    first.close()
    StoreWriter(tmp_path, labeler="x").close()  # released
    holder = json.loads((tmp_path / "manifest.jsonl.lock").read_text())
    assert holder["pid"] == os.getpid() and {"host", "since"} <= set(holder)


def test_two_concurrent_labeler_runs_on_one_store_one_is_refused(models, s4: Path, tmp_path: Path) -> None:
    server = Endpoint(hold=True)  # the first run waits for its first LLM answer, holding the store
    out = tmp_path / "store"
    command = label_command(models, s4, out, *llm_overrides(server.url, tmp_path / "cache"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "unused"}
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while server.arrived == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.arrived and first.poll() is None, "the first run never reached the LLM stage"
        second = run_cli(command, OPENAI_API_KEY="unused")
        assert second.returncode == 2, second.stderr[-2000:]
        assert re.search(rf"error: .*another writer \(pid {first.pid} on host \S+, since .*manifest\.jsonl", second.stderr)
    finally:
        server.release()
        _, stderr = first.communicate(timeout=300)
        server.close()
    assert first.returncode == 0, stderr[-2000:]
    ids = [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4  # every clip once


# --- 3. no temporary file survives a kill ---------------------------------------------------------------

KILL_DURING_CONFIG_WRITE = """
import os, pathlib, signal, sys
from pseudolabel.__main__ import main

write_text = pathlib.Path.write_text

def killed_while_writing_the_config(self, text, *args, **kwargs):
    if self.name.startswith(".pseudolabel_config.yaml."):  # the temporary file of the store's config
        write_text(self, text[: len(text) // 2], *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return write_text(self, text, *args, **kwargs)

pathlib.Path.write_text = killed_while_writing_the_config
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_the_config_write_leaves_no_temporary_file_after_a_rerun(models, s4: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    command = label_command(models, s4, out, "llm=none")
    killed = run_cli([sys.executable, "-c", KILL_DURING_CONFIG_WRITE, *command[3:]])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = temporaries(out)
    assert [p.parent for p in left] == [out] and left[0].name.startswith(".pseudolabel_config.yaml.shard0of1.")
    assert not (out / "pseudolabel_config.yaml").exists()

    rerun = run_cli(command)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert temporaries(out) == [] and (out / "pseudolabel_config.yaml").is_file()
    assert len(load_records(out)) == 4


def test_a_reader_sweeps_the_log_mel_temporaries_a_killed_reader_left(tmp_path: Path) -> None:
    from openavs_st.data.clip import Clip
    from openavs_st.data.store import PseudoLabelStore

    with StoreWriter(tmp_path, labeler="x") as writer:
        writer.write(Clip("a", np.zeros((2, 8, 8, 3), np.uint8), np.zeros(32000, np.float32), 16000), np.zeros((2, 8, 8)))
    old, fresh = tmp_path / "audio/.a.logmel.npz.logmel.k1ll3d.tmp", tmp_path / "audio/.a.logmel.npz.logmel.wr1t1ng.tmp"
    for path in (old, fresh):
        path.write_bytes(b"PK partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert PseudoLabelStore(tmp_path)[0].log_mel.shape == (2, 1, 96, 64)
    assert not old.exists() and fresh.exists()  # a fresh one may be another reader's, being written now


# --- 4. a store of clips of different lengths trains ----------------------------------------------------

VIDEO_SECONDS = {"short": 3, "medium": 5, "long": 7}


@pytest.fixture(scope="module")
def video_store(models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store labelled by ``python -m pseudolabel`` from real mp4s of 3, 5 and 7 seconds."""
    from openavs_st.data.video import write_video

    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name, seconds in VIDEO_SECONDS.items():
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(seconds * 16000) / 16000)).astype(np.float32)
        frames = rng.integers(0, 255, (seconds * 4, 48, 64, 3), dtype=np.uint8)
        write_video(root / "in" / f"{name}.mp4", frames, 4, (tone, 16000))
    store = root / "store"
    proc = run_cli([sys.executable, "-m", "pseudolabel", "labeler=openavs_lite", f"input={root / 'in'}",
                    f"output={store}", "llm=none", *model_overrides(models)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store


@pytest.fixture(scope="module")
def eval_s4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("eval"), ("s4",), splits={"val": 2, "test": 2}, size=48)["s4"]


def train_command(store: Path, eval_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "backbone=tpavi", "backbone.preset=tiny", "data=pseudo", f"data.root={store}",
            "data.eval.name=avsbench_s4", f"data.eval.root={eval_root}", "data.num_workers=0", "data.batch_size=2",
            "trainer=cpu", "logger=none", "export.enabled=false", "test.run=false", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *extra]


def test_a_store_of_videos_of_different_lengths_trains_one_epoch(video_store: Path, eval_s4: Path, tmp_path: Path) -> None:
    import torch

    from openavs_st.data.store import PseudoLabelStore

    records = load_records(video_store)
    assert {r["id"]: r["num_frames"] for r in records.values()} == VIDEO_SECONDS
    windows = PseudoLabelStore(video_store, window=5)
    assert windows.ids == ["long@0", "long@5", "medium", "short"]
    padded = windows[3]  # 3 frames + 2 of padding
    assert padded.frame_valid.tolist() == padded.has_label.tolist() == [True] * 3 + [False] * 2
    assert padded.log_mel.shape == (5, 1, 96, 64) and not padded.masks[3:].any()

    proc = subprocess.run(train_command(video_store, eval_s4, tmp_path / "run"), cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 2)  # one epoch: 4 windows in batches of 2

    whole = subprocess.run(train_command(video_store, eval_s4, tmp_path / "whole", "data.num_frames=null"),
                           cwd=REPO, capture_output=True, text=True, timeout=900)
    assert whole.returncode != 0 and "the clips have 3, 5, 7 frames" in whole.stderr
    assert "data.num_frames=N" in whole.stderr


# --- 7. an error names the clip and the file --------------------------------------------------------------


def test_one_wrong_size_mask_fails_training_naming_the_clip_and_file(video_store: Path, eval_s4: Path, tmp_path: Path) -> None:
    import shutil

    from PIL import Image

    from openavs_st.data.clip import ClipError
    from openavs_st.data.store import PseudoLabelStore

    store = tmp_path / "store"
    shutil.copytree(video_store, store)
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(store / "masks" / "medium" / "2.png")
    with pytest.raises(ClipError, match=r"clip 'medium': mask masks/medium/2\.png is 20x30 .* frames are 64x48"):
        PseudoLabelStore(store).read_masks(load_records(store)["medium"])
    proc = subprocess.run(train_command(store, eval_s4, tmp_path / "run"), cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode != 0
    assert "clip 'medium': mask masks/medium/2.png is 20x30 (width x height) but the clip's frames are 64x48" in proc.stderr
    assert str(store) in proc.stderr


# --- 6. silent audio, the frame count at integer rates, the stored frame size cap -----------------------


def test_silent_audio_gives_empty_masks_without_describing_nothing(models, tmp_path: Path) -> None:
    """A 0-sample wav, an all-zero wav and a wav that ends after 2 of 5 seconds: their silent seconds are
    recorded as ``audio: silent`` with no phrase and an empty mask, and neither the ALM nor the LLM is asked
    about them; the sounding clip and seconds are labelled as usual."""
    import soundfile as sf

    root = write_synthetic(tmp_path / "data", ("s4",), splits={"test": 4}, size=40, seed=3)["s4"]
    wavs = {p.stem: p for p in root.rglob("*.wav")}
    sf.write(wavs["s4_test_000"], np.zeros(0, np.float32), 16000, subtype="PCM_16")
    sf.write(wavs["s4_test_001"], np.zeros(5 * 16000, np.float32), 16000, subtype="PCM_16")
    wave, sr = sf.read(wavs["s4_test_002"], dtype="float32")
    sf.write(wavs["s4_test_002"], wave[: 2 * sr], sr, subtype="PCM_16")
    server = Endpoint()
    out = tmp_path / "store"
    proc = label_via(server, models, root, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = load_records(out)
    assert all(r["status"] == "ok" for r in records.values())
    for clip_id in ("s4_test_000", "s4_test_001"):
        rec = records[clip_id]
        assert [f.get("audio") for f in rec["frames_info"]] == ["silent"] * 5
        assert all(f["phrases"] == [] and f["boxes"] == [] for f in rec["frames_info"])
        assert rec["mask_area"] == [0.0] * 5 and "alm_s" not in rec["timings"] and "llm" not in rec
    partial = records["s4_test_002"]["frames_info"]
    assert [f.get("audio") for f in partial] == [None, None, "silent", "silent", "silent"]
    assert [f.get("llm_status") for f in partial] == ["ok", "ok", None, None, None]
    assert [f["phrases"] for f in partial] == [["dog"], ["dog"], [], [], []]
    assert [f.get("audio") for f in records["s4_test_003"]["frames_info"]] == [None] * 5
    assert sorted(server.frames_asked) == [2, 5]  # the 2 sounding seconds, and the ordinary clip
    summary = json.loads((out / "summary.json").read_text())["store"]
    assert summary["clips_ok"] == 4 and summary["empty_mask_frames"] >= 13


def test_a_five_second_video_at_one_fps_is_five_frames_and_big_frames_are_capped(models, tmp_path: Path) -> None:
    from PIL import Image

    from openavs_st.data.video import read_video_clip, write_video

    colours = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0], [0, 250, 250]], np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (5, 96, 128, 3)).copy()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(5 * 16000) / 16000)).astype(np.float32)
    video = write_video(tmp_path / "in" / "slow.mp4", frames, 1, (tone, 16000))
    clip = read_video_clip(video)
    assert clip.num_frames == 5 and clip.meta["duration"] == pytest.approx(5.0)
    assert np.abs(clip.frames[:, 48, 64].astype(int) - colours).max() < 40  # frame t is second t, none repeated

    out = tmp_path / "store"
    proc = run_cli([sys.executable, "-m", "pseudolabel", "labeler=openavs_lite", f"input={tmp_path / 'in'}",
                    f"output={out}", "llm=none", "store.max_side=64", *model_overrides(models)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = load_records(out)["slow"]
    assert rec["num_frames"] == 5 and rec["original_size"] == [96, 128]
    for key in ("frames", "masks"):
        assert {Image.open(out / path).size for path in rec[key]} == {(64, 48)}


def test_the_store_caps_frames_at_1024_pixels_by_default(tmp_path: Path) -> None:
    from PIL import Image

    from openavs_st.data.clip import Clip
    from openavs_st.data.store import PseudoLabelStore

    frames = np.zeros((1, 1100, 40, 3), np.uint8)
    masks = np.zeros((1, 1100, 40), bool)
    masks[0, :550] = True
    with StoreWriter(tmp_path, labeler="x") as writer:
        rec = writer.write(Clip("tall", frames), masks)
        writer.write(Clip("small", frames[:, :64]), masks[:, :64])
    assert rec["original_size"] == [1100, 40] and Image.open(tmp_path / rec["frames"][0]).size == (37, 1024)
    assert rec["mask_area"] == [pytest.approx(0.5, abs=0.01)]
    store = PseudoLabelStore(tmp_path)
    assert store[1].masks.shape == (1, 1024, 37) and "original_size" not in load_records(tmp_path)["small"]


# --- 5. clips whose every LLM answer was unusable are counted -----------------------------------------------


def test_clips_whose_every_llm_answer_fell_back_are_counted_in_the_summary(models, s4: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    # The first clip's one request (prompt_frame: one per clip) gets an unusable answer.
    proc = label_via(Endpoint(unusable_first=1), models, s4, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fell_back = [r for r in load_records(out).values() if r["llm"]["fallback_frames"]]
    assert len(fell_back) == 1 and len(fell_back[0]["llm"]["fallback_frames"]) == 5
    assert all(f["llm_status"] == "fallback:missing" for f in fell_back[0]["frames_info"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["llm_fallback_clips"] == summary["store"]["llm_fallback_clips"] == 1
    assert summary["store"]["clips_ok"] == 4
    assert re.search(r"clips with every LLM answer unusable\s*│\s*1\s*│\s*1", proc.stderr), proc.stderr[-2000:]
