"""AVSBench-exact metrics: hand-worked cases, equality with a re-statement of the original loops,
grouping, modes, names, bad input and a two-process sync."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from openavs_st.metrics import (
    FalsePositiveRate,
    FScore,
    MaskIoU,
    TwoClassMIoU,
    _threshold_levels,
    f_score,
    false_positive_rate,
    g_f,
    g_fpr,
    g_miou,
    mask_iou,
    metric_name,
    two_class_miou,
)

F_ONE_FRAME = 0.8125  # hand-worked below: best threshold gives prec 1, rec 1/2 -> 1.3*.5/.8


def _logit(p: list[float]) -> torch.Tensor:
    probs = torch.tensor(p, dtype=torch.float64)
    return torch.log(probs / (1 - probs)).float()


def _frame(values: list[float], shape: tuple[int, int] = (2, 2)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, *shape)


# --------------------------------------------------------------------------------------------
# Re-statement of the original per-batch loops (AVSBench utility.py: Eval_Fmeasure, _eval_pr),
# one threshold at a time, float64 arithmetic, float32 thresholds and scores as in the original.
# --------------------------------------------------------------------------------------------


def reference_batch_f_scores(
    logits: torch.Tensor, gt: torch.Tensor, batch_frames: int, from_logits: bool = True
) -> list[float]:
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    scores = []
    for start in range(0, logits.shape[0], batch_frames):
        batch_pred = logits[start : start + batch_frames].float()
        batch_gt = gt[start : start + batch_frames].double()
        if from_logits:
            batch_pred = torch.sigmoid(batch_pred)
        avg_f = torch.zeros(255, dtype=torch.float64)
        img_num = 0
        score = torch.zeros(255, dtype=torch.float64)
        for pred, y in zip(batch_pred, batch_gt):
            if torch.mean(y) == 0.0:
                continue
            f_curve = torch.zeros(255, dtype=torch.float64)
            for i in range(255):
                y_temp = (pred >= thresholds[i]).double()
                tp = (y_temp * y).sum()
                prec, recall = tp / (y_temp.sum() + 1e-20), tp / (y.sum() + 1e-20)
                f_value = 1.3 * prec * recall / (0.3 * prec + recall)
                f_curve[i] = 0.0 if torch.isnan(f_value) else f_value
            avg_f += f_curve
            img_num += 1
            score = avg_f / img_num
        scores.append(score.max().item())
    return scores


def reference_mask_iou(logits: torch.Tensor, gt: torch.Tensor) -> float:
    """AVSBench utility.py::mask_iou over one batch = all frames."""
    pred = (torch.sigmoid(logits.float()) > 0.5).double()
    target = gt.double()
    num_pixels = pred.shape[-1] * pred.shape[-2]
    no_obj = target.sum((1, 2)) == 0
    inter = (pred * target).sum((1, 2))
    union = torch.max(pred, target).sum((1, 2))
    inter[no_obj] = ((1 - target) * (1 - pred)).sum((1, 2))[no_obj]
    union[no_obj] = num_pixels
    return (inter / (union + 1e-7)).mean().item()


def random_stream(seed: int, num_frames: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N,H,W] (some saturated to p == 1.0 in float32) and GT with empty-GT frames,
    among them frames 10-14 when present (an all-empty group for group size 5)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_frames, size, size, generator=gen) * 3
    logits[0, :2] = 30.0
    logits[-1, :3] = -30.0
    gt = (torch.rand(num_frames, size, size, generator=gen) > 0.6).float()
    gt[torch.rand(num_frames, generator=gen) < 0.2] = 0
    gt[10:15] = 0
    return logits, gt


def update_in_chunks(metric, logits: torch.Tensor, gt: torch.Tensor, chunks: list[int]) -> None:
    start = 0
    for size in chunks:
        metric.update(logits[start : start + size], gt[start : start + size])
        start += size
    assert start == logits.shape[0]


# --------------------------------------------------------------------------------------------
# mIoU
# --------------------------------------------------------------------------------------------


def test_empty_gt_frame_iou_is_fraction_predicted_background() -> None:
    logits = torch.full((1, 4, 4), -1.0)
    logits[0, 0, :3] = 1.0
    logits[0, 3, 3] = 0.0  # sigmoid(0) = 0.5 is not > 0.5: background
    iou = mask_iou(logits, torch.zeros(1, 4, 4))
    assert iou.item() == pytest.approx(13 / (16 + 1e-7), abs=1e-12)


def test_small_hand_worked_iou() -> None:
    # frame 0: pred {0,1,2}, GT {1,2,3,4} of a 2x3 frame -> inter 2, union 5
    # frame 1: pred {0}, GT {0,1} -> inter 1, union 2
    logits = torch.tensor([[-1.0] * 6, [-1.0] * 6])
    logits[0, :3] = 2.0
    logits[1, 0] = 2.0
    gt = torch.zeros(2, 6)
    gt[0, 1:5] = 1
    gt[1, :2] = 1
    iou = mask_iou(logits.reshape(2, 2, 3), gt.reshape(2, 2, 3))
    assert iou.item() == pytest.approx((2 / (5 + 1e-7) + 1 / (2 + 1e-7)) / 2, abs=1e-12)


def test_perfect_prediction_scores_one() -> None:
    gt = torch.zeros(3, 8, 8)
    gt[0, 2:5, 2:6] = 1
    gt[1, :, :4] = 1
    gt[2, 7, 7] = 1
    logits = gt * 20 - 10
    areas = (12, 32, 1)  # IoU = area / (area + 1e-7): the original's epsilon
    expected_iou = sum(a / (a + 1e-7) for a in areas) / 3
    assert mask_iou(logits, gt).item() == pytest.approx(expected_iou, abs=1e-12)
    assert f_score(logits, gt).item() == 1.0
    assert f_score(logits, gt, mode="pooled").item() == 1.0
    assert two_class_miou(logits, gt).item() == 1.0
    assert two_class_miou(logits, gt, mode="per_frame").item() == 1.0


def test_miou_matches_original_and_accepts_all_layouts() -> None:
    logits, gt = random_stream(seed=1, num_frames=20)
    expected = reference_mask_iou(logits, gt)
    flat = mask_iou(logits, gt).item()
    assert flat == pytest.approx(expected, abs=1e-6)
    five_d = logits.reshape(4, 5, 1, 12, 12)
    assert mask_iou(five_d, gt.reshape(4, 5, 12, 12)).item() == flat  # target without channel
    assert mask_iou(five_d, gt.reshape(4, 5, 1, 12, 12)).item() == flat
    assert mask_iou(logits.unsqueeze(1), gt.bool().unsqueeze(1)).item() == flat
    assert mask_iou(logits.half(), gt).item() == pytest.approx(expected, abs=1e-2)


def test_valid_drops_frames() -> None:
    logits, gt = random_stream(seed=2, num_frames=10)
    valid = torch.tensor([True, False] * 5)
    assert (
        mask_iou(logits, gt, valid=valid.reshape(2, 5)).item()
        == mask_iou(logits[valid], gt[valid]).item()
    )
    assert f_score(logits, gt, group_size=2, valid=valid).item() == pytest.approx(
        f_score(logits[valid], gt[valid], group_size=2).item(), abs=1e-15
    )


# --------------------------------------------------------------------------------------------
# F-score
# --------------------------------------------------------------------------------------------


def test_threshold_levels_equal_the_original_comparisons() -> None:
    thresholds = torch.linspace(0, 1 - 1e-10, 255)  # float32, last one rounds to 1.0
    values = torch.cat(
        [
            thresholds,
            torch.nextafter(thresholds, torch.tensor(math.inf)),
            torch.nextafter(thresholds, torch.tensor(-math.inf)),
            torch.tensor([-0.0, 0.0, 1.0, 1.5, -2.0, 1e30, -1e30, math.inf, -math.inf]),
            torch.rand(5000, generator=torch.Generator().manual_seed(0)),
        ]
    )
    # level = number of thresholds t with value >= t, written as the original's comparisons
    expected = (values.unsqueeze(1) >= thresholds.unsqueeze(0)).sum(1)
    assert torch.equal(_threshold_levels(values).long(), expected)


def test_hand_worked_f_curve_mean_then_max() -> None:
    # Frame A: scores [.9, .6, .3, .1], GT [1, 0, 1, 0]. F per threshold band:
    #   t <= .1: 4 pos, tp 2 -> .565217    (.1, .3]: 3 pos, tp 2 -> .722222
    #   (.3, .6]: 2 pos, tp 1 -> .5        (.6, .9]: 1 pos, tp 1 -> prec 1, rec .5 -> .8125
    #   t > .9: nothing positive -> 0      max = .8125
    # Frame B: scores [.2, .2, .8, .8], GT [1, 1, 0, 0]: t<=.2 -> .565217, otherwise 0.
    # One group {A, B}: the mean curve peaks in band (.1,.2] at (.722222 + .565217) / 2, below the
    # mean of the per-frame maxima (.8125 + .565217) / 2 that groups of one frame give.
    frame_a, gt_a = _frame([0.9, 0.6, 0.3, 0.1]), _frame([1, 0, 1, 0])
    frame_b, gt_b = _frame([0.2, 0.2, 0.8, 0.8]), _frame([1, 1, 0, 0])
    f_all, f_two_thirds = 1.3 * 0.5 / (0.15 + 1), 1.3 * (2 / 3) / (0.2 + 1)
    scores, gt = torch.cat([frame_a, frame_b]), torch.cat([gt_a, gt_b])

    assert f_score(frame_a, gt_a, from_logits=False).item() == pytest.approx(F_ONE_FRAME, abs=1e-12)
    together = f_score(scores, gt, group_size=2, from_logits=False).item()
    assert together == pytest.approx((f_two_thirds + f_all) / 2, abs=1e-12)
    separately = f_score(scores, gt, group_size=1, from_logits=False).item()
    assert separately == pytest.approx((F_ONE_FRAME + f_all) / 2, abs=1e-12)
    # the same probabilities given as logits with the sigmoid applied
    logits = _logit([0.9, 0.6, 0.3, 0.1, 0.2, 0.2, 0.8, 0.8]).reshape(2, 2, 2)
    assert f_score(logits, gt, group_size=2).item() == pytest.approx(together, abs=1e-12)


def test_all_empty_group_counts_zero_and_is_averaged_in() -> None:
    frame_a, gt_a = _frame([0.9, 0.6, 0.3, 0.1]), _frame([1, 0, 1, 0])
    empty = torch.zeros(1, 2, 2)
    scores = torch.cat([frame_a, frame_a, frame_a, frame_a])
    gt = torch.cat([gt_a, empty, empty, empty])  # groups of 2: {A, empty-GT}, {empty, empty}
    avsbench = f_score(scores, gt, group_size=2, from_logits=False).item()
    assert avsbench == pytest.approx((F_ONE_FRAME + 0.0) / 2, abs=1e-12)
    pooled = f_score(scores, gt, mode="pooled", from_logits=False).item()
    assert pooled == pytest.approx(F_ONE_FRAME, abs=1e-12)
    assert f_score(scores[1:], gt[1:], mode="pooled").item() == 0.0  # no frame with GT at all


@pytest.mark.parametrize("group_size", [20, 10, 5])
def test_avsbench_mode_equals_original_per_batch_loop(group_size: int) -> None:
    logits, gt = random_stream(seed=3, num_frames=47)
    expected = reference_batch_f_scores(logits, gt, group_size)
    assert any(s == 0.0 for s in expected) == (group_size == 5)  # the all-empty group
    metric = FScore(mode="avsbench", group_size=group_size)
    update_in_chunks(metric, logits, gt, [3, 7, 1, 13, 2, 9, 12])  # none divides the group size
    assert metric.compute().item() == pytest.approx(sum(expected) / len(expected), abs=1e-6)


def test_avsbench_mode_without_sigmoid_equals_sama_loop() -> None:
    logits, gt = random_stream(seed=4, num_frames=23)
    expected = reference_batch_f_scores(logits, gt, 5, from_logits=False)
    metric = FScore(group_size=5, from_logits=False)
    update_in_chunks(metric, logits.reshape(23, 1, 12, 12), gt.reshape(23, 1, 12, 12), [4, 4, 15])
    assert metric.compute().item() == pytest.approx(sum(expected) / len(expected), abs=1e-6)


def test_forward_keeps_the_group_stream() -> None:
    logits, gt = random_stream(seed=5, num_frames=17)
    expected = reference_batch_f_scores(logits, gt, 5)
    metric = FScore(group_size=5)
    batch_value = metric(logits[:3], gt[:3])
    assert batch_value.item() == pytest.approx(
        reference_batch_f_scores(logits[:3], gt[:3], 5)[0], abs=1e-6
    )
    metric(logits[3:], gt[3:])
    assert metric.compute().item() == pytest.approx(sum(expected) / len(expected), abs=1e-6)


def test_pooled_mode_is_independent_of_update_batch_size() -> None:
    logits, gt = random_stream(seed=6, num_frames=31)
    expected = reference_batch_f_scores(logits, gt, 31)[0]  # one batch holding every frame
    values = []
    for chunks in ([31], [1] * 31, [5, 9, 2, 15]):
        metric = FScore(mode="pooled")
        update_in_chunks(metric, logits, gt, chunks)
        values.append(metric.compute().item())
    assert values == pytest.approx([expected] * 3, abs=1e-6)
    assert max(values) - min(values) < 1e-12


def test_from_logits_false_thresholds_raw_logits() -> None:
    gt = _frame([1, 1, 0, 0])
    # Negative logits: never >= any threshold (t >= 0) without the sigmoid, yet perfectly
    # separable as probabilities (.269 vs .047).
    negative = _frame([-1.0, -1.0, -3.0, -3.0])
    assert f_score(negative, gt).item() == 1.0
    assert f_score(negative, gt, from_logits=False).item() == 0.0
    # Logits >= 1 are positive at every threshold without the sigmoid: F = F(all positive).
    large = _frame([3.0, 3.0, 2.0, 2.0])
    assert f_score(large, gt).item() == 1.0
    assert f_score(large, gt, from_logits=False).item() == pytest.approx(
        1.3 * 0.5 / 1.15, abs=1e-12
    )


# --------------------------------------------------------------------------------------------
# Two-class mIoU, FPR, global scores
# --------------------------------------------------------------------------------------------


def test_two_class_miou_hand_case_both_modes() -> None:
    # frame 0 (2x3): pred {0,1,2}, GT {1,2,3,4}: fg 2/5; bg pred {3,4,5}, GT {0,5}: 1/4
    # frame 1: GT empty, pred empty: fg union 0 -> 1, bg 6/6
    logits = torch.full((2, 6), -1.0)
    logits[0, :3] = 1.0
    gt = torch.zeros(2, 6)
    gt[0, 1:5] = 1
    logits, gt = logits.reshape(2, 2, 3), gt.reshape(2, 2, 3)
    per_frame = two_class_miou(logits, gt, mode="per_frame").item()
    assert per_frame == pytest.approx(((0.4 + 0.25) / 2 + 1.0) / 2, abs=1e-12)
    dataset = two_class_miou(logits, gt, mode="dataset").item()
    assert dataset == pytest.approx((2 / 5 + (1 + 6) / (4 + 6)) / 2, abs=1e-12)


def test_fpr_hand_case() -> None:
    logits = torch.full((2, 4, 4), -2.0)
    logits[0, 0, :3] = 0.5
    logits[0, 1, 0] = 0.0  # not > 0.5 after the sigmoid
    logits[1, :2] = 4.0
    gt = torch.ones(2, 4, 4)  # ignored
    expected = (3 / (16 + 1e-7) + 8 / (16 + 1e-7)) / 2
    assert false_positive_rate(logits).item() == pytest.approx(expected, abs=1e-12)
    metric = FalsePositiveRate()
    metric.update(logits[:1], gt[:1])
    metric.update(logits[1:], gt[1:])
    assert metric.compute().item() == pytest.approx(expected, abs=1e-12)


def test_global_robust_scores_hand_case() -> None:
    assert g_miou(0.8, 0.2) == pytest.approx(2 * 0.8 * 0.8 / 1.6)
    assert g_miou(0.6, 0.5) == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    assert g_f(1.0, 0.0) == 1.0
    assert g_f(0.9, 1.0) == 0.0  # negatives fully segmented: nothing is robust
    assert g_f(0.0, 1.0) == 0.0
    assert g_miou(torch.tensor(0.5), torch.tensor(0.5)) == pytest.approx(0.5)
    assert g_fpr([0.1, 0.2, 0.3]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="miou_pos.*percentages"):
        g_miou(78.7, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        g_fpr([])


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_empty_metric_is_nan() -> None:
    for metric in (MaskIoU(), FScore(), FScore(mode="pooled"), TwoClassMIoU(), FalsePositiveRate()):
        assert math.isnan(metric.compute().item())


# --------------------------------------------------------------------------------------------
# Names and bad input
# --------------------------------------------------------------------------------------------


def test_names_carry_the_mode() -> None:
    assert metric_name("test", "miou", "avsbench") == "test/miou_avsbench"
    assert metric_name("test", "f", "pooled") == "test/f_pooled"
    assert metric_name("test_noise", "fpr") == "test_noise/fpr"
    assert MaskIoU().name == "miou_avsbench"
    assert FScore(mode="pooled").name == "f_pooled"
    assert FScore().name == "f_avsbench"
    assert FScore(from_logits=False).name == "f_nosigmoid_avsbench"
    assert TwoClassMIoU().name == "miou_2class_dataset"
    assert TwoClassMIoU(mode="per_frame").name == "miou_2class_per_frame"
    assert FalsePositiveRate().name == "fpr"


def test_bad_input_is_rejected_clearly() -> None:
    logits = torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="0/255"):
        mask_iou(logits, torch.full((2, 4, 4), 255.0))
    with pytest.raises(ValueError, match="K=2"):
        mask_iou(torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 2, 2, 4, 4))
    with pytest.raises(ValueError, match="target shape"):
        mask_iou(logits, torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        mask_iou(torch.full((2, 4, 4), math.nan), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="valid has 3 entries"):
        mask_iou(logits, torch.zeros(2, 4, 4), valid=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        mask_iou(logits.long(), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="mode"):
        FScore(mode="batch")
    with pytest.raises(ValueError, match="group_size"):
        FScore(group_size=0)
    with pytest.raises(ValueError, match="mode"):
        TwoClassMIoU(mode="per_class")


# --------------------------------------------------------------------------------------------
# Two processes (gloo on CPU)
# --------------------------------------------------------------------------------------------

RANK_FRAMES = {0: (11, [4, 7]), 1: (3, [3])}  # rank 1 never closes a group of 5


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    num_frames, chunks = RANK_FRAMES[rank]
    logits, gt = random_stream(seed=10 + rank, num_frames=num_frames)
    metrics = {
        "f_avsbench": FScore(group_size=5),
        "f_pooled": FScore(mode="pooled"),
        "miou": MaskIoU(),
        "miou_2class": TwoClassMIoU(),
        "fpr": FalsePositiveRate(),
    }
    results = {}
    for key, metric in metrics.items():
        update_in_chunks(metric, logits, gt, chunks)
        results[key] = metric.compute().item()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed gloo unavailable",
)
@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="no fork start method")
def test_two_process_sync(tmp_path: Path) -> None:
    # "fork" rather than mp.spawn's "spawn": the children reuse the parent's imports instead of
    # importing torch, torchvision and torchmetrics again (tens of seconds on a loaded 2-core box).
    mp.start_processes(
        _ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    streams = [random_stream(seed=10 + rank, num_frames=RANK_FRAMES[rank][0]) for rank in (0, 1)]
    group_scores = [s for logits, gt in streams for s in reference_batch_f_scores(logits, gt, 5)]
    all_logits = torch.cat([logits for logits, _ in streams])
    all_gt = torch.cat([gt for _, gt in streams])
    expected = {
        "f_avsbench": sum(group_scores) / len(group_scores),  # 3 groups: 5, 5+1 open, 3 open
        "f_pooled": reference_batch_f_scores(all_logits, all_gt, len(all_gt))[0],
        "miou": reference_mask_iou(all_logits, all_gt),
        "miou_2class": two_class_miou(all_logits, all_gt).item(),
        "fpr": false_positive_rate(all_logits).item(),
    }
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == pytest.approx(expected, abs=1e-6)
