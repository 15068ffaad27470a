"""Sequential randomized smoothing: the anytime-valid test of R > r_CS (consumer).

The mixture martingale is checked against numerical integration; soundness is checked with a
Bernoulli "classifier" whose top-class probability p_A is exactly at, just below and just above
p* = Φ(r_CS / σ): (i) the real ``certify_sequential`` on a one-dimensional threshold classifier
(p_A = Φ(c / σ) exactly), 2000 samples each; (ii) the same decision rule and look schedule on
binomial block counts up to n_max = 10^5, 20 000 trials vectorised. The rate of certificates
while p_A ≤ p* must be ≤ α within a one-sided binomial test; stopping at the first look where a
fixed-n Clopper–Pearson bound clears p* (no mixture, no Ville) must fail the same test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import beta, binomtest, norm

import lassi.consumer.sequential_test as seq
from lassi.consumer.randomized_smoothing import ABSTAIN, Smooth, SmoothNumpy

SIGMA = 1.0
ALPHA = 0.05
SIGNIFICANCE = 1e-3


def _within(count: int, trials: int, rate: float = ALPHA) -> bool:
    return binomtest(count, trials, rate, alternative="greater").pvalue > SIGNIFICANCE


def _cp_decision(s, t, p_star, alpha):
    """The broken rule: a fixed-n one-sided Clopper–Pearson bound at each look."""
    s, t = np.asarray(s), np.asarray(t)
    lower = np.where(s > 0, beta.ppf(alpha, np.maximum(s, 1), t - s + 1), 0.0)
    upper = np.where(s < t, beta.ppf(1 - alpha, s + 1, np.maximum(t - s, 1)), 1.0)
    return np.where(lower > p_star, seq.CERTIFY, np.where(upper < p_star, seq.FUTILE, seq.CONTINUE))


def _cp_lower(s, t, alpha, floor=0.0):
    s, t = np.asarray(s), np.asarray(t)
    return np.where(s > 0, beta.ppf(alpha, np.maximum(s, 1), t - s + 1), 0.0)


def test_look_schedule() -> None:
    times = seq.look_times(100_000)
    assert times[0] == seq.FIRST_LOOK and times[-1] == 100_000
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert sum(seq.block_sizes(100_000)) == 100_000
    assert seq.look_times(10) == [10]


@pytest.mark.parametrize(("s", "t", "p"), [(0, 5, 0.3), (7, 10, 0.5), (95, 100, 0.9), (60, 60, 0.97)])
def test_mixture_matches_numerical_integral(s: int, t: int, p: float) -> None:
    def integrand(x: float) -> float:
        return x**s * (1 - x) ** (t - s) * beta.pdf(x, seq.PRIOR_A, seq.PRIOR_B)

    integral = quad(integrand, 0, 1, points=[s / t], limit=200)[0]
    expected = np.log(integral) - s * np.log(p) - (t - s) * np.log1p(-p)
    assert float(seq.log_mixture(s, t, p)) == pytest.approx(expected, rel=1e-5)


def test_bounds_are_the_ends_of_the_confidence_sequence() -> None:
    s, t = np.array([1, 50, 99, 500, 500]), np.array([10, 100, 100, 500, 1000])
    lower, upper = seq.lower_bound(s, t, ALPHA), seq.upper_bound(s, t, ALPHA)
    threshold = np.log(1 / ALPHA)
    assert (seq.log_mixture(s, t, lower) >= threshold).all()  # just outside C_t
    assert (seq.log_mixture(s, t, lower + 1e-9) < threshold).all()
    below = s < t  # (U_t = 1 when every draw succeeded)
    assert (seq.log_mixture(s[below], t[below], upper[below]) >= threshold - 1e-9).all()
    assert ((lower < s / t) & (s / t <= upper)).all()
    assert seq.lower_bound(0, 10, ALPHA) == 0.0 and seq.upper_bound(10, 10, ALPHA) == 1.0


def _threshold_classifier(cut: float):
    """Class 0 iff the first input coordinate is < cut: at z = 0, p_A = Φ(cut / σ) exactly."""

    def logits(x: np.ndarray) -> np.ndarray:
        first = (x[:, 0] < cut).astype(np.float32)
        return np.stack([first, 1.0 - first], axis=1)

    return logits


def _run_certify_sequential(p_a: float, p_star: float, trials: int, n_max: int):
    smooth = SmoothNumpy(_threshold_classifier(SIGMA * norm.ppf(p_a)), 2, SIGMA, batch_size=4096)
    r_cs = SIGMA * norm.ppf(p_star)
    z = np.zeros(1, dtype=np.float32)
    certs = [smooth.certify_sequential(z, 16, r_cs, ALPHA, 5, i, n_max=n_max) for i in range(trials)]
    certified = sum(c.prediction == 0 and c.radius > r_cs for c in certs)
    return certified, certs


@pytest.mark.parametrize("gap", [0.0, -0.01], ids=["at", "below"])
@pytest.mark.slow
def test_certify_sequential_is_sound(gap: float) -> None:
    p_star = norm.cdf(1.0)
    certified, certs = _run_certify_sequential(p_star + gap, p_star, 2000, n_max=3000)
    assert _within(certified, 2000), certified
    assert all(c.draws <= 16 + 3000 for c in certs)


@pytest.mark.slow
def test_certify_sequential_without_mixture_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seq, "decision", _cp_decision)
    monkeypatch.setattr(seq, "lower_bound", _cp_lower)
    p_star = norm.cdf(1.0)
    certified, _ = _run_certify_sequential(p_star, p_star, 2000, n_max=3000)
    assert not _within(certified, 2000), certified


@pytest.mark.slow
def test_certify_sequential_stops_early_above() -> None:
    """p_A clearly above p*: certified with few draws, and R from the anytime lower bound."""
    p_star = norm.cdf(1.0)
    certified, certs = _run_certify_sequential(0.97, p_star, 200, n_max=100_000)
    assert certified >= 195
    assert np.median([c.draws for c in certs]) < 2_000
    assert all(c.radius == pytest.approx(SIGMA * norm.ppf(c.p_lower)) for c in certs if c.radius)


def _simulate(p_a: float, p_star: float, trials: int, rule, n_max: int = seq.N_MAX):
    """The look schedule on binomial block counts, all trials at once: (certified, draws, lower
    bound at the stopping time)."""
    rng = np.random.default_rng(2024)
    s = np.zeros(trials, dtype=np.int64)
    t = np.zeros(trials, dtype=np.int64)
    verdict = np.zeros(trials, dtype=np.int8)
    for size in seq.block_sizes(n_max):
        active = verdict == seq.CONTINUE
        s[active] += rng.binomial(size, p_a, active.sum())
        t[active] += size
        verdict[active] = rule(s[active], t[active], p_star, ALPHA)
    return verdict == seq.CERTIFY, t, seq.lower_bound(s, t, ALPHA)


@pytest.mark.parametrize("p_star", [norm.cdf(1.0), 0.99])
@pytest.mark.parametrize("gap", [0.0, -0.002], ids=["at", "below"])
@pytest.mark.slow
def test_decision_rule_is_sound_up_to_n_max(p_star: float, gap: float) -> None:
    certified, _, _ = _simulate(p_star + gap, p_star, 20_000, seq.decision)
    assert _within(int(certified.sum()), 20_000), certified.sum()


@pytest.mark.parametrize("p_star", [norm.cdf(1.0), 0.99])
@pytest.mark.slow
def test_decision_rule_without_mixture_fails(p_star: float) -> None:
    certified, _, _ = _simulate(p_star, p_star, 20_000, _cp_decision)
    assert not _within(int(certified.sum()), 20_000), certified.sum()


@pytest.mark.slow
def test_lower_bound_covers_at_the_stopping_time() -> None:
    p_a = 0.9
    certified, draws, lower = _simulate(p_a, norm.cdf(1.0), 20_000, seq.decision)
    assert certified.mean() > 0.99 and np.median(draws) < 2_000
    assert _within(int((lower > p_a).sum()), 20_000)


def test_torch_sequential_is_batch_independent() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3).eval()
    z = torch.randn(8)
    a = Smooth(head, 3, 0.5, batch_size=7).certify_sequential(z, 50, 0.3, 0.001, 1, 2)
    b = Smooth(head, 3, 0.5, batch_size=10_000).certify_sequential(z, 50, 0.3, 0.001, 1, 2)
    assert (a.prediction, a.radius, a.count, a.draws) == (b.prediction, b.radius, b.count, b.draws)
    never = Smooth(head, 3, 0.5).certify_sequential(z, 50, 100.0, 0.001, 1, 2, n_max=5_000)
    assert never.radius < 100.0 and never.draws <= 50 + 5_000
    # p* = Φ(200) rounds to 1: futility (U_t < p*) stops it at the first look unless p̂ = 1.
    assert never.draws == 50 + seq.FIRST_LOOK or never.count == never.draws - 50
    assert never.prediction != ABSTAIN or never.p_lower < 0.5
