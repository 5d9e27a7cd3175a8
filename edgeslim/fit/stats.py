"""Accuracy on a few hundred samples is noisy: intervals and paired tests for every figure a fit reports.

- Wilson's 95 % interval for an accuracy (k correct of n).
- McNemar's exact test for two models on the same samples: only the samples where they disagree
  carry information (b: only the first is right, c: only the second is right).
- The paired difference of two accuracies with Newcombe's 95 % interval (his method 10: the two
  accuracies' Wilson intervals combined with their correlation). Wald's interval, used before, is
  [0, 0] when the models never disagree, which claims a certainty 800 samples cannot give.
- The one-sided upper confidence bound of the loss, which is what fit's loss rule judges: the upper
  end of Newcombe's two-sided interval at level 2c - 1 bounds the loss at confidence c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

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


def newcombe_paired(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p1 - p2 for paired proportions: a both, b only the first, c only the second,
    d neither (Newcombe, Stat. Med. 17:2635, 1998, method 10, with its continuity-corrected phi)."""
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    low = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    high = (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2
    return p1 - p2 - math.sqrt(max(low, 0.0)), p1 - p2 + math.sqrt(max(high, 0.0))


def one_sided_z(confidence: float) -> float:
    """The normal quantile of a one-sided bound at ``confidence`` (0.9 -> 1.2816)."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"internal error: confidence {confidence} outside [0.5, 1)")
    return NormalDist().inv_cdf(confidence)


def compare(
    reference: Sequence[bool], candidate: Sequence[bool], confidence: float | None = None
) -> dict[str, float]:
    """The candidate against the reference on the same samples: loss in points, its 95 % interval,
    McNemar p and, with ``confidence``, the loss's one-sided upper bound at that confidence."""
    if len(reference) != len(candidate):
        raise ValueError("internal error: paired comparison on different samples")
    n = len(reference)
    b = sum(1 for r, c in zip(reference, candidate, strict=True) if r and not c)  # only the reference right
    c_ = sum(1 for r, c in zip(reference, candidate, strict=True) if c and not r)
    both = sum(1 for r, c in zip(reference, candidate, strict=True) if r and c)
    diff = (b - c_) / n if n else 0.0  # accuracy lost, as a fraction
    low, high = newcombe_paired(both, b, c_, n - both - b - c_)
    acc = sum(candidate) / n if n else 0.0
    lo, hi = wilson(sum(candidate), n)
    bound = {}
    if confidence is not None:
        upper = newcombe_paired(both, b, c_, n - both - b - c_, one_sided_z(confidence))[1]
        bound = {"loss_upper_points": 100 * upper, "confidence": confidence}
    return bound | {
        "accuracy": acc,
        "accuracy_ci95": [lo, hi],
        "loss_points": 100 * diff,
        "loss_ci95_points": [100 * low, 100 * high],
        "only_reference_right": b,
        "only_candidate_right": c_,
        "mcnemar_p": mcnemar(b, c_),
        "samples": n,
    }
