"""Truncated-SVD factorizations of Dense and conv kernels (pure numpy).

Each splits the singular values evenly, sqrt(sigma) to each factor, so the two new kernels have
similar ranges (which int8 quantization later appreciates).

- Dense W (M_in x M_out) ~ A B with A = U_K sqrt(S_K), B = sqrt(S_K) V_K^T.
- Conv "channel": W as (K_h K_w D_in) x D_out -> a K_h x K_w conv to R filters, then 1x1 R -> D_out.
- Conv "spatial": W as (K_h D_in) x (K_w D_out) -> a K_h x 1 conv to R channels, then 1 x K_w to D_out.
"""

from __future__ import annotations

import math

import numpy as np


def choose_rank(
    sigma: np.ndarray,
    rank: int | None = None,
    energy: float | None = None,
    max_rank_for_ratio: int | None = None,
) -> int:
    """The truncation rank: explicit (capped at full rank), the smallest keeping ``energy`` of sum sigma^2,
    or the largest a parameter budget allows (``max_rank_for_ratio``)."""
    full = int(np.sum(sigma > sigma.max() * 1e-7)) if sigma.size and sigma.max() > 0 else 0
    if rank is not None:
        return min(rank, len(sigma))
    if energy is not None:
        kept = np.cumsum(sigma**2) / max(float(np.sum(sigma**2)), 1e-30)
        return int(min(len(sigma), np.searchsorted(kept, energy - 1e-9) + 1, max(full, 1)))
    assert max_rank_for_ratio is not None
    return min(max_rank_for_ratio, len(sigma))


def truncation_error(sigma: np.ndarray, k: int) -> float:
    """Relative Frobenius error of the rank-k truncation: sqrt(sum_{i>=k} sigma_i^2 / sum sigma_i^2)."""
    total = float(np.sum(sigma**2))
    return 0.0 if total == 0 else math.sqrt(max(0.0, float(np.sum(sigma[k:] ** 2)) / total))


def rank_for_error(sigma: np.ndarray, error: float) -> int:
    """The smallest rank whose truncation error is at most ``error``."""
    for k in range(1, len(sigma) + 1):
        if truncation_error(sigma, k) <= error + 1e-9:
            return k
    return len(sigma)


def split(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with A B the best rank-k approximation of ``matrix`` (Eckart-Young)."""
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:k])
    return (u[:, :k] * root).astype(np.float32), (root[:, None] * vt[:k]).astype(np.float32)


def channel_matrix(kernel: np.ndarray) -> np.ndarray:
    kh, kw, d_in, d_out = kernel.shape
    return kernel.reshape(kh * kw * d_in, d_out)


def spatial_matrix(kernel: np.ndarray) -> np.ndarray:
    """Rows (k_h, c_in), columns (k_w, c_out): a rank-R split is a K_h x 1 conv then a 1 x K_w conv."""
    kh, kw, d_in, d_out = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(kh * d_in, kw * d_out)


def channel_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    kh, kw, d_in, d_out = kernel.shape
    a, b = split(channel_matrix(kernel), r)
    return a.reshape(kh, kw, d_in, r), b.reshape(1, 1, r, d_out)


def spatial_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    kh, kw, d_in, d_out = kernel.shape
    a, b = split(spatial_matrix(kernel), r)
    vertical = a.reshape(kh, d_in, r)[:, None, :, :]  # (K_h, 1, D_in, R)
    horizontal = b.reshape(r, kw, d_out).transpose(1, 0, 2)[None]  # (1, K_w, R, D_out)
    return vertical, horizontal


def singular_values(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
