"""AVSBench-Robust global scores (G-mIoU, G-F, G-FPR) from positive and negative test results.

Source: the AVSBench-Robust paper (arXiv 2502.00358), Eq. 2-4; the repository
(jiali-home/AVSBench-Robust) has no code for them (its README says they were aggregated by hand).
Plain floats, not torchmetrics: they combine the computed values of :mod:`openavs_st.metrics`
metrics (also importable from there).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def _as_fraction(value: float | Tensor, what: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(
            f"{what} must be a fraction in [0, 1], got {number} (divide percentages by 100)"
        )
    return number


def _positive_negative_harmonic(
    positive: float | Tensor, negative: float | Tensor, what: str
) -> float:
    """``2 P (1 - N) / (P + (1 - N))``; 0 when both terms are 0."""
    pos = _as_fraction(positive, f"{what}_pos")
    clean = 1.0 - _as_fraction(negative, f"{what}_neg")
    denominator = pos + clean
    return 0.0 if denominator == 0.0 else 2.0 * pos * clean / denominator


def g_miou(miou_pos: float | Tensor, miou_neg: float | Tensor) -> float:
    """AVSBench-Robust G-mIoU (paper Eq. 2): ``2 mIoU_P (1 - mIoU_N) / (mIoU_P + 1 - mIoU_N)``.

    ``miou_pos``: mIoU on positive (matching-audio) samples; ``miou_neg``: mIoU on the negative
    samples (measured against the original GT, as ROB's test scripts do). Fractions in [0, 1].
    """
    return _positive_negative_harmonic(miou_pos, miou_neg, "miou")


def g_f(f_pos: float | Tensor, f_neg: float | Tensor) -> float:
    """AVSBench-Robust G-F (paper Eq. 3): ``2 F_P (1 - F_N) / (F_P + 1 - F_N)``, fractions."""
    return _positive_negative_harmonic(f_pos, f_neg, "f")


def g_fpr(fprs: Iterable[float | Tensor]) -> float:
    """AVSBench-Robust G-FPR (paper Eq. 4): mean FPR over the negative conditions.

    ``fprs``: one FPR per negative test set (e.g. silence, noise, off-screen), fractions in [0, 1].
    """
    values = [_as_fraction(fpr, "fpr") for fpr in fprs]
    if not values:
        raise ValueError("g_fpr needs the FPR of at least one negative set")
    return sum(values) / len(values)
