"""Accuracy on a few hundred samples is noisy: intervals and paired tests for every figure a fit reports.

- Wilson's 95 % interval for an accuracy (k correct of n).
- McNemar's exact test for two models on the same samples: only the samples where they disagree
  carry information (b: only the first is right, c: only the second is right).
- The paired difference of two accuracies with its 95 % interval, from the same discordant counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(b: int, c: int) -> float:
    """Two-sided exact p-value that the two models are equally accurate."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(reference: Sequence[bool], candidate: Sequence[bool]) -> dict[str, float]:
    """The candidate against the reference on the same samples: loss in points, its interval, McNemar p."""
    if len(reference) != len(candidate):
        raise ValueError("internal error: paired comparison on different samples")
    n = len(reference)
    b = sum(1 for r, c in zip(reference, candidate, strict=True) if r and not c)  # only the reference right
    c_ = sum(1 for r, c in zip(reference, candidate, strict=True) if c and not r)
    diff = (b - c_) / n if n else 0.0  # accuracy lost, as a fraction
    variance = ((b + c_) / n - diff * diff) / n if n else 0.0
    half = Z95 * math.sqrt(max(variance, 0.0))
    acc = sum(candidate) / n if n else 0.0
    lo, hi = wilson(sum(candidate), n)
    return {
        "accuracy": acc,
        "accuracy_ci95": [lo, hi],
        "loss_points": 100 * diff,
        "loss_ci95_points": [100 * (diff - half), 100 * (diff + half)],
        "only_reference_right": b,
        "only_candidate_right": c_,
        "mcnemar_p": mcnemar(b, c_),
        "samples": n,
    }
