"""Loss terms of the AVS backbones, as named in each backbone's ``Recipe.loss_terms``.

Every loss has the same signature::

    fn(output: AVSOutput, target: Tensor [B, T, H, W], weight: Tensor [B, T]) -> scalar Tensor

``target`` holds binary masks (0/1) for K=1 models and class indices for K>1; ``weight`` is the
per-frame ground-truth weight (S4 train: 1 on frame 1 only; AVSS: ``gt_temporal_mask_flag``;
pseudo-labels: ``has_label``). :data:`LOSS_TERMS` maps recipe names to functions; backbones add
their own terms to this module and to the dict. :func:`compute_loss` sums a recipe's terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from backbones.base import AVSOutput

LossFn = Callable[[AVSOutput, torch.Tensor, torch.Tensor], torch.Tensor]


def check_loss_inputs(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming the loss unless logits ``[B,T,K,H,W]``, target ``[B,T,H,W]``
    and weight ``[B,T]`` agree."""
    logits = output.logits
    if logits.dim() != 5:
        raise ValueError(f"{name}: logits must be [B, T, K, H, W], got {tuple(logits.shape)}")
    batch, frames, _, height, width = logits.shape
    if tuple(target.shape) != (batch, frames, height, width):
        raise ValueError(
            f"{name}: target must be [B, T, H, W] = {(batch, frames, height, width)} like the logits, "
            f"got {tuple(target.shape)}"
        )
    if tuple(weight.shape) != (batch, frames):
        raise ValueError(f"{name}: weight must be [B, T] = {(batch, frames)}, got {tuple(weight.shape)}")


def weighted_frame_mean(per_frame: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(w * l) / sum(w)`` over frames (0 when every weight is 0): per_frame, weight ``[B, T]``.

    This is the AVSS ``gt_temporal_mask_flag`` weighting (AVSBench ``avss/loss.py``); with equal
    frame sizes it also equals ``nn.BCELoss()`` over the selected frames (``avs_s4/loss.py``).
    """
    weight = weight.to(per_frame.dtype)
    return (per_frame * weight).sum() / weight.sum().clamp_min(torch.finfo(per_frame.dtype).tiny)


def bce(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """TPAVI binary cross-entropy on ``sigmoid(logits)`` (K=1), mean per frame, weighted by frame.

    As ``nn.BCELoss()(torch.sigmoid(pred), gt)`` in AVSBench ``avs_s4/loss.py::F1_IoU_BCELoss``
    (frame 1 of each clip) and ``avs_ms3/loss.py::F5_IoU_BCELoss`` (all frames); the log is
    clamped at -100 as in ``nn.BCELoss``.
    """
    check_loss_inputs(output, target, weight, "bce")
    if output.logits.shape[2] != 1:
        raise ValueError(f"bce: needs K=1 logits, got K={output.logits.shape[2]}")
    probs = torch.sigmoid(output.logits[:, :, 0])  # [B, T, H, W]
    per_pixel = F.binary_cross_entropy(probs, target.to(probs.dtype), reduction="none")
    return weighted_frame_mean(per_pixel.mean(dim=(-2, -1)), weight)


def avss_ce(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy over K classes, spatial mean per frame, frame-weighted mean.

    AVSBench ``avss/loss.py::F10_IoU_BCELoss``: ``CrossEntropyLoss(reduction='none')``, mean over
    H, W, times ``gt_temporal_mask_flag``, divided by its sum. ``target`` holds class indices.
    """
    check_loss_inputs(output, target, weight, "avss_ce")
    logits = output.logits.flatten(0, 1)  # [B*T, K, H, W]
    per_pixel = F.cross_entropy(logits, target.flatten(0, 1).long(), reduction="none")  # [B*T, H, W]
    return weighted_frame_mean(per_pixel.mean(dim=(-2, -1)).reshape(weight.shape), weight)


def avm_kl(
    output: AVSOutput, target: torch.Tensor, weight: torch.Tensor, *, background_index: int = -1
) -> torch.Tensor:
    """TPAVI audio-visual matching loss (``A_MaskedV_SimmLoss`` with ``kl_flag``), mean over stages.

    For each stage s with aligned audio ``a_s [B*T, C]`` (``aux["audio_aligned"]``) and map
    ``v_s [B*T, C, h, w]`` (``aux["stage_features"]``):

    - K=1 (AVSBench ``avs_ms3/loss.py``): ``m = sigmoid(adaptive_avg_pool(logits, (h, w)))`` (the
      raw logits are pooled, then squashed); per-frame ``KL(softmax(a_s) || softmax(mean_hw(v_s m)))``
      summed over frames (``reduction='sum'``: the loss grows with batch size), each frame times
      its weight (all ones in MS3).
    - K>1 (AVSBench ``avss/loss.py``): ``m = adaptive_avg_pool(argmax_K(logits) != background)``
      (a hard mask, no gradient to the logits); per-frame KL weighted by ``weight`` and divided
      by its sum. The original takes the *last* class as background
      (``bg_idx = pred_masks.shape[1] - 1``) although the AVSS data use index 0 for background;
      ``background_index=-1`` reproduces that, pass 0 for the data's background.

    ``target`` is not used (the loss needs no ground truth); it is checked for shape only.
    """
    check_loss_inputs(output, target, weight, "avm_kl")
    stage_features = output.aux.get("stage_features")
    audio_aligned = output.aux.get("audio_aligned")
    if stage_features is None or audio_aligned is None:
        raise KeyError("avm_kl: output.aux needs 'stage_features' and 'audio_aligned'")
    logits = output.logits.flatten(0, 1)  # [B*T, K, H, W]
    num_classes = logits.shape[1]
    if num_classes == 1:
        mask_source = logits
    else:
        background = background_index % num_classes
        mask_source = (logits.argmax(dim=1, keepdim=True) != background).to(logits.dtype)
    frame_weight = weight.reshape(-1).to(logits.dtype)  # [B*T]

    stage_losses = []
    for visual, audio in zip(stage_features, audio_aligned):
        if audio is None:  # stage without a TPAVI block
            continue
        if visual.shape[1] != audio.shape[-1]:
            raise ValueError(
                f"avm_kl: stage feature has {visual.shape[1]} channels, aligned audio {audio.shape[-1]}"
            )
        pooled = F.adaptive_avg_pool2d(mask_source, visual.shape[-2:])  # [B*T, 1, h, w]
        if num_classes == 1:
            pooled = torch.sigmoid(pooled)
        masked_visual = (visual * pooled).mean(dim=(-2, -1))  # [B*T, C]
        # F.kl_div(log q, p) = sum p (log p - log q); log(softmax) as in the original (not log_softmax).
        per_frame = F.kl_div(
            masked_visual.softmax(dim=-1).log(),
            audio.reshape(masked_visual.shape).softmax(dim=-1),
            reduction="none",
        ).sum(dim=-1)  # [B*T]
        if num_classes == 1:
            stage_losses.append((per_frame * frame_weight).sum())
        else:
            stage_losses.append(weighted_frame_mean(per_frame, frame_weight))
    if not stage_losses:
        raise ValueError("avm_kl: the model has no stage with aligned audio (no TPAVI block)")
    return torch.stack(stage_losses).mean()


def _binary_logits(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    """Checked K=1 logits as ``[B, T, H, W]``."""
    check_loss_inputs(output, target, weight, name)
    if output.logits.shape[2] != 1:
        raise ValueError(f"{name}: needs K=1 logits, got K={output.logits.shape[2]}")
    return output.logits[:, :, 0]


def bce_logits(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """SAMA-AVS ``BCEWithLogitsLoss`` (K=1): pixel mean per frame, frame-weighted mean.

    anno-free-AVS ``models/sam.py::backward_G`` (``loss: iou`` -> ``criterionBCE``) on the
    supervised frames only; with equal frame sizes the weighted frame mean equals the original
    mean over all their pixels.
    """
    logits = _binary_logits(output, target, weight, "bce_logits")
    per_pixel = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return weighted_frame_mean(per_pixel.mean(dim=(-2, -1)), weight)


def soft_iou(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """SAMA-AVS soft IoU loss (K=1): per frame ``1 - Σpg / (Σp + Σg - Σpg)`` with
    ``p = sigmoid(logits)``, frame-weighted mean (anno-free-AVS ``models/sam.py::_iou_loss``, which
    has no epsilon: the union is > 0 because ``p > 0``)."""
    probs = torch.sigmoid(_binary_logits(output, target, weight, "soft_iou"))
    gt = target.to(probs.dtype)
    inter = (probs * gt).sum(dim=(-2, -1))
    union = probs.sum(dim=(-2, -1)) + gt.sum(dim=(-2, -1)) - inter
    return weighted_frame_mean(1 - inter / union, weight)


def _soft_dice_per_frame(probs: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """AVSegFormer Dice loss per frame: ``1 - 2Σpg / (Σp² + 0.001 + Σg² + 0.001)``
    (``scripts/s4/loss.py::F1_Dice_loss``, ``scripts/avss/loss.py::Mix_Dice_loss``).
    probs, gt ``[B, T, H, W]`` -> ``[B, T]``."""
    inter = (probs * gt).sum(dim=(-2, -1))
    pred_sq = (probs * probs).sum(dim=(-2, -1)) + 0.001
    gt_sq = (gt * gt).sum(dim=(-2, -1)) + 0.001
    return 1 - 2 * inter / (pred_sq + gt_sq)


def dice(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """AVSegFormer Dice loss on ``sigmoid(logits)`` (K=1), frame-weighted mean.

    vvvb-github/AVSegFormer ``scripts/s4/loss.py::F1_Dice_loss`` (frame 1 of each clip, mean) and
    ``scripts/ms3/loss.py::F5_Dice_loss`` (all frames, mean).
    """
    probs = torch.sigmoid(_binary_logits(output, target, weight, "dice"))
    return weighted_frame_mean(_soft_dice_per_frame(probs, target.to(probs.dtype)), weight)


def mix_dice(output: AVSOutput, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """AVSegFormer "mix loss": Dice of the audio-gated mask feature against the foreground.

    ``aux["mask_feature"]`` ``[B, T, E, h, w]`` is averaged over channels, bilinearly resized to
    the target size (``align_corners=False``) and squashed with a sigmoid; the Dice target is
    ``target > 0`` (binary masks as they are; AVSS class indices -> any sounding object).
    Frame-weighted mean (AVSegFormer ``scripts/{s4,ms3}/loss.py::IouSemanticAwareLoss`` mix_loss,
    ``scripts/avss/loss.py::Mix_Dice_loss`` with ``gt_temporal_mask_flag``).
    """
    check_loss_inputs(output, target, weight, "mix_dice")
    mask_feature = output.aux.get("mask_feature")
    if mask_feature is None:
        raise KeyError("mix_dice: output.aux needs 'mask_feature' [B, T, E, h, w]")
    channel_mean = mask_feature.mean(dim=2).flatten(0, 1).unsqueeze(1)  # [B*T, 1, h, w]
    resized = F.interpolate(channel_mean, size=target.shape[-2:], mode="bilinear", align_corners=False)
    probs = torch.sigmoid(resized.reshape(target.shape))
    return weighted_frame_mean(_soft_dice_per_frame(probs, (target > 0).to(probs.dtype)), weight)


LOSS_TERMS: dict[str, LossFn] = {
    "dice": dice,
    "mix_dice": mix_dice,
    "bce_logits": bce_logits,
    "soft_iou": soft_iou,
    "bce": bce,
    "avss_ce": avss_ce,
    "avm_kl": avm_kl,
}


def compute_loss(
    loss_terms: Mapping[str, float], output: AVSOutput, target: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of a recipe's loss terms: ``(total, {name: unweighted value})``.

    Raises ``KeyError`` naming a term that is not in :data:`LOSS_TERMS`.
    """
    unknown = [name for name in loss_terms if name not in LOSS_TERMS]
    if unknown:
        raise KeyError(f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}")
    parts = {name: LOSS_TERMS[name](output, target, weight) for name in loss_terms}
    total = sum(
        (loss_terms[name] * value for name, value in parts.items()), start=output.logits.new_zeros(())
    )
    return total, parts
