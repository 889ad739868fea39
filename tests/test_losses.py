"""TPAVI loss terms against hand-computed tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from backbones.base import AVSOutput
from backbones.losses import LOSS_TERMS, avm_kl, avss_ce, bce, compute_loss


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def binary_output(frame_logits: list[list[list[float]]], **aux) -> AVSOutput:
    """B=1, K=1 logits from per-frame HxW lists."""
    return AVSOutput(logits=torch.tensor(frame_logits)[None, :, None], aux=aux)


def test_bce_weights_frames_and_clamps_the_log_like_nn_bceloss() -> None:
    output = binary_output([[[math.log(3)] * 2] * 2, [[100.0] * 2] * 2])  # p = 0.75 ; p = 1
    target = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    frame0 = (3 * -math.log(0.75) - math.log(0.25)) / 4
    frame1 = 100.0  # log(1 - 1) clamped at -100 as nn.BCELoss does
    # S4 training: only frame 1 of the clip carries ground truth.
    assert bce(output, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(frame0)
    assert bce(output, target, torch.tensor([[1.0, 1.0]])).item() == pytest.approx((frame0 + frame1) / 2)
    assert bce(output, target, torch.zeros(1, 2)).item() == 0.0
    # Same as the original nn.BCELoss()(sigmoid(pred), gt) over all frames.
    original = torch.nn.BCELoss()(torch.sigmoid(output.logits[:, :, 0]), target)
    assert bce(output, target, torch.ones(1, 2)).item() == pytest.approx(original.item())


def test_avss_ce_spatial_mean_then_flag_weighted_mean() -> None:
    two_class = [0.0, math.log(3)]  # softmax (0.25, 0.75)
    logits = torch.tensor(
        [[two_class, two_class], [two_class, two_class], [two_class, two_class]]
    )  # [T=3, W=2, K]
    output = AVSOutput(logits=logits.permute(0, 2, 1)[None, :, :, None, :])  # [1, 3, K=2, 1, 2]
    target = torch.tensor([[[[1, 0]], [[0, 0]], [[1, 1]]]])
    frame0 = (-math.log(0.75) - math.log(0.25)) / 2
    frame1 = -math.log(0.25)
    weight = torch.tensor([[1.0, 1.0, 0.0]])  # gt_temporal_mask_flag: frame 3 is padding
    assert avss_ce(output, target, weight).item() == pytest.approx((frame0 + frame1) / 2)


def test_avm_kl_binary_pools_raw_logits_then_sigmoid_and_sums_frames() -> None:
    m0 = 1 / (1 + math.exp(-0.5))  # sigmoid(mean([[2, 0], [0, 0]])), not mean(sigmoid)
    visual = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).view(2, 2, 1, 1)  # [B*T, C=2, 1, 1]
    audio = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])  # [B*T, C]
    audio_stage2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    output = binary_output(
        [[[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
        stage_features=[visual, visual, visual],
        audio_aligned=[audio, None, audio_stage2],  # a stage without TPAVI is skipped
    )
    masked = [[2 * m0, 0.0], [0.0, 0.0]]  # spatial mean of visual * mask per frame
    stage1 = sum(kl(softmax(a), softmax(v)) for a, v in zip(audio.tolist(), masked))
    stage2 = sum(kl(softmax(a), softmax(v)) for a, v in zip(audio_stage2.tolist(), masked))
    target = torch.zeros(1, 2, 2, 2)
    loss = avm_kl(output, target, torch.ones(1, 2))
    assert loss.item() == pytest.approx((stage1 + stage2) / 2, rel=1e-5)


def test_avm_kl_multiclass_uses_hard_non_background_mask_and_flag_mean() -> None:
    # argmax per pixel: frame 0 = [[0, 2], [1, 2]], frame 1 = all class 2.
    classes = torch.tensor([[[0, 2], [1, 2]], [[2, 2], [2, 2]]])
    logits = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()[None].requires_grad_()
    visual = torch.tensor([[4.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1).requires_grad_()
    audio = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    output = AVSOutput(logits=logits, aux={"stage_features": [visual], "audio_aligned": [audio]})
    target = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    weight = torch.tensor([[1.0, 0.0]])  # frame 1 is padding
    # Original: background = last class (2) -> mask fraction 2/4 on frame 0.
    last_as_background = avm_kl(output, target, weight)
    assert last_as_background.item() == pytest.approx(kl(softmax([1.0, 0.0]), softmax([2.0, 0.0])), rel=1e-5)
    # background_index=0 (the data's background) -> mask fraction 3/4.
    zero_as_background = avm_kl(output, target, weight, background_index=0)
    assert zero_as_background.item() == pytest.approx(kl(softmax([1.0, 0.0]), softmax([3.0, 0.0])), rel=1e-5)
    last_as_background.backward()
    assert logits.grad is None  # a hard mask: no gradient to the logits
    assert visual.grad is not None and visual.grad.abs().sum() > 0


def test_compute_loss_sums_recipe_terms() -> None:
    visual = torch.tensor([[1.0, 0.0]]).view(1, 2, 1, 1)
    output = binary_output([[[0.5]]], stage_features=[visual], audio_aligned=[torch.tensor([[0.0, 1.0]])])
    target, weight = torch.ones(1, 1, 1, 1), torch.ones(1, 1)
    total, parts = compute_loss({"bce": 1.0, "avm_kl": 0.5}, output, target, weight)
    assert set(parts) == {"bce", "avm_kl"}
    assert parts["bce"].item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))))
    assert total.item() == pytest.approx(parts["bce"].item() + 0.5 * parts["avm_kl"].item())
    with pytest.raises(KeyError, match="focal"):
        compute_loss({"focal": 1.0}, output, target, weight)
    assert {"bce", "avm_kl", "avss_ce"} <= set(LOSS_TERMS)


def test_bad_shapes_are_reported_with_the_loss_name() -> None:
    output = binary_output([[[0.0, 0.0], [0.0, 0.0]]])
    with pytest.raises(ValueError, match=r"bce: target must be \[B, T, H, W\]"):
        bce(output, torch.zeros(1, 1, 3, 3), torch.ones(1, 1))
    with pytest.raises(ValueError, match="avss_ce: weight"):
        avss_ce(output, torch.zeros(1, 1, 2, 2), torch.ones(1, 5))
    with pytest.raises(ValueError, match="bce: needs K=1"):
        bce(AVSOutput(logits=torch.zeros(1, 1, 3, 2, 2)), torch.zeros(1, 1, 2, 2), torch.ones(1, 1))
    with pytest.raises(KeyError, match="stage_features"):
        avm_kl(output, torch.zeros(1, 1, 2, 2), torch.ones(1, 1))
