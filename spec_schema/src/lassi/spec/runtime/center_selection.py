"""Step 1 of center smoothing: the draw with the smallest median distance to the others.

Kumar & Goldstein (2021, Alg. 1): among n0 outputs, the center ẑ is the one whose median ℓ2
distance to the others is smallest (a β = 2 approximate minimum enclosing ball of half the mass);
:func:`min_median_index` finds it exactly, pruning with lower bounds from a principal subspace.
With the order statistics and float64 distances that steps 2-4 use too
(:mod:`lassi.spec.runtime.center_smoothing`).
"""

from __future__ import annotations

import math

import numpy as np

# Step 1 selection (see min_median_index): exact medians of the first PILOT_ROWS draws give a
# threshold; the other rows are pruned with lower bounds from a PROJECTION_DIM-dimensional
# principal subspace (found on the first PCA_ROWS draws), and only survivors get exact medians.
# Rows are handled SELECTION_BLOCK at a time, so memory is O(n0 · block).
PILOT_ROWS = 128
PROJECTION_DIM = 32
PCA_ROWS = 2048
SELECTION_BLOCK = 512
TIE_TOLERANCE = 1e-10


def order_statistic(values: np.ndarray, rank: int) -> float:
    """The ``rank``-th smallest value (1-based), without interpolation."""
    if not 1 <= rank <= values.size:
        raise ValueError(f"rank {rank} outside 1..{values.size}")
    return float(np.partition(values, rank - 1)[rank - 1])


def lower_median(values: np.ndarray) -> float:
    """The median of an odd count, the lower of the two middle values of an even count."""
    return order_statistic(values, (values.size + 1) // 2)


def distances_to(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """ℓ2 distances [B] of points [B, k] to center [k], in float64 (row-wise, batch-independent)."""
    diff = np.asarray(points, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    return np.sqrt(np.sum(diff * diff, axis=1))


def _gram_factors(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors L [N, k+2], R [k+2, N] with (L @ R)_ij = ||p_i − p_j||² (one matmul per block):
    rows [p_i, ||p_i||², 1] against columns [−2 p_j, 1, ||p_j||²]."""
    sq = np.einsum("ij,ij->i", points, points)[:, None]
    ones = np.ones_like(sq)
    left = np.hstack([points, sq, ones])
    return left, np.ascontiguousarray(np.hstack([-2.0 * points, ones, sq]).T)


def min_median_index(points: np.ndarray) -> int:
    """Step 1 selection: the index of the point with the smallest median distance to the others.

    The median of the n0 − 1 distances is :func:`lower_median`'s. Squared distances come from
    float64 Gram blocks of the mean-centred points; medians within ``TIE_TOLERANCE`` · max ||p||²
    of the smallest (far above Gram rounding) count as ties and the lowest index wins, so exact
    ties (e.g. two points, or repeated outputs) resolve like a brute-force argmin.

    Exact, but fast. The first ``PILOT_ROWS`` rows give a threshold τ (their best median). A later
    row can only reach τ if at least ⌈(n0 − 1)/2⌉ of its squared distances are below τ, and
    distances after an orthogonal projection are lower bounds of the true ones. So each block
    of rows passes two cheap filters before its exact medians are computed: a count along the
    first principal axis (sorted coordinates and a binary search), then a float32 count in the
    ``PROJECTION_DIM``-dimensional principal subspace. Memory is O(n0 · SELECTION_BLOCK).
    """
    x = np.asarray(points, dtype=np.float64)
    count = x.shape[0]
    x = x - x.mean(axis=0)
    left, right = _gram_factors(x)
    max_sq = float(left[:, -2].max())
    tie = TIE_TOLERANCE * max_sq
    rank = (count - 2) // 2 + 1  # 1-based rank of the lower median among the n0 − 1 others

    def exact_sq_medians(rows: np.ndarray) -> np.ndarray:
        d2 = np.maximum(left[rows] @ right, 0.0)
        d2[np.arange(rows.size), rows] = -1.0  # self: always the smallest, then skipped
        d2.partition(rank, axis=1)  # in place; 0-based position `rank` = rank-th among others
        return d2[:, rank].copy()

    rows = [np.arange(min(PILOT_ROWS, count))]
    medians = [exact_sq_medians(rows[0])]
    tau = float(medians[0].min())
    if count > PILOT_ROWS and tau > tie:  # (else no later row can win: ties keep the lowest index)
        y = _principal_coordinates(x)
        axis, axis_sorted = y[:, 0], np.sort(y[:, 0])
        y_left, y_right = _gram_factors(y.astype(np.float32))
        slack = 1e-4 * max_sq  # bounds the rounding of the projected squared distances
        for start in range(PILOT_ROWS, count, SELECTION_BLOCK):
            block = np.arange(start, min(start + SELECTION_BLOCK, count))
            # Filter 1: (y_i1 − y_j1)² ≤ d²_ij; count the j within reach on the first axis.
            reach = math.sqrt(tau + tie + slack)
            hi = np.searchsorted(axis_sorted, axis[block] + reach, side="right")
            lo = np.searchsorted(axis_sorted, axis[block] - reach, side="left")
            block = block[hi - lo - 1 >= rank]  # minus self
            # Filter 2: the same count in the principal subspace.
            lower = y_left[block] @ y_right
            below = np.count_nonzero(lower < tau + tie + slack, axis=1) - 1
            block = block[below >= rank]
            if block.size > 0:
                rows.append(block)
                medians.append(exact_sq_medians(block))
                tau = min(tau, float(medians[-1].min()))
    all_rows, all_medians = np.concatenate(rows), np.concatenate(medians)
    return int(all_rows[all_medians <= tau + tie].min())


def _principal_coordinates(x: np.ndarray) -> np.ndarray:
    """Coordinates [N, PROJECTION_DIM] of x in an orthonormal basis of its dominant subspace,
    axes by decreasing variance (randomized range finder with one power iteration on the first
    PCA_ROWS rows, then a small eigendecomposition). Only the pruning rate depends on it."""
    sample = x[:PCA_ROWS]
    probe = np.random.default_rng(0).standard_normal((sample.shape[0], PROJECTION_DIM))
    basis = np.linalg.qr(sample.T @ probe)[0]
    basis = np.linalg.qr(sample.T @ (sample @ basis))[0]
    y = x @ basis
    axes = np.linalg.eigh(y.T @ y)[1][:, ::-1]
    return y @ axes
