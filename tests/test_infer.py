"""``infer.py``: masks, overlay videos and metrics for a video, a folder of videos and a dataset split."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import openavs_st
from openavs_st.config import ConfigError, compose
from openavs_st.data.avsbench import open_reader
from openavs_st.data.synthetic import write_synthetic
from openavs_st.data.transforms import ClipTransform
from openavs_st.data.video import read_video_clip, write_video
from openavs_st.export import export_module, load_checkpoint
from openavs_st.inference import run_inference

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 64  # the tiny model's input size


def tone_video(path: Path, seconds: int, height: int, width: int, channels: int, seed: int) -> Path:
    """A 10 fps video of a square moving over a gradient, with a 16 kHz tone track."""
    rng = np.random.default_rng(seed)
    fps, rate = 10, 16000
    frames = np.empty((seconds * fps, height, width, 3), dtype=np.uint8)
    frames[:] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :, None]
    for i, (y, x) in enumerate(rng.integers(0, [height - 16, width - 16], size=(len(frames), 2))):
        frames[i, y : y + 16, x : x + 16] = (255, 200, 0)
    t = np.arange(seconds * rate) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (440, 1250)[:channels]], axis=1)
    return write_video(path, frames, fps, audio=(wave.astype(np.float32), rate))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    tone_video(folder / "long.mp4", seconds=7, height=64, width=80, channels=2, seed=0)  # 2 windows of T=5
    tone_video(folder / "short.mp4", seconds=3, height=48, width=48, channels=1, seed=1)
    return folder


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint: Path, videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained tiny TPAVI, its output bias shifted so that about half the pixels of the long
    video are foreground (a random-init model predicts one class everywhere), exported."""
    module, cfg = load_checkpoint(tiny_checkpoint)
    net = module.net.eval()
    clip = read_video_clip(videos / "long.mp4", num_frames=5)
    frames = torch.from_numpy(ClipTransform(SIZE)(clip).frames)[None]
    with torch.no_grad():
        median = net(frames, torch.from_numpy(clip.log_mel)[None]).logits.median()
        net.output_conv[-1].bias -= median
    return export_module(module, tmp_path_factory.mktemp("model") / "export", cfg=cfg)


def infer_cfg(*overrides: str):
    return compose(["progress=false", *overrides], config_name="infer")


def png_masks(folder: Path) -> list[np.ndarray]:
    return [np.array(Image.open(folder / f"{t}.png")) for t in range(len(list(folder.glob("*.png"))))]


def test_cli_on_one_video_writes_masks_and_overlay(model_dir: Path, videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    video = videos / "long.mp4"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "infer.py"), f"model={model_dir}", f"input={video}", f"out={out}",
         "progress=false"],
        check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    masks = png_masks(out / "long")
    assert len(masks) == 7  # 7 s of video: windows [0..4] and [5, 6] + padding, padding dropped
    assert all(m.shape == (64, 80) and set(np.unique(m)) <= {0, 255} for m in masks)

    # Expected: frames resized to 64x64 and normalised, windows [0..4] and [5, 6, 6, 6, 6] in one
    # batch, logits of the real frames resized back to 64x80 bilinearly, sigmoid > 0.5.
    net = openavs_st.load_model(model_dir)
    clip = read_video_clip(video)
    windows = np.array([[0, 1, 2, 3, 4], [5, 6, 6, 6, 6]])
    frames = torch.from_numpy(ClipTransform(SIZE)(clip).frames[windows])
    with torch.no_grad():
        logits = net(frames, torch.from_numpy(clip.log_mel[windows])).logits
    logits = torch.cat([logits[0], logits[1, :2]])
    expected = torch.sigmoid(F.interpolate(logits, size=(64, 80), mode="bilinear", align_corners=False)[:, 0]) > 0.5
    assert 0.05 < expected.float().mean() < 0.95  # a mask worth comparing
    np.testing.assert_array_equal(np.stack(masks), expected.numpy().astype(np.uint8) * 255)

    with av.open(str(out / "long.mp4")) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.channels == 2  # the original stereo track
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 7 * 5 and decoded[0].shape == (64, 80, 3)  # each frame for 1 s at 5 fps
    assert (out / ".hydra" / "config.yaml").is_file()


def test_folder_of_two_videos(model_dir: Path, videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_inference(infer_cfg(f"model={model_dir}", f"input={videos}", f"out={out}"))
    assert result["clips"] == 2 and result["metrics"] is None
    assert [m.shape for m in png_masks(out / "long")] == [(64, 80)] * 7
    assert [m.shape for m in png_masks(out / "short")] == [(48, 48)] * 3
    for name in ("long", "short"):
        with av.open(str(out / f"{name}.mp4")) as container:
            assert container.streams.video and container.streams.audio
    assert not (out / "metrics.json").exists()


def test_dataset_split_from_a_checkpoint_writes_metrics(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "data", ("s4",), splits={"train": 1, "val": 1, "test": 3}, size=SIZE)["s4"]
    out = tmp_path / "out"
    cfg = infer_cfg(f"checkpoint={tiny_checkpoint}", "data=avsbench_s4", f"data.root={root}", "split=test",
                    f"out={out}", "batch_size=2")
    result = run_inference(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"test/miou_avsbench", "test/f_avsbench", "test/f_pooled", "test/fpr"}
    assert metrics == result["metrics"] and all(0.0 <= v <= 1.0 for v in metrics.values())

    # mIoU and FPR by hand from the written masks and the ground truth (frames are 64x64, the model
    # size, so the PNGs hold exactly the binarised logits the metrics saw).
    ious, fractions = [], []
    for clip in open_reader("avsbench_s4", root, "test"):
        predicted = np.stack(png_masks(out / clip.id)) > 0
        truth = clip.masks > 0
        for p, g in zip(predicted, truth):
            if g.any():
                ious.append((p & g).sum() / ((p | g).sum() + 1e-7))
            else:  # AVSBench: an empty ground truth scores the background predicted as background
                ious.append((~p).sum() / (p.size + 1e-7))
            fractions.append(p.sum() / (p.size + 1e-7))
        assert (out / f"{clip.id}.mp4").is_file()
    assert len(ious) == 15
    assert metrics["test/miou_avsbench"] == pytest.approx(np.mean(ious), abs=1e-9)
    assert metrics["test/fpr"] == pytest.approx(np.mean(fractions), abs=1e-9)


def test_missing_input_and_model_are_named(model_dir: Path, videos: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_video.mp4"
    with pytest.raises(ConfigError, match=re.escape(f"input={missing} does not exist")):
        run_inference(infer_cfg(f"model={model_dir}", f"input={missing}", f"out={tmp_path / 'o1'}"))
    with pytest.raises(ConfigError, match=re.escape(f"model={tmp_path / 'no_model'} does not exist")):
        run_inference(infer_cfg(f"model={tmp_path / 'no_model'}", f"input={videos}", f"out={tmp_path / 'o2'}"))
    with pytest.raises(ConfigError, match="give exactly one input"):
        run_inference(infer_cfg(f"model={model_dir}", f"out={tmp_path / 'o3'}"))
    with pytest.raises(ConfigError, match="exactly one of model=EXPORT_DIR .* or checkpoint=PATH"):
        run_inference(infer_cfg(f"input={videos}", f"out={tmp_path / 'o4'}"))


def test_inputs_come_from_the_clip_sources(videos: Path, tmp_path: Path) -> None:
    """input=FOLDER is the ``videos`` clip source (sub-folders included, hidden files left out, the shared
    suffix list); data=... opens the split as training does."""
    import shutil

    from openavs_st.data.sources import VideoFolderSource
    from openavs_st.inference import open_inputs

    folder = tmp_path / "nested"
    (folder / "day1").mkdir(parents=True)
    shutil.copy(videos / "short.mp4", folder / "day1" / "short.MOV")
    shutil.copy(videos / "long.mp4", folder / "long.mp4")
    (folder / "._long.mp4").write_bytes(b"resource fork")  # macOS metadata, not a video
    clips, split = open_inputs({"input": str(folder), "missing_audio": "error"})
    assert isinstance(clips, VideoFolderSource) and split is None
    assert clips.ids == ["short", "long"] and len(clips) == 2 and clips[0].num_frames == 3
    shutil.copy(videos / "short.mp4", folder / "short.mkv")
    with pytest.raises(ConfigError, match=r"two video files map to the clip id 'short'"):
        open_inputs({"input": str(folder)})
    with pytest.raises(ConfigError, match="missing_audio must be 'error' or 'silence'"):
        open_inputs({"input": str(folder), "missing_audio": "skip"})
    root = write_synthetic(tmp_path / "data", ("s4",), splits={"train": 1, "val": 1, "test": 2}, size=SIZE)["s4"]
    clips, split = open_inputs({"data": {"name": "avsbench_s4", "root": str(root)}, "split": "test"})
    assert split == "test" and clips.ids == open_reader("avsbench_s4", root, "test").ids
    with pytest.raises(ConfigError, match=r"data\.name=avsbench_avss cannot be loaded"):
        open_inputs({"data": {"name": "avsbench_avss", "root": str(root)}})
