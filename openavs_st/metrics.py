"""AVSBench-exact binary segmentation metrics, the OpenAVS two-class mIoU, and the AVSBench-Robust
scores, as torchmetrics ``Metric`` objects whose states sync across processes.

Sources (facts only; no code copied):

- mIoU and F-score: OpenNLPLab/AVSBench ``avs_scripts/avs_s4/utils/utility.py`` (``mask_iou``,
  ``Eval_Fmeasure``, ``_eval_pr``); identical copies in vvvb-github/AVSegFormer
  ``scripts/{s4,ms3}/utility.py`` and jinxiang-liu/anno-free-AVS ``utility.py`` (where the sigmoid
  of the F-score is commented out).
- FPR: jiali-home/AVSBench-Robust
  ``training_evaluation/code/AVSegFormer/scripts/s4/test.py::calculate_FPR``.
- G-mIoU, G-F, G-FPR: AVSBench-Robust paper (arXiv 2502.00358), Eq. 2-4, in
  :mod:`openavs_st.robust_scores` (re-exported here).
- Two-class mIoU: OpenAVS paper (arXiv 2505.01448), Appendix B.2, Eq. 8-9.

Every metric takes mask logits in one of the layouts ``[N, H, W]``, ``[N, 1, H, W]`` or
``[B, T, 1, H, W]`` (the backbones' ``AVSOutput.logits``); the target is a binary {0, 1} mask of the
same shape, or of that shape without the singleton channel (``[B, T, H, W]``, the batched
``Clip.masks``). An optional per-frame ``valid`` bool (``[N]`` or ``[B, T]``) removes frames
before anything is computed, e.g. frames without ground truth: a removed frame is treated as if it
had never been passed. Logits must already be at the ground-truth resolution.

Binarisation and threshold comparisons happen in float32, as in the original code (float32 model
outputs, float32 ``torch.linspace`` thresholds), so every pixel falls on the same side of every
threshold as there; pixel counts are int64 and all ratios and averages are float64.

Logged names always carry the variant (see :func:`metric_name`): ``miou_avsbench``,
``f_avsbench`` / ``f_pooled`` (``f_nosigmoid_*`` for SAMA-AVS's F without sigmoid),
``miou_2class_dataset`` / ``miou_2class_per_frame`` and ``fpr``.

A metric that has seen no frame computes NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from openavs_st.robust_scores import g_f, g_fpr, g_miou  # noqa: F401 - re-exported

# AVSBench utility.py::mask_iou: ``eps=1e-7`` added to the union; also ROB calculate_FPR's
# ``num_pixels + eps``.
IOU_EPS = 1e-7
# AVSBench utility.py::Eval_Fmeasure: ``beta2 = 0.3``, ``pr_num=255``.
F_BETA2 = 0.3
F_NUM_THRESHOLDS = 255
# AVSBench utility.py::_eval_pr: ``tp / (y_temp.sum() + 1e-20)``, ``tp / (y.sum() + 1e-20)``.
PR_EPS = 1e-20
# AVSBench utility.py::_eval_pr: ``torch.linspace(0, 1 - 1e-10, num)``. In float32 the last
# threshold rounds to exactly 1.0; the tensor is built on the CPU as there, then moved.
_F_THRESHOLDS_CPU = torch.linspace(0.0, 1.0 - 1e-10, F_NUM_THRESHOLDS, dtype=torch.float32)
# The thresholds followed by NaN, which no score is ">=" (not even +inf): the bounds of the 256
# threshold levels (see _threshold_levels).
_F_THRESHOLD_BOUNDS_CPU = torch.cat([_F_THRESHOLDS_CPU, torch.tensor([math.nan])])

__all__ = [
    "FScore",
    "FalsePositiveRate",
    "MaskIoU",
    "TwoClassMIoU",
    "f_score",
    "false_positive_rate",
    "g_f",
    "g_fpr",
    "g_miou",
    "mask_iou",
    "metric_name",
    "two_class_miou",
]

FSCORE_MODES = ("avsbench", "pooled")
TWO_CLASS_MODES = ("dataset", "per_frame")


def metric_name(stage: str, metric: str, mode: str | None = None) -> str:
    """The logged name of a metric, e.g. ``metric_name("test", "miou", "avsbench")`` is
    ``"test/miou_avsbench"``.

    Args:
        stage: ``"train"``, ``"val"``, ``"test"`` or any other prefix (e.g. ``"test_noise"``).
        metric: the metric key: ``"miou"``, ``"f"``, ``"f_nosigmoid"``, ``"miou_2class"``,
            ``"fpr"``.
        mode: the variant; ``None`` only for metrics with a single definition (FPR).
    """
    if not stage or not metric:
        raise ValueError(f"metric_name needs a stage and a metric, got {stage!r}, {metric!r}")
    return f"{stage}/{_name_suffix(metric, mode)}"


def _name_suffix(metric: str, mode: str | None) -> str:
    return metric if mode is None else f"{metric}_{mode}"


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------


def _frames_of(logits: Tensor) -> Tensor:
    """``[N,H,W]`` / ``[N,1,H,W]`` / ``[B,T,1,H,W]`` logits -> ``[N, H, W]`` (a view)."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating-point mask logits, got dtype {logits.dtype}")
    if logits.ndim == 3:
        return logits
    if logits.ndim in (4, 5):
        if logits.shape[-3] != 1:
            raise ValueError(
                f"logits {tuple(logits.shape)}: binary metrics need one mask channel (K=1) at dim "
                f"-3, got K={logits.shape[-3]} (multi-class AVSS logits are not binary masks)"
            )
        return logits.reshape(-1, *logits.shape[-2:])
    raise ValueError(
        f"logits must be [N,H,W], [N,1,H,W] or [B,T,1,H,W], got shape {tuple(logits.shape)}"
    )


def _prepare(
    logits: Tensor, target: Tensor | None, valid: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Check and flatten inputs; drop frames with ``valid == False``.

    Returns:
        logits ``[N', H, W]`` float32 and target ``[N', H, W]`` bool (``None`` if not given),
        where N' is the number of kept frames.
    """
    frames = _frames_of(logits)
    if torch.isnan(frames).any():
        raise ValueError("logits contain NaN")
    gt = None
    if target is not None:
        if not isinstance(target, Tensor):
            raise TypeError(f"target must be a tensor, got {type(target).__name__}")
        channel_free = logits.shape[:-3] + logits.shape[-2:] if logits.ndim > 3 else logits.shape
        if target.shape not in (logits.shape, channel_free):
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; "
                f"give the target at the logits' resolution, with or without the channel dim"
            )
        gt = target.reshape(frames.shape).bool()
        if target.dtype != torch.bool and torch.ne(target.reshape(frames.shape), gt).any():
            raise ValueError(
                f"target must be a binary {{0, 1}} mask, found values outside {{0, 1}} "
                f"(max {target.max().item()}); masks stored as 0/255 must be divided by 255"
            )
    if valid is not None:
        if not isinstance(valid, Tensor) or valid.dtype != torch.bool:
            raise TypeError("valid must be a bool tensor with one entry per frame")
        if valid.numel() != frames.shape[0]:
            raise ValueError(
                f"valid has {valid.numel()} entries (shape {tuple(valid.shape)}) but the logits "
                f"hold {frames.shape[0]} frames"
            )
        keep = valid.reshape(-1).to(frames.device)
        frames = frames[keep]
        gt = None if gt is None else gt[keep]
    return frames.float(), gt


def _foreground(logits: Tensor) -> Tensor:
    """AVSBench's binarisation ``sigmoid(logit) > 0.5`` (strict), in float32. ``[N,H,W]`` bool."""
    return torch.sigmoid(logits) > 0.5


def _pixel_count(mask: Tensor) -> Tensor:
    """Per-frame number of True pixels: ``[N,H,W]`` bool -> ``[N]`` int64."""
    return mask.flatten(1).sum(1)


# ----------------------------------------------------------------------------------------------
# Per-frame quantities
# ----------------------------------------------------------------------------------------------


def _frame_iou(logits: Tensor, target: Tensor) -> Tensor:
    """AVSBench ``mask_iou`` per frame: ``[N,H,W]`` logits, bool target -> ``[N]`` float64.

    Foreground IoU ``inter / (union + 1e-7)``; a frame with empty GT scores (pixels predicted
    background) / (H*W + 1e-7).
    """
    pred = _foreground(logits)
    num_pixels = pred.shape[-2] * pred.shape[-1]
    inter = _pixel_count(pred & target)
    union = _pixel_count(pred | target)
    gt_empty = _pixel_count(target) == 0
    inter = torch.where(gt_empty, num_pixels - _pixel_count(pred), inter)
    union = torch.where(gt_empty, torch.full_like(union, num_pixels), union)
    return inter.double() / (union.double() + IOU_EPS)


def _frame_fpr(logits: Tensor) -> Tensor:
    """ROB ``calculate_FPR`` per frame: predicted-foreground fraction, ``[N,H,W]`` -> ``[N]``."""
    num_pixels = logits.shape[-2] * logits.shape[-1]
    return _pixel_count(_foreground(logits)).double() / (num_pixels + IOU_EPS)


def _two_class_counts(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame intersection and union of the foreground and background classes.

    Returns:
        inter ``[N, 2]`` and union ``[N, 2]`` int64, column 0 = foreground, 1 = background.
    """
    pred = _foreground(logits)
    inter = torch.stack([_pixel_count(pred & target), _pixel_count(~pred & ~target)], dim=1)
    union = torch.stack([_pixel_count(pred | target), _pixel_count(~pred | ~target)], dim=1)
    return inter, union


def _class_iou(inter: Tensor, union: Tensor) -> Tensor:
    """``inter / union`` in float64; a class absent from prediction and GT (union 0) scores 1."""
    inter, union = inter.double(), union.double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def _threshold_levels(scores: Tensor) -> Tensor:
    """Number of F thresholds ``<= score`` for every score (its "level", 0..255), int32.

    Equal to ``torch.bucketize(scores, thresholds, right=True)`` (the exact float32 comparisons
    ``score >= t_k`` of the original) but ~2x faster: the thresholds are ``k / 254`` to within
    1e-7, so ``c = floor(254 * score)`` (clamped to 0..254) is within one of the last threshold
    ``<= score``; two comparisons against the real thresholds ``t_c`` and ``t_{c+1}`` (with
    ``t_255 = NaN``, never reached) fix it. Scores must not be NaN (checked by :func:`_prepare`).
    """
    bounds = _F_THRESHOLD_BOUNDS_CPU.to(scores.device)
    candidate = (scores * (F_NUM_THRESHOLDS - 1)).clamp_(0, F_NUM_THRESHOLDS - 1).to(torch.int32)
    at_candidate = (scores >= bounds[candidate]).to(torch.int32)
    at_next = (scores >= bounds[candidate + 1]).to(torch.int32)
    return candidate.add_(at_candidate).add_(at_next)


def _f_curves(scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """AVSBench ``_eval_pr`` + the F formula of ``Eval_Fmeasure`` for every frame at once.

    A pixel is positive at threshold ``t_k`` iff ``score >= t_k``, i.e. at exactly the thresholds
    ``k < L`` where L is its level (:func:`_threshold_levels`). One ``bincount`` over
    (frame, gt, level) and a suffix sum then give, for all 255 thresholds, the predicted-positive
    and true-positive counts.

    Args:
        scores: ``[N, H, W]`` float32, probabilities (or raw logits for SAMA-AVS's variant).
        target: ``[N, H, W]`` bool.

    Returns:
        curves ``[N, 255]`` float64 F-measure per threshold (0 for frames with empty GT), and
        has_gt ``[N]`` bool (frames the original does not skip).
    """
    num_frames = scores.shape[0]
    num_levels = F_NUM_THRESHOLDS + 1
    frame_offset = torch.arange(num_frames, dtype=torch.int32, device=scores.device) * (
        2 * num_levels
    )
    code = _threshold_levels(scores)
    code += target.to(torch.int32) * num_levels
    code += frame_offset.view(num_frames, 1, 1)
    histogram = torch.bincount(code.flatten(), minlength=num_frames * 2 * num_levels)
    histogram = histogram.view(num_frames, 2, num_levels)
    at_or_above = histogram.flip(-1).cumsum(-1).flip(-1)  # [N, 2, L]: pixels with level >= l
    # positive at threshold k  <=>  level >= k + 1
    true_pos = at_or_above[:, 1, 1:].double()
    pred_pos = at_or_above[:, :, 1:].sum(1).double()
    gt_pixels = histogram[:, 1].sum(-1, keepdim=True).double()
    precision = true_pos / (pred_pos + PR_EPS)
    recall = true_pos / (gt_pixels + PR_EPS)
    f_measure = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall)
    f_measure = torch.where(torch.isnan(f_measure), torch.zeros_like(f_measure), f_measure)
    has_gt = gt_pixels.squeeze(1) > 0
    return f_measure * has_gt.unsqueeze(1), has_gt


def _group_scores(curve_sums: Tensor, valid_frames: Tensor) -> Tensor:
    """Score of frame groups: max over thresholds of the mean F curve, 0 without a valid frame.

    Args:
        curve_sums: ``[G, 255]`` float64 summed F curves of each group's frames with GT.
        valid_frames: ``[G]`` number of frames with non-empty GT in each group.

    Returns:
        ``[G]`` float64.
    """
    has_valid = valid_frames > 0
    mean_curves = curve_sums / valid_frames.clamp(min=1).unsqueeze(1).double()
    return torch.where(has_valid, mean_curves.amax(dim=1), torch.zeros_like(mean_curves[:, 0]))


def _nan(device: torch.device) -> Tensor:
    """The value of a metric that has seen no frame."""
    return torch.tensor(math.nan, dtype=torch.float64, device=device)


def _ratio_or_nan(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` in float64, NaN when nothing was accumulated."""
    if denominator == 0:
        return _nan(numerator.device)
    return numerator.double() / denominator.double()


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


class _AVSMetric(Metric):
    """Shared naming for the metrics of this module.

    Subclasses set ``metric_key``; ``mode`` is the variant written into the logged name.
    """

    is_differentiable = False
    higher_is_better = True
    metric_key: str = ""
    mode: str | None = None

    @property
    def name(self) -> str:
        """Canonical name suffix, e.g. ``"f_pooled"``; log as ``f"{stage}/{metric.name}"``."""
        return _name_suffix(self.metric_key, self.mode)


class _FrameAverage(_AVSMetric):
    """Mean over frames of a per-frame value. States: float64 sum and frame count (sum-reduced)."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("value_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_frames", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _accumulate(self, per_frame: Tensor) -> None:
        """Add per-frame values ``[N]`` float64."""
        self.value_sum += per_frame.sum()
        self.num_frames += per_frame.numel()

    def compute(self) -> Tensor:
        """Mean over all frames seen (all processes), float64 scalar; NaN if none."""
        return _ratio_or_nan(self.value_sum, self.num_frames)


class MaskIoU(_FrameAverage):
    """AVSBench mIoU (``utility.py::mask_iou``): frame-averaged foreground IoU.

    Per frame: ``bin = sigmoid(logit) > 0.5``; IoU = ``inter / (union + 1e-7)``; a frame whose GT
    is empty scores (pixels predicted background) / (H*W + 1e-7), i.e. 1 - FPR. The result is the
    mean over frames. The original reports the mean of per-batch means, which equals the frame
    mean for its equal-sized test batches. Name: ``miou_avsbench``.

    ``update(logits, target, valid=None)``: logits ``[N,H,W]``/``[N,1,H,W]``/``[B,T,1,H,W]``,
    target the same (channel optional) in {0, 1}, valid ``[N]``/``[B,T]`` bool.
    """

    metric_key = "miou"
    mode = "avsbench"

    def update(self, logits: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add a batch of frames (shapes in the class docstring)."""
        frames, gt = _prepare(logits, target, valid)
        self._accumulate(_frame_iou(frames, gt))


class FalsePositiveRate(_FrameAverage):
    """AVSBench-Robust FPR (``scripts/s4/test.py::calculate_FPR``): mean foreground fraction.

    Per frame: (pixels with ``sigmoid(logit) > 0.5``) / (H*W + 1e-7), independent of the GT; mean
    over frames. Meant for negative-audio test sets (silence, noise, off-screen). Lower is better.
    Name: ``fpr``.

    ``update(logits, target=None, valid=None)``: the target is accepted (so a metric collection
    can pass it) and ignored.
    """

    higher_is_better = False
    metric_key = "fpr"
    mode = None

    def update(
        self, logits: Tensor, target: Tensor | None = None, valid: Tensor | None = None
    ) -> None:
        """Add a batch of frames; see :class:`MaskIoU` for the shapes."""
        frames, _ = _prepare(logits, None, valid)
        self._accumulate(_frame_fpr(frames))


class TwoClassMIoU(_AVSMetric):
    """OpenAVS two-class mIoU, Eq. 9: ``1/2 (IoU_fg + IoU_bg)`` with ``IoU = TP / (TP + FP + FN)``.

    The paper (Appendix B.2, Eq. 8-9) writes IoU from TP, FP and FN counts with no per-frame index
    and takes the "mean" over the two classes, i.e. the standard semantic-segmentation mIoU whose
    counts are accumulated over the evaluated set. ``mode="dataset"`` (default) implements that:
    per class, sum intersections and unions over all frames, divide, then average the two classes.
    The paper does not state the aggregation explicitly, so ``mode="per_frame"`` is offered too:
    the two-class mIoU of each frame, averaged over frames (AVSBench-style averaging).
    Binarisation is AVSBench's ``sigmoid(logit) > 0.5``. No epsilon is added; a class absent from
    both prediction and GT (union 0) scores IoU 1. Names: ``miou_2class_dataset`` /
    ``miou_2class_per_frame``.
    """

    full_state_update = False
    metric_key = "miou_2class"

    def __init__(self, mode: str = "dataset", **kwargs: Any) -> None:
        if mode not in TWO_CLASS_MODES:
            raise ValueError(f"TwoClassMIoU mode must be one of {TWO_CLASS_MODES}, got {mode!r}")
        super().__init__(**kwargs)
        self.mode = mode
        if mode == "dataset":
            self.add_state("inter", torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")
            self.add_state("union", torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")
        else:
            self.add_state("value_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_frames", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add a batch of frames; see :class:`MaskIoU` for the shapes."""
        frames, gt = _prepare(logits, target, valid)
        inter, union = _two_class_counts(frames, gt)
        if self.mode == "dataset":
            self.inter += inter.sum(0)
            self.union += union.sum(0)
        else:
            self.value_sum += _class_iou(inter, union).mean(1).sum()
        self.num_frames += frames.shape[0]

    def compute(self) -> Tensor:
        """Two-class mIoU over all frames seen (all processes), float64 scalar; NaN if none."""
        if self.mode == "per_frame":
            return _ratio_or_nan(self.value_sum, self.num_frames)
        if self.num_frames == 0:
            return _nan(self.inter.device)
        return _class_iou(self.inter, self.union).mean()


class FScore(_AVSMetric):
    """AVSBench F-measure (β² = 0.3, ``utility.py::Eval_Fmeasure`` + ``_eval_pr``).

    Per frame with non-empty GT: scores ``p = sigmoid(logit)`` (``from_logits=True``) or the raw
    logit (``from_logits=False``: SAMA-AVS, whose sigmoid line is commented out, so thresholds
    0..1 only cover probabilities 0.5-0.73); 255 thresholds ``linspace(0, 1 - 1e-10, 255)``, pixel
    positive iff ``p >= t``; ``prec = tp / (Σbin + 1e-20)``, ``rec = tp / (Σgt + 1e-20)``,
    ``F = 1.3 prec rec / (0.3 prec + rec)``, NaN -> 0. Frames with empty GT are skipped (they
    contribute no curve).

    Modes:
        ``"avsbench"``: exactly the original. Frames are grouped, in the order they are passed to
            ``update``, into consecutive groups of ``group_size`` frames (the original test batch:
            TPAVI 20, AVSegFormer 10, SAMA-AVS 5; ``Recipe.test_batch_frames``) regardless of the
            sizes of the ``update`` batches. A group scores the max over thresholds of the mean F
            curve of its frames with GT, or 0 if all its frames have empty GT (it still counts).
            The result is the mean over groups; a trailing partial group counts as a group, as the
            original's last, smaller test batch did. The value depends on ``group_size``.
        ``"pooled"``: the F curves of all frames with GT are averaged over the whole set and the
            max is taken once: independent of batch size and of the number of processes.
            ``group_size`` is ignored.

    State and DDP: each process groups its own stream of frames. Finished groups are reduced
    to their score at once, so the state holds their score sum and count (sum-reduced) plus the
    still-open group's F-curve sum, frame count and valid-frame count (one row per process,
    concatenated on sync). ``compute`` counts each process's open group as one more group. With
    a ``DistributedSampler`` a process sees every W-th clip (plus padding duplicates), so
    ``"avsbench"`` groups differ from a single-process run: reproduce published numbers on one
    process, or use ``"pooled"``, which is identical under any sharding that covers each frame
    once. ``forward`` keeps the group stream (``full_state_update``); ``merge_state`` is not
    supported.

    Names: ``f_avsbench`` / ``f_pooled``, and ``f_nosigmoid_avsbench`` / ``f_nosigmoid_pooled``
    when ``from_logits=False``. ``update(logits, target, valid=None)`` as :class:`MaskIoU`.
    """

    full_state_update = True

    def __init__(
        self, mode: str = "avsbench", group_size: int = 20, from_logits: bool = True, **kwargs: Any
    ) -> None:
        if mode not in FSCORE_MODES:
            raise ValueError(f"FScore mode must be one of {FSCORE_MODES}, got {mode!r}")
        if mode == "avsbench" and (not isinstance(group_size, int) or group_size < 1):
            raise ValueError(f"FScore group_size must be a positive int, got {group_size!r}")
        super().__init__(**kwargs)
        self.mode = mode
        self.group_size = group_size if mode == "avsbench" else None
        self.from_logits = from_logits
        self.metric_key = "f" if from_logits else "f_nosigmoid"
        f64 = torch.float64
        self.add_state("closed_score_sum", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        self.add_state("closed_groups", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "open_curve_sum", torch.zeros(1, F_NUM_THRESHOLDS, dtype=f64), dist_reduce_fx="cat"
        )
        self.add_state("open_valid_frames", torch.zeros(1, dtype=torch.int64), dist_reduce_fx="cat")
        self.add_state("open_frames", torch.zeros(1, dtype=torch.int64), dist_reduce_fx="cat")

    def update(self, logits: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add a batch of frames; see :class:`MaskIoU` for the shapes."""
        frames, gt = _prepare(logits, target, valid)
        if frames.shape[0] == 0:
            return
        scores = torch.sigmoid(frames) if self.from_logits else frames
        curves, has_gt = _f_curves(scores, gt)
        self._absorb(curves, has_gt)

    def _absorb(self, curves: Tensor, has_gt: Tensor) -> None:
        """Append frames (``curves [n, 255]``, ``has_gt [n]``) to the stream of groups.

        The open group sits at slots ``0..open_frames-1``; new frame i goes to slot
        ``open_frames + i``, i.e. group ``slot // group_size`` counted from the open group.
        Groups filled to ``group_size`` are closed into their score; the rest stays open.
        In pooled mode there is a single group that never closes.
        """
        first_slot = int(self.open_frames[0])
        end_slot = first_slot + curves.shape[0]
        slots = torch.arange(first_slot, end_slot, device=curves.device)
        if self.group_size is None:
            group_of_frame, num_closed, num_open_frames = torch.zeros_like(slots), 0, end_slot
        else:
            group_of_frame = slots // self.group_size
            num_closed, num_open_frames = divmod(end_slot, self.group_size)
        num_groups = num_closed + int(num_open_frames > 0)
        curve_sums = torch.zeros(
            num_groups, F_NUM_THRESHOLDS, dtype=torch.float64, device=curves.device
        ).index_add_(0, group_of_frame, curves)
        valid_frames = torch.zeros(num_groups, dtype=torch.int64, device=curves.device)
        valid_frames.index_add_(0, group_of_frame, has_gt.long())
        curve_sums[0] += self.open_curve_sum[0]
        valid_frames[0] += self.open_valid_frames[0]
        if num_closed:
            self.closed_score_sum += _group_scores(
                curve_sums[:num_closed], valid_frames[:num_closed]
            ).sum()
            self.closed_groups += num_closed
        if num_open_frames:
            self.open_curve_sum[0] = curve_sums[num_closed]
            self.open_valid_frames[0] = valid_frames[num_closed]
        else:
            self.open_curve_sum.zero_()
            self.open_valid_frames.zero_()
        self.open_frames[0] = num_open_frames

    def compute(self) -> Tensor:
        """The F-score over all frames seen (all processes), float64 scalar; NaN if none."""
        # After a sync the open-group states hold one row per process.
        open_curve_sums = self.open_curve_sum.reshape(-1, F_NUM_THRESHOLDS)
        open_valid = self.open_valid_frames.reshape(-1)
        is_open = self.open_frames.reshape(-1) > 0
        if self.mode == "pooled":
            if not is_open.any():
                return _nan(open_curve_sums.device)
            return _group_scores(open_curve_sums.sum(0, keepdim=True), open_valid.sum(0, True))[0]
        score_sum = (
            self.closed_score_sum
            + _group_scores(open_curve_sums[is_open], open_valid[is_open]).sum()
        )
        return _ratio_or_nan(score_sum, self.closed_groups + is_open.sum())


# ----------------------------------------------------------------------------------------------
# Functional forms (one batch = the whole set)
# ----------------------------------------------------------------------------------------------


def mask_iou(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """:class:`MaskIoU` over the given frames (float64 scalar)."""
    return _evaluate(MaskIoU(), logits, target, valid)


def f_score(
    logits: Tensor,
    target: Tensor,
    mode: str = "avsbench",
    group_size: int = 20,
    from_logits: bool = True,
    valid: Tensor | None = None,
) -> Tensor:
    """:class:`FScore` over the given frames, grouped in their order (float64 scalar)."""
    return _evaluate(FScore(mode, group_size, from_logits), logits, target, valid)


def two_class_miou(
    logits: Tensor, target: Tensor, mode: str = "dataset", valid: Tensor | None = None
) -> Tensor:
    """:class:`TwoClassMIoU` over the given frames (float64 scalar)."""
    return _evaluate(TwoClassMIoU(mode), logits, target, valid)


def false_positive_rate(logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """:class:`FalsePositiveRate` over the given frames (float64 scalar)."""
    return _evaluate(FalsePositiveRate(), logits, None, valid)


def _evaluate(
    metric: Metric, logits: Tensor, target: Tensor | None, valid: Tensor | None
) -> Tensor:
    metric.to(logits.device)
    metric.update(logits, target, valid)
    return metric.compute()
