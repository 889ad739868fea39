"""Vectorised AVSBench F-score vs the original's per-threshold Python loop.

The loop re-states OpenNLPLab/AVSBench ``avs_scripts/avs_s4/utils/utility.py::Eval_Fmeasure`` /
``_eval_pr`` (float32, one threshold at a time, one frame at a time, batches of ``group_size``
frames). Both must give the same value (|diff| <= 1e-6); the script prints the timings and the
speed ratio.

    python benchmarks/metrics.py [--frames 40] [--size 224] [--group-size 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from openavs_st.metrics import FScore


def original_style_f_score(logits: torch.Tensor, gt: torch.Tensor, group_size: int) -> float:
    """Mean over batches of ``group_size`` frames of the original's per-batch F (float32 loops)."""
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    batch_scores = []
    for start in range(0, logits.shape[0], group_size):
        probs = torch.sigmoid(logits[start : start + group_size])
        masks = gt[start : start + group_size]
        curve_sum, valid_frames, score = 0.0, 0, torch.zeros(255)
        for prob, mask in zip(probs, masks):
            if torch.mean(mask) == 0.0:
                continue
            precision, recall = torch.zeros(255), torch.zeros(255)
            for i in range(255):
                binary = (prob >= thresholds[i]).float()
                true_pos = (binary * mask).sum()
                precision[i] = true_pos / (binary.sum() + 1e-20)
                recall[i] = true_pos / (mask.sum() + 1e-20)
            f_curve = 1.3 * precision * recall / (0.3 * precision + recall)
            f_curve[torch.isnan(f_curve)] = 0
            curve_sum += f_curve
            valid_frames += 1
            score = curve_sum / valid_frames
        batch_scores.append(score.max().item())
    return sum(batch_scores) / len(batch_scores)


def vectorised_f_score(logits: torch.Tensor, gt: torch.Tensor, group_size: int) -> float:
    metric = FScore(mode="avsbench", group_size=group_size)
    metric.update(logits, gt)
    return metric.compute().item()


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall time in seconds over ``repeats`` runs, the function's value)."""
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--group-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    # Smooth blobs, as real logits: low-resolution noise upsampled, plus empty-GT frames.
    coarse = torch.randn(args.frames, 1, args.size // 16, args.size // 16, generator=gen) * 4
    logits = torch.nn.functional.interpolate(coarse, size=(args.size, args.size), mode="bilinear")
    logits = logits.squeeze(1)
    gt = (logits + torch.randn(logits.shape, generator=gen) * 2 > 1).float()
    gt[::7] = 0

    loop_s, loop_value = best_time(
        lambda: original_style_f_score(logits, gt, args.group_size), args.repeats
    )
    vec_s, vec_value = best_time(
        lambda: vectorised_f_score(logits, gt, args.group_size), args.repeats
    )
    assert abs(loop_value - vec_value) <= 1e-6, (loop_value, vec_value)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.frames} frames x {args.size}x{args.size}, group_size {args.group_size}, "
        f"best of {args.repeats}"
    )
    print(f"per-threshold loop : {loop_s * 1e3:9.1f} ms   F = {loop_value:.8f}")
    print(f"vectorised FScore  : {vec_s * 1e3:9.1f} ms   F = {vec_value:.8f}")
    print(f"|difference|       : {abs(loop_value - vec_value):.2e}")
    print(f"speed-up           : {loop_s / vec_s:9.1f}x")


if __name__ == "__main__":
    main()
