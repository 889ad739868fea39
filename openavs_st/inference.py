"""Inference behind ``python infer.py``: masks, overlay videos and metrics for videos or a dataset split.

Inputs (one of):

- ``input=video.mp4`` or ``input=folder/`` (every video file under it, sub-folders included, in path
  order; the clip id is the file stem): the ``videos`` clip source of :mod:`openavs_st.data.sources`,
  which reads each video with :func:`openavs_st.data.video.read_video_clip`, one frame per second at the
  AVSBench instant (15/16 into each second), with its VGGish log-mels;
- ``data=<dataset> data.root=... split=test``: a dataset split, opened as training opens it
  (:class:`openavs_st.datamodule.SourceSpec`: AVSBench readers, a pseudo-label store, synthetic).

The model comes from an export folder (``model=DIR``, :func:`openavs_st.export.load_model`, no
Lightning) or a Lightning checkpoint (``checkpoint=PATH``). Frames are resized to the model's input
size and ImageNet-normalised (:class:`~openavs_st.data.transforms.ClipTransform`, as in training). A
clip is cut into consecutive windows of the model's T frames; the last window is padded by
repeating the clip's last frame and its log-mel example (as ``read_video_clip`` pads), and the
padding's predictions are dropped. ``batch_size`` windows, from one or several clips, go through one
forward.

Outputs under ``out``:

- ``<clip_id>/<t>.png``: the mask of frame t (0/255) at the frame's original size: logits resized
  bilinearly, then ``sigmoid > 0.5`` (AVSBench's binarisation);
- ``<clip_id>.mp4``: the frames with the mask tinted, each frame repeated to ``overlay_fps``, with
  the original audio track (all its channels for a video file);
- ``metrics.json`` (dataset splits with ground truth): ``<split>/miou_avsbench``,
  ``<split>/f_avsbench``, ``<split>/f_pooled``, ``<split>/fpr`` computed exactly as
  ``trainer.test`` does (model resolution, ground truth resized with nearest neighbour, the recipe's
  F-score group size, frames with ``has_label & frame_valid`` only).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from openavs_st import export
from openavs_st.data.audio_features import (
    AudioFeatures,
    LogMelFeatures,
    make_audio_features,
)
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError
from openavs_st.data.sources import VIDEO_SUFFIXES, open_source
from openavs_st.data.store import safe_clip_dir
from openavs_st.data.transforms import ClipTransform
from openavs_st.metrics import FalsePositiveRate, FScore, MaskIoU

log = logging.getLogger(__name__)

OVERLAY_COLOUR = np.array([255, 32, 32], dtype=np.float32)  # RGB tint of the predicted mask
OVERLAY_ALPHA = 0.5
METRICS_FILE = "metrics.json"


# ----------------------------------------------------------------------------------- model


@dataclass
class InferenceModel:
    """A backbone ready for inference and what it expects.

    Attributes:
        net: the backbone, eval mode, on ``device``.
        num_frames: T of one forward window.
        size: ``(H, W)`` frames are resized to.
        recipe: the recipe as a dict (F-score group size and sigmoid use for metrics).
        device: where ``net`` runs.
    """

    net: nn.Module
    num_frames: int
    size: tuple[int, int]
    recipe: dict[str, Any]
    device: torch.device
    #: what the backbone hears, from the clip's log-mel examples (``input.audio_features`` of the export)
    audio_features: AudioFeatures = field(default_factory=LogMelFeatures)


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` as a device, or a :class:`ConfigError` if unavailable."""
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device={device!r} is not a device ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: CUDA is not available on this machine (use device=cpu)")
    return resolved


def load_inference_model(
    model: str | None = None,
    checkpoint: str | None = None,
    *,
    device: str = "cpu",
    input_size: int | None = None,
) -> InferenceModel:
    """The backbone of an export folder (``model``) or a Lightning checkpoint (``checkpoint``).

    Frame size and T come from the export's ``config.yaml`` (or, for a checkpoint, from its
    training run's config, see :func:`openavs_st.export.load_checkpoint`); ``input_size``
    overrides the frame size.

    Raises:
        ConfigError: neither or both of ``model``/``checkpoint`` given, or the path does not exist.
    """
    if bool(model) == bool(checkpoint):
        raise ConfigError("give exactly one of model=EXPORT_DIR (an export folder) or checkpoint=PATH (a .ckpt)")
    torch_device = resolve_device(device)
    if model:
        if not Path(model).exists():
            raise ConfigError(f"model={model} does not exist")
        net = export.load_model(model, torch_device)
        config = export.read_export_config(model)
    else:
        if not Path(checkpoint).is_file():
            raise ConfigError(f"checkpoint={checkpoint} does not exist")
        module, train_cfg = export.load_checkpoint(checkpoint)
        net = module.net.to(torch_device).eval()
        config = export.export_config(module, train_cfg)
    size = (int(input_size), int(input_size)) if input_size else tuple(int(s) for s in config["input"]["size"])
    features = make_audio_features(config["input"].get("audio_features") or "log_mel")
    return InferenceModel(
        net, int(config["input"]["num_frames"]), size, dict(config["recipe"]), torch_device, features
    )


# ---------------------------------------------------------------------------------- inputs


def open_inputs(cfg: Mapping[str, Any]) -> tuple[Sequence[Clip], str | None]:
    """The clips to run on and the split name to prefix metrics with (``None``: no metrics).

    ``cfg`` holds ``input`` or ``data`` (+ ``split``), and ``missing_audio``.

    Raises:
        ConfigError: neither or both inputs given, a missing path, a bad ``missing_audio``.
    """
    source, data = cfg.get("input"), cfg.get("data")
    if bool(source) == bool(data):
        raise ConfigError(
            "give exactly one input: input=VIDEO_OR_FOLDER, or data=<dataset> data.root=... split=test"
        )
    if source:
        missing_audio = str(cfg.get("missing_audio", "error"))
        if missing_audio not in ("error", "silence"):
            raise ConfigError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
        return open_source({"kind": "videos", "path": str(source), "missing_audio": missing_audio}), None
    from openavs_st.datamodule import SourceSpec

    split = str(cfg.get("split", "test"))
    spec = SourceSpec.from_config(data, "data")
    if spec.semantic:
        # infer.py writes and scores binary masks; 71-class models are scored by train.py
        raise ConfigError(
            f"data.name={spec.name} cannot be loaded by infer.py (binary masks): use data=avsbench_avss_binary, "
            "or score a 71-class AVSS model with python train.py train=false ckpt_path=..."
        )
    return spec.open(split), split


def original_audio(clip: Clip) -> tuple[np.ndarray, int] | None:
    """The clip's audio for the overlay video: a video file's track with its channels (mono beyond
    two channels), else the clip's waveform; ``None`` if there is none."""
    from openavs_st.data.audio import load_audio

    source = Path(str(clip.meta.get("source", "")))
    if source.suffix.lower() in VIDEO_SUFFIXES and source.is_file() and not clip.meta.get("audio_missing"):
        samples, sample_rate = load_audio(source, mono=False)
        if samples.shape[1] <= 2:
            return samples, sample_rate
    if clip.waveform is None or clip.meta.get("audio_missing"):
        return None
    return clip.waveform, int(clip.sample_rate)


# ------------------------------------------------------------------------------- prediction


@dataclass
class _PendingClip:
    clip: Clip
    masks: np.ndarray  # [T, h, w] ground truth at the model resolution
    windows: list[torch.Tensor | None]  # logits per window [n_real, K, h, w], filled as they come

    @property
    def done(self) -> bool:
        return all(w is not None for w in self.windows)


@dataclass
class _WindowBatch:
    frames: list[np.ndarray] = field(default_factory=list)  # [T, 3, h, w] each
    audio: list[np.ndarray] = field(default_factory=list)  # [T, 1, 96, 64] each
    valid: list[np.ndarray] = field(default_factory=list)  # [T] each
    targets: list[tuple[_PendingClip, int, int]] = field(default_factory=list)  # (clip, window, n_real)


def window_indices(num_frames: int, window: int) -> list[np.ndarray]:
    """Frame indices of consecutive windows of ``window`` frames covering ``num_frames``; the last
    one is padded by repeating the last frame: ``window_indices(7, 5) -> [[0..4], [5, 6, 6, 6, 6]]``."""
    return [np.minimum(np.arange(start, start + window), num_frames - 1) for start in range(0, num_frames, window)]


def predict(
    model: InferenceModel, clips: Iterable[Clip], batch_size: int
) -> Iterator[tuple[Clip, torch.Tensor, np.ndarray]]:
    """Run ``model`` over ``clips`` in batches of ``batch_size`` windows.

    Yields, in clip order, ``(clip, logits [T_clip, K, h, w] float32 on the CPU at the model
    resolution, ground-truth masks [T_clip, h, w] uint8 at the model resolution)``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    transform = ClipTransform(model.size)
    pending: deque[_PendingClip] = deque()
    batch = _WindowBatch()
    for clip in clips:
        if clip.log_mel is None:
            raise ClipError(f"clip {clip.id!r} has no audio features (log-mel)")
        sample = transform(clip)
        indices = window_indices(clip.num_frames, model.num_frames)
        entry = _PendingClip(clip, sample.masks, [None] * len(indices))
        pending.append(entry)
        for w, idx in enumerate(indices):
            batch.frames.append(sample.frames[idx])
            log_mel = clip.log_mel[idx]
            batch.audio.append(model.audio_features(log_mel))
            batch.valid.append(sample.frame_valid[idx])
            batch.targets.append((entry, w, min(model.num_frames, clip.num_frames - w * model.num_frames)))
            if len(batch.targets) == batch_size:
                _run_batch(model, batch)
                batch = _WindowBatch()
                yield from _finished(pending)
    if batch.targets:
        _run_batch(model, batch)
    yield from _finished(pending)


def _run_batch(model: InferenceModel, batch: _WindowBatch) -> None:
    frames = torch.from_numpy(np.stack(batch.frames)).to(model.device)
    audio = torch.from_numpy(np.stack(batch.audio).astype(np.float32)).to(model.device)
    valid = torch.from_numpy(np.stack(batch.valid)).to(model.device)
    with torch.inference_mode():
        # As AVSLitModule: frame_valid only when some frame is padding (AVSS clips).
        logits = model.net(frames, audio, frame_valid=None if bool(valid.all()) else valid).logits
    if logits.shape[2] != 1:
        raise ConfigError(
            f"the model predicts K={logits.shape[2]} classes; infer.py writes binary masks and supports "
            "K=1 models only (AVSS semantic models are not supported yet: score one on an AVSS split with "
            "`python train.py experiment=<preset> train=false ckpt_path=CHECKPOINT`, which logs test/miou_avss "
            "and test/f_avss)"
        )
    logits = logits.float().cpu()
    for (entry, w, num_real), window in zip(batch.targets, logits):
        entry.windows[w] = window[:num_real]


def _finished(pending: deque[_PendingClip]) -> Iterator[tuple[Clip, torch.Tensor, np.ndarray]]:
    while pending and pending[0].done:
        entry = pending.popleft()
        yield entry.clip, torch.cat(entry.windows), entry.masks


# ---------------------------------------------------------------------------------- outputs


def binary_masks(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``logits [T, 1, h, w]`` -> ``[T, H, W]`` bool at ``size``: bilinear resize, sigmoid > 0.5."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits[:, 0]) > 0.5).numpy()


def write_masks(folder: Path, masks: np.ndarray, frame_valid: np.ndarray) -> None:
    """``masks [T, H, W]`` bool as ``folder/<t>.png`` (0/255) for the valid frames."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, (mask, valid) in enumerate(zip(masks, frame_valid)):
        if valid:
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{t}.png")


def overlay_frames(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``frames [T, H, W, 3]`` uint8 with the ``masks [T, H, W]`` pixels tinted (alpha blend)."""
    blended = frames.astype(np.float32)
    blended[masks] = (1.0 - OVERLAY_ALPHA) * blended[masks] + OVERLAY_ALPHA * OVERLAY_COLOUR
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def write_overlay(path: Path, clip: Clip, masks: np.ndarray, fps: int) -> None:
    """The overlay video: each frame shown for one second (repeated ``fps`` times), original audio."""
    from openavs_st.data.video import write_video

    if fps < 1:
        raise ConfigError(f"overlay_fps must be >= 1, got {fps}")
    valid = clip.frame_valid
    frames = np.repeat(overlay_frames(clip.frames[valid], masks[valid]), fps, axis=0)
    write_video(path, frames, fps, audio=original_audio(clip))


class SplitMetrics:
    """The test metrics of :class:`~openavs_st.module.AVSLitModule` for inference on a split."""

    def __init__(self, split: str, recipe: Mapping[str, Any]) -> None:
        from_logits = bool(recipe.get("fscore_from_logits", True))
        self.split = split
        self.metrics = [
            MaskIoU(),
            FScore(mode="avsbench", group_size=int(recipe["test_batch_frames"]), from_logits=from_logits),
            FScore(mode="pooled", from_logits=from_logits),
            FalsePositiveRate(),
        ]

    def update(self, logits: torch.Tensor, masks: np.ndarray, clip: Clip) -> None:
        """``logits [T, 1, h, w]`` and ground truth ``masks [T, h, w]`` at the model resolution."""
        target = torch.from_numpy(np.minimum(masks, 1).astype(np.float32))
        scored = torch.from_numpy(clip.has_label & clip.frame_valid)
        for metric in self.metrics:
            valid = torch.from_numpy(clip.frame_valid) if isinstance(metric, FalsePositiveRate) else scored
            metric.update(logits, target, valid)

    def compute(self) -> dict[str, float | None]:
        values = {f"{self.split}/{m.name}": float(m.compute()) for m in self.metrics}
        return {k: (v if np.isfinite(v) else None) for k, v in values.items()}


def run_inference(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``python infer.py`` does; ``cfg`` is the ``configs/infer.yaml`` tree.

    Returns:
        ``{"out": folder, "clips": count, "metrics": {...} or None}``.
    """
    from tqdm import tqdm

    clips, split = open_inputs(cfg)  # fails on a bad input before the model is loaded
    model = load_inference_model(
        cfg.get("model"), cfg.get("checkpoint"), device=str(cfg.get("device", "cpu")),
        input_size=cfg.get("input_size"),
    )
    out = Path(str(cfg["out"])).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    metrics = SplitMetrics(split, model.recipe) if split is not None else None
    overlay_fps = int(cfg.get("overlay_fps", 5))
    count = labelled = 0
    progress = tqdm(total=len(clips), unit="clip", disable=not cfg.get("progress", True))
    with progress:
        for clip, logits, gt_masks in predict(model, clips, int(cfg.get("batch_size", 4))):
            masks = binary_masks(logits, clip.size)
            name = safe_clip_dir(clip.id)
            write_masks(out / name, masks, clip.frame_valid)
            if cfg.get("overlay", True):
                write_overlay(out / f"{name}.mp4", clip, masks, overlay_fps)
            if metrics is not None and clip.has_label.any():
                metrics.update(logits, gt_masks, clip)
                labelled += 1
            count += 1
            progress.update(1)
    values = metrics.compute() if metrics is not None and labelled else None
    if values is not None:
        (out / METRICS_FILE).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        log.info("metrics: %s", values)
    log.info("wrote %d clip(s) to %s", count, out)
    return {"out": out, "clips": count, "metrics": values}
