"""Anytime-valid test of R > r_CS for sequential randomized smoothing.

The consumer certifies a sample iff R = σ Φ⁻¹(p_A) > r_CS (paper Sec. 4.3), i.e. iff a lower
confidence bound on p_A exceeds p* = Φ(r_CS / σ). Instead of a fixed n, the estimation draws come
in growing blocks and after each block the beta-binomial mixture martingale is checked (Robbins
1970; Howard et al. 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Sec. 3.3, conjugate mixtures). With s successes in t draws and a Beta(a, b) prior,

    M_t(p) = ∫ π^s (1 − π)^(t − s) dBeta(π; a, b) / (p^s (1 − p)^(t − s))
           = B(a + s, b + t − s) / B(a, b) / (p^s (1 − p)^(t − s)),

a nonnegative martingale with M_0 = 1 when the draws are Bernoulli(p). Ville's inequality gives
P(∃ t: M_t(p_A) ≥ 1/α) ≤ α, so C_t = {p : M_t(p) < 1/α} is a (1 − α) confidence sequence: it
covers p_A at every time simultaneously, hence at any data-dependent stopping time. log M_t is
convex in p with its minimum (≤ 0) at p̂ = s / t, so C_t is an interval (L_t, U_t) and

* certify as soon as L_t > p* (p* lies below C_t): if p_A ≤ p*, this happens with prob. ≤ α;
* stop for futility as soon as U_t < p* (p* lies above C_t): R > r_CS is then out of reach;
* otherwise stop at n_max. R = σ Φ⁻¹(L_t) at the stopping time (abstain if L_t < 1/2).

The test decides only the certificate (R > r_CS or not). The sample's prediction is PREDICT on the
n0 selection draws, the same as with fixed-n CERTIFY (:mod:`.randomized_smoothing`): a futility
stop makes a sample "not certified", never takes its prediction away.

Checking only after each block of :func:`look_times` (a fixed schedule, independent of the batch
size) looks at a subset of times, which keeps the guarantee. The prior is Jeffreys' Beta(1/2, 1/2),
which puts more mass near p = 1 than a uniform prior (smoothed classifiers are often confident).
"""

from __future__ import annotations

import math

import numpy as np

from lassi.spec.runtime import confidence_sequence as cs

PRIOR_A = 0.5
PRIOR_B = 0.5
FIRST_LOOK = 64
GROWTH = 1.5
N_MAX = 100_000
BISECTION_STEPS = 64

CERTIFY, CONTINUE, FUTILE = 1, 0, -1


def look_times(n_max: int = N_MAX) -> list[int]:
    """Cumulative draw counts after which the test looks: 64, 96, 144, … (× 1.5), then n_max."""
    return cs.look_times(n_max, FIRST_LOOK, GROWTH)


def block_sizes(n_max: int = N_MAX) -> list[int]:
    """The draws of each block: differences of :func:`look_times`."""
    times = look_times(n_max)
    return [times[0]] + [b - a for a, b in zip(times, times[1:], strict=False)]


def log_mixture(s: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log M_t(p) of the beta-binomial mixture, elementwise; p in (0, 1), 0 ≤ s ≤ t."""
    return cs.log_mixture(s, t, p, (PRIOR_A, PRIOR_B))


def decision(s: np.ndarray, t: np.ndarray, p_star: np.ndarray, alpha: float) -> np.ndarray:
    """CERTIFY (L_t > p*), FUTILE (U_t < p*) or CONTINUE, elementwise.

    p* lies outside C_t iff M_t(p*) ≥ 1/α; which side is decided by p̂ = s / t.
    """
    s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
    p_star = np.clip(np.asarray(p_star, dtype=np.float64), 1e-300, 1.0 - 1e-16)
    outside = log_mixture(s, t, p_star) >= math.log(1.0 / alpha)
    above = s > p_star * t
    return np.where(outside, np.where(above, CERTIFY, FUTILE), CONTINUE).astype(np.int8)


def lower_bound(
    s: np.ndarray, t: np.ndarray, alpha: float, floor: np.ndarray | float = 0.0
) -> np.ndarray:
    """L_t = inf C_t, rounded down (bisection keeping M_t(lo) ≥ 1/α), elementwise.

    ``floor`` may pass points already known to lie below C_t (e.g. p* when certified) as the
    start of the bracket, so that L_t ≥ floor exactly.
    """
    s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
    threshold = math.log(1.0 / alpha)
    p_hat = np.where(t > 0, s / np.maximum(t, 1.0), 0.0)
    lo = np.broadcast_to(np.asarray(floor, dtype=np.float64), p_hat.shape).copy()
    hi = p_hat.copy()  # M_t(p̂) ≤ 1 < 1/α: inside C_t
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        rejected = log_mixture(s, t, np.clip(mid, 1e-300, None)) >= threshold
        lo = np.where(rejected, mid, lo)
        hi = np.where(rejected, hi, mid)
    return np.where(s > 0, lo, 0.0)


def upper_bound(s: np.ndarray, t: np.ndarray, alpha: float) -> np.ndarray:
    """U_t = sup C_t, rounded up: the mirror image of :func:`lower_bound`."""
    s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
    return 1.0 - lower_bound(t - s, t, alpha)
