"""AVSBench-semantic (AVSS) metrics: per-class mIoU and F-score over the 71 classes, accumulated over a
split, as torchmetrics ``Metric`` objects whose states sync across processes.

Re-stated (no code copied) from OpenNLPLab/AVSBench ``avs_scripts/avss/utils/compute_color_metrics.py``
(``calc_color_miou_fscore``, ``_batch_miou_fscore``) and the accumulation in ``avs_scripts/avss/test.py``;
vvvb-github/AVSegFormer ``utils/compute_color_metrics.py`` and ``scripts/avss/test.py`` hold the same
logic. The official evaluation:

1. per frame, the prediction is the class of the largest logit (``argmax(softmax(logits))``);
2. per frame and class c, with pixel counts ``inter_c`` (predicted c and labelled c), ``pred_c`` and
   ``label_c``: ``IoU_c = inter_c / union_c`` (0 when the class is neither predicted nor labelled),
   ``F_c = (1 + β²) P R / (β² P + R)`` with ``P = inter_c / pred_c``, ``R = inter_c / label_c``,
   β² = 0.3, a 0/0 anywhere giving 0 (so ``F_c = 0`` unless ``inter_c > 0``); no threshold sweep;
3. over the whole split, per class: the sum of ``IoU_c`` and of ``F_c`` over frames, and the number of
   frames where ``union_c > 0``;
4. ``mIoU = mean over all classes of (IoU sum / frame count)``, a class never predicted nor labelled
   counting 0 (``NaN -> 0``); F likewise, divided by the same frame count.

So a class is averaged over the frames where it appears (in the ground truth or the prediction), then
every class weighs the same, background (index 0) included; the value depends on the frames seen, not on
how they were batched. The official test scores every one of the 10 frames of a clip, the padding frames
of 5-second v1s/v1m clips included: their logits are zeroed (``vid_temporal_mask_flag``), so they predict
background everywhere against an all-background label and add a perfect background frame. ``padded``
frames reproduce this whatever the backbone outputs there (``score_padding=False`` leaves them out).

Logged names carry the mode like the binary metrics (:func:`openavs_st.metrics.metric_name`):
``miou_avss`` and ``f_avss``. The "noBg" variants of the original scripts are not provided.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from openavs_st.data.avsbench import AVSS_NUM_CLASSES

__all__ = ["AVSS_MODE", "SemanticFScore", "SemanticMIoU", "class_maps", "frame_class_scores"]

AVSS_MODE = "avss"
# compute_color_metrics.py: ``beta2=0.3``.
F_BETA2 = 0.3


def class_maps(prediction: Tensor) -> Tensor:
    """Per-pixel classes ``[N, H, W]`` (int64) of logits ``[N, K, H, W]`` / ``[B, T, K, H, W]`` (argmax over
    K, the first class on a tie, as ``torch.argmax``) or of class maps ``[N, H, W]`` / ``[B, T, H, W]``
    (integer dtype, returned flattened)."""
    if not isinstance(prediction, Tensor):
        raise TypeError(f"prediction must be a tensor, got {type(prediction).__name__}")
    if prediction.is_floating_point():
        if prediction.ndim not in (4, 5):
            raise ValueError(f"logits must be [N, K, H, W] or [B, T, K, H, W], got {tuple(prediction.shape)}")
        return prediction.argmax(dim=-3).reshape(-1, *prediction.shape[-2:])
    if prediction.ndim not in (3, 4):
        raise ValueError(f"class maps must be [N, H, W] or [B, T, H, W], got {tuple(prediction.shape)}")
    return prediction.reshape(-1, *prediction.shape[-2:]).long()


def frame_class_scores(pred: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per frame and class: ``(iou, f, appears)``, each ``[N, K]`` (float64, float64, bool).

    ``pred`` and ``target`` are class maps ``[N, H, W]``; ``appears`` marks a class predicted or labelled
    in the frame (``union > 0``), the frames the official evaluation counts for that class.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    n = pred.shape[0]
    target = target.long()
    for name, maps in (("target", target), ("prediction", pred)):
        if maps.numel() and (int(maps.min()) < 0 or int(maps.max()) >= num_classes):
            raise ValueError(f"{name} holds class indices outside [0, {num_classes - 1}]")
    offset = torch.arange(n, device=pred.device).view(n, 1, 1) * num_classes
    size = n * num_classes

    def counts(flat: Tensor) -> Tensor:
        return torch.bincount(flat.reshape(-1), minlength=size).reshape(n, num_classes)

    pred_area = counts(pred + offset)
    label_area = counts(target + offset)
    hit = pred == target
    inter = counts((target + offset)[hit])
    union = pred_area + label_area - inter
    inter_f, pred_f, label_f = inter.double(), pred_area.double(), label_area.double()
    iou = torch.where(union > 0, inter_f / union.clamp_min(1).double(), torch.zeros_like(inter_f))
    precision = inter_f / pred_f.clamp_min(1)
    recall = inter_f / label_f.clamp_min(1)
    f = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall).clamp_min(1e-300)
    f = torch.where(inter > 0, f, torch.zeros_like(f))
    return iou, f, union > 0


def _frame_mask(flags: Tensor | None, n: int, what: str, device: torch.device) -> Tensor | None:
    if flags is None:
        return None
    flags = flags.reshape(-1).to(device=device, dtype=torch.bool)
    if flags.numel() != n:
        raise ValueError(f"{what} has {flags.numel()} entries for {n} frames")
    return flags


class _SemanticScores(Metric):
    """Shared state: per-class sums of frame IoU and F, and per-class frame counts (all sum-reduced)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    metric_key = ""
    mode = AVSS_MODE

    def __init__(self, num_classes: int = AVSS_NUM_CLASSES, *, score_padding: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"semantic metrics need at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)
        self.score_padding = bool(score_padding)
        self.add_state("iou_sum", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f_sum", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("class_frames", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    @property
    def name(self) -> str:
        """Logged name suffix, e.g. ``"miou_avss"``; log as ``f"{stage}/{metric.name}"``."""
        return f"{self.metric_key}_{self.mode}"

    def update(
        self, prediction: Tensor, target: Tensor, valid: Tensor | None = None, padded: Tensor | None = None
    ) -> None:
        """Add frames.

        Args:
            prediction: logits ``[B, T, K, H, W]`` / ``[N, K, H, W]`` or class maps ``[B, T, H, W]`` / ``[N, H, W]``,
                at the ground-truth resolution.
            target: class-index maps ``[B, T, H, W]`` / ``[N, H, W]``.
            valid: ``[B, T]`` / ``[N]`` bool, frames with ground truth to score (None: all).
            padded: ``[B, T]`` / ``[N]`` bool, padding frames: scored as predicting background everywhere
                (the original zeroes their logits) when ``score_padding``, else left out.
        """
        pred = class_maps(prediction)
        target = target.reshape(-1, *target.shape[-2:])
        n = target.shape[0]
        if pred.shape[0] != n:
            raise ValueError(f"{pred.shape[0]} predicted frames for {n} target frames")
        keep = _frame_mask(valid, n, "valid", pred.device)
        keep = torch.ones(n, dtype=torch.bool, device=pred.device) if keep is None else keep
        pad = _frame_mask(padded, n, "padded", pred.device)
        if pad is not None:
            pred = torch.where(pad.view(n, 1, 1), torch.zeros_like(pred), pred)
            keep = (keep & ~pad) | (pad & self.score_padding)
        if not bool(keep.any()):
            return
        iou, f, appears = frame_class_scores(pred[keep], target[keep].to(pred.device), self.num_classes)
        self.iou_sum += iou.sum(0)
        self.f_sum += f.sum(0)
        self.class_frames += appears.sum(0)

    def _per_class(self, sums: Tensor) -> Tensor:
        return torch.where(self.class_frames > 0, sums / self.class_frames.clamp_min(1), torch.zeros_like(sums))

    def per_class(self) -> Tensor:
        """``[K]`` float64: the class's score averaged over the frames where it appears (0 if none)."""
        raise NotImplementedError

    def compute(self) -> Tensor:
        """Mean over all K classes of :meth:`per_class` (float64 scalar); NaN before any frame."""
        if int(self.class_frames.sum()) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.class_frames.device)
        return self.per_class().mean()


class SemanticMIoU(_SemanticScores):
    """AVSBench-semantic mIoU (``miou_avss``): per-class IoU averaged over the frames where the class
    appears, then over all classes (see the module docstring)."""

    metric_key = "miou"

    def per_class(self) -> Tensor:
        return self._per_class(self.iou_sum)


class SemanticFScore(_SemanticScores):
    """AVSBench-semantic F-score (``f_avss``, β² = 0.3): per-class F of the argmax prediction averaged
    over the frames where the class appears, then over all classes (see the module docstring)."""

    metric_key = "f"

    def per_class(self) -> Tensor:
        return self._per_class(self.f_sum)
