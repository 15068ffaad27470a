"""Exact binomial tail bounds for center smoothing (numpy and the standard library only).

* :func:`binomial_sf` P(Binomial(n, p) ≥ k) for every k at once, from log-space probabilities.
* :func:`clopper_pearson_lower`: the one-sided (1 − α) Clopper–Pearson lower bound on p from c
  successes in n trials (Clopper & Pearson 1934): the p with P(Binomial(n, p) ≥ c) = α.
* :func:`quantile_upper_rank`: the smallest rank k with P(Binomial(n, q) ≥ k) ≤ α, so that the
  k-th smallest of n i.i.d. draws is ≥ their q-quantile with probability ≥ 1 − α, whatever the
  distribution (the classical distribution-free confidence bound of a quantile; e.g. David &
  Nagaraja, "Order Statistics", 3rd ed., Sec. 7.1).

The auditor replays certificates with these functions too, so they avoid scipy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

BISECTION_STEPS = 100
ROUNDING_MARGIN = 1e-9


@lru_cache(maxsize=8)
def _log_choose(n: int) -> np.ndarray:
    """log C(n, j) for j = 0..n (float64), from cumulative sums of logs."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    out = log_factorial[n] - log_factorial - log_factorial[::-1]
    out.setflags(write=False)
    return out


def binomial_sf(n: int, p: float) -> np.ndarray:
    """[n + 2] array whose entry k is P(Binomial(n, p) ≥ k) (entry n + 1 is 0)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= p <= 1 (got n={n}, p={p})")
    j = np.arange(n + 1, dtype=np.float64)
    if p in (0.0, 1.0):
        pmf = (j == (n if p == 1.0 else 0)).astype(np.float64)
    else:
        pmf = np.exp(_log_choose(n) + j * math.log(p) + (n - j) * math.log1p(-p))
    tail = np.cumsum(pmf[::-1])[::-1]  # smallest terms first: accurate small tails
    return np.minimum(np.concatenate([tail, [0.0]]), 1.0)


def clopper_pearson_lower(successes: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) lower bound on p from ``successes`` of ``n``: P(p < bound) ≤ α.

    0 when successes = 0, α^(1/n) when successes = n; otherwise bisection on the increasing map
    p ↦ P(Binomial(n, p) ≥ successes), returning the lower end of the final bracket lowered by a
    relative 1e-9 (far above the rounding of the tail sums), so the bound is rounded down.
    """
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1 (got {successes}, {n})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")
    if successes == 0:
        return 0.0
    if successes == n:
        return alpha ** (1.0 / n)
    lo, hi = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if binomial_sf(n, mid)[successes] <= alpha:
            lo = mid
        else:
            hi = mid
    return lo * (1.0 - ROUNDING_MARGIN)


def quantile_upper_rank(n: int, q: float, alpha: float) -> int | None:
    """The smallest k in 1..n with P(Binomial(n, q) ≥ k) ≤ α, or None if there is none."""
    if n < 1 or not 0.0 < q < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n >= 1, 0 < q < 1 and 0 < alpha < 1 (got {n}, {q}, {alpha})")
    sf = binomial_sf(n, q)[1 : n + 1]  # ranks 1..n
    ok = np.flatnonzero(sf <= alpha)
    return int(ok[0]) + 1 if ok.size else None
