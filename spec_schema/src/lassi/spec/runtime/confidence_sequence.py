"""Anytime-valid confidence sequences for a Bernoulli success probability (numpy and math only).

The beta-binomial mixture martingale (Robbins 1970; Howard et al. 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Sec. 3.3, conjugate mixtures): with s
successes in t Bernoulli(p) draws and a Beta(a, b) prior,

    M_t(p) = ∫ π^s (1 − π)^(t − s) dBeta(π; a, b) / (p^s (1 − p)^(t − s))
           = B(a + s, b + t − s) / B(a, b) / (p^s (1 − p)^(t − s)),

is a nonnegative martingale with M_0 = 1, so Ville's inequality gives P(∃ t: M_t(p) ≥ 1/α) ≤ α
and C_t = {p : M_t(p) < 1/α} covers p at every time at once, hence at any data-dependent
stopping time. log M_t is convex in p with its minimum (≤ 0) at s / t, so C_t is an interval.
Any prior fixed before the draws keeps the guarantee; it only moves where the test is sharpest.

Used by the consumer's sequential randomized smoothing (Jeffreys prior) and by center
smoothing's sequential abstain test (step 2, :mod:`lassi.spec.runtime.center_smoothing`). The auditor
replays both, so this module avoids scipy (B via ``math.lgamma``).
"""

from __future__ import annotations

import math

import numpy as np

JEFFREYS = (0.5, 0.5)
_LGAMMA = np.frompyfunc(math.lgamma, 1, 1)


def look_times(n_max: int, first: int = 64, growth: float = 1.5) -> list[int]:
    """Cumulative draw counts after which a test looks: first, ⌈first · growth⌉, …, then n_max.

    A fixed schedule (independent of batch sizes and of the data) looks at a subset of times,
    which keeps the anytime guarantee."""
    if n_max < 1 or first < 1 or growth <= 1.0:
        raise ValueError(f"need n_max >= 1, first >= 1 and growth > 1 (got {n_max}, {first}, {growth})")
    times, t = [], first
    while t < n_max:
        times.append(t)
        t = math.ceil(t * growth)
    return [*times, n_max]


def log_beta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log B(a, b) = lgamma(a) + lgamma(b) − lgamma(a + b), elementwise (a, b > 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.asarray(_LGAMMA(a) + _LGAMMA(b) - _LGAMMA(a + b), dtype=np.float64)


def log_mixture(
    s: np.ndarray, t: np.ndarray, p: np.ndarray, prior: tuple[float, float] = JEFFREYS
) -> np.ndarray:
    """log M_t(p) of the beta-binomial mixture with a Beta(prior) prior; p in (0, 1), 0 ≤ s ≤ t."""
    s, t, p = (np.asarray(x, dtype=np.float64) for x in (s, t, p))
    a, b = prior
    log_lik = np.where(s > 0, s * np.log(p), 0.0) + np.where(t > s, (t - s) * np.log1p(-p), 0.0)
    return log_beta(a + s, b + t - s) - log_beta(np.asarray(a), np.asarray(b)) - log_lik
