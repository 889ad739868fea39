"""Lightning callbacks: a fixed panel of validation overlays (frame, ground truth, prediction) in W&B."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from openavs_st.data.avsbench import avss_palette
from openavs_st.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def denormalise(frames: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` ImageNet-normalised frames -> ``[N, H, W, 3]`` uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    rgb = ((frames.float() * std + mean).clamp(0, 1) * 255).round().byte()
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def class_overlay_panel(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``[H, 3W, 3]`` uint8: the frame, then its ground truth and prediction class maps ``[H, W]`` painted
    over it in AVSBench's AVSS palette (background left unpainted)."""
    palette = avss_palette(max(int(gt.max()), int(pred.max()), 1) + 1).astype(np.float32)

    def paint(classes: np.ndarray) -> np.ndarray:
        colour = palette[classes]
        mixed = np.where((classes > 0)[..., None], (1 - alpha) * rgb + alpha * colour, rgb)
        return mixed.round().astype(np.uint8)

    return np.concatenate([rgb, paint(gt), paint(pred)], axis=1)


class ValidationOverlays(L.Callback):
    """Logs the same ``num_clips`` validation clips every epoch as W&B images with two mask layers,
    ``ground_truth`` and ``prediction`` (sigmoid > 0.5), one image per frame. A K-class (AVSS) model
    logs, per frame, the frame | ground truth | prediction (argmax) with the classes in AVSBench's palette.
    Does nothing when the trainer has no ``WandbLogger``."""

    def __init__(self, num_clips: int = 4) -> None:
        self.num_clips = num_clips
        self._images: list[Any] = []
        self._clips = 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._clips = [], 0

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or self._clips >= self.num_clips or not _wandb_loggers(trainer):
            return
        import wandb

        n = min(self.num_clips - self._clips, batch["frames"].shape[0])
        self._clips += n
        valid = batch["frame_valid"][:n]
        out = pl_module(batch["frames"][:n], batch["audio"][:n], None if bool(valid.all()) else valid)
        semantic = out.logits.shape[2] > 1
        if semantic:
            pred = out.logits.argmax(dim=2).cpu().numpy()
        else:
            pred = (torch.sigmoid(out.logits[:, :, 0]) > 0.5).to(torch.uint8).cpu().numpy()
        gt = batch["masks"][:n].to(torch.int64 if semantic else torch.uint8).cpu().numpy()
        for i in range(n):
            rgb = denormalise(batch["frames"][i])
            for t in range(rgb.shape[0]):
                if semantic:
                    if not bool(valid[i, t]):
                        continue
                    panel = class_overlay_panel(rgb[t], gt[i, t], pred[i, t])
                    classes = sorted({int(c) for c in np.unique(gt[i, t])} - {0})
                    caption = f"{batch['id'][i]} t={t} frame | ground truth | prediction; classes {classes}"
                    self._images.append(wandb.Image(panel, caption=caption))
                    continue
                self._images.append(
                    wandb.Image(
                        rgb[t],
                        caption=f"{batch['id'][i]} t={t}",
                        masks={
                            "ground_truth": {"mask_data": gt[i, t], "class_labels": {1: "sounding"}},
                            "prediction": {"mask_data": pred[i, t], "class_labels": {1: "sounding"}},
                        },
                    )
                )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._images or trainer.sanity_checking:
            return
        for logger in _wandb_loggers(trainer):
            logger.experiment.log({"val/overlays": self._images, "epoch": trainer.current_epoch})


def _wandb_loggers(trainer: L.Trainer) -> list[Any]:
    return [logger for logger in trainer.loggers if type(logger).__name__ == "WandbLogger"]


class BestValidationMetrics(L.Callback):
    """Keeps every ``val/*`` value of the epoch whose ``monitor`` was best (the epoch of the best
    checkpoint, which is the one tested and exported), plus ``val/best_epoch``. Part of the
    checkpoint state, so a resumed run remembers the best epoch of its first part."""

    def __init__(self, monitor: str = "val/miou_avsbench", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.metrics: dict[str, float] = {}

    @property
    def state_key(self) -> str:
        return f"BestValidationMetrics[{self.monitor}]"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.metrics["val/best_epoch"] = float(trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "metrics": dict(self.metrics)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.metrics = dict(state_dict.get("metrics") or {})
