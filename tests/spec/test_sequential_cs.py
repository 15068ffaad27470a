"""Center smoothing's sequential abstain test (step 2, ``abstain_test="sequential"``).

Soundness at the boundary: with P(d ≤ r̂) exactly 1/2 − Δ, step 2 may pass with probability at
most α1. Checked (i) on the real ``_sequential_abstain_test`` of :class:`CenterSmoothing` with the
identity base f(t) = t, center 0 and r̂ = σ Φ⁻¹((1 + p*) / 2), so that P(|t| ≤ r̂) = p* exactly, on
800 sample ids; (ii) on the same decision rule and look schedule with binomial block counts, 20 000
trials vectorised. Rates must be ≤ α1 within a one-sided binomial test; stopping at the first look
where a fixed-n Clopper–Pearson bound clears p* (no mixture, no Ville) must fail the same test.
Efficiency: with p = 1/2 (a ball around a median) the test stops after a fraction of n0 draws.
Steps 1, 3 and 4 are those of the fixed test: the same center and radius when both pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binomtest, norm

from factories import DATA, run
from lassi.producer.cli import main as producer
from lassi.spec import RepresentationBundle, read_artifact
from lassi.spec.contract.models.certificate import (
    CenterSmoothingParams,
    never_certifies,
    sequential_decision,
    sequential_looks,
)
from lassi.spec.runtime.center_smoothing import CenterSmoothing
from lassi.spec.runtime.confidence_sequence import log_mixture, look_times

ALPHA1 = 0.05
DELTA = 0.05
P_STAR = 0.5 - DELTA
SIGNIFICANCE = 1e-3
BOUNDARY = CenterSmoothingParams(
    sigma=1.0, epsilon=0.1, n0=2_000, n=1_000, alpha1=ALPHA1, delta=DELTA, abstain_test="sequential"
)

# A smooth non-linear base R^2 -> R^6 (as in test_center_smoothing).
_W = np.random.default_rng(123).standard_normal((2, 6))


def smooth_base(t: np.ndarray) -> np.ndarray:
    u = t[:, :1] * _W[0] + t[:, 1:2] * _W[1]
    return u + 0.5 * u * u / (1.0 + u * u)


def _within(count: int, trials: int, rate: float = ALPHA1) -> bool:
    return binomtest(count, trials, rate, alternative="greater").pvalue > SIGNIFICANCE


def _simulate(rule, p: float, n0: int, trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(passed, draws used) of ``rule(s, t)`` (+1 pass, -1 abstain, 0 go on) on Bernoulli(p)
    draws looked at on the sequential schedule, vectorised over trials."""
    rng = np.random.default_rng(seed)
    looks = sequential_looks(CenterSmoothingParams(n0=n0, n=1_000, epsilon=0.1, abstain_test="sequential"))
    s = np.zeros(trials)
    open_, passed, used = np.ones(trials, bool), np.zeros(trials, bool), np.full(trials, n0)
    drawn = 0
    for look in looks:
        s += rng.binomial(look - drawn, p, trials)
        drawn = look
        verdict = rule(s, np.full(trials, float(look)))
        stop = open_ & (verdict != 0)
        passed |= stop & (verdict == 1)
        used[stop] = look
        open_ &= ~stop
    return passed, used


def _module_rule(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return sequential_decision(s, t, BOUNDARY)


def _cp_rule(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The broken rule: a fixed-n one-sided Clopper–Pearson bound at each look."""
    lower = np.where(s > 0, beta.ppf(ALPHA1, np.maximum(s, 1), t - s + 1), 0.0)
    return np.where(lower >= P_STAR, 1, 0)


def test_look_schedule_and_mixture() -> None:
    looks = sequential_looks(BOUNDARY)
    assert looks[0] == 100 and looks[-1] == BOUNDARY.n0
    assert all(b > a for a, b in zip(looks, looks[1:], strict=False))
    assert look_times(10, first=64) == [10]
    with pytest.raises(ValueError):
        look_times(10, growth=1.0)
    # log M_t(p) of the beta-binomial mixture against scipy's beta function
    from scipy.special import betaln

    s, t, p = 37.0, 80.0, 0.3
    expected = betaln(100 + s, 100 + t - s) - betaln(100, 100) - s * math.log(p) - (t - s) * math.log1p(-p)
    assert float(log_mixture(s, t, p, (100.0, 100.0))) == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_certify_at_the_boundary_fails_at_most_alpha1() -> None:
    """The real step 2: P(|t| ≤ r̂) = p* exactly; the test may pass in at most α1 of the cases."""
    r_hat = BOUNDARY.sigma * norm.ppf((1.0 + P_STAR) / 2.0)
    smoother = CenterSmoothing(lambda t: t, 1, BOUNDARY)
    trials = 800
    passed = [smoother._sequential_abstain_test(0, i, np.zeros(1), r_hat)[0] for i in range(trials)]
    assert _within(int(sum(passed)), trials)


@pytest.mark.slow
def test_rule_at_the_boundary_fails_at_most_alpha1_and_naive_peeking_does_not() -> None:
    trials = 20_000
    passed, _ = _simulate(_module_rule, P_STAR, BOUNDARY.n0, trials, seed=0)
    assert _within(int(passed.sum()), trials)
    naive, _ = _simulate(_cp_rule, P_STAR, BOUNDARY.n0, trials, seed=0)
    assert not _within(int(naive.sum()), trials)  # the simulation detects peeking


def test_a_median_ball_passes_early() -> None:
    """p = 1/2 (the ball around a median), demo's n0 = 10^4, α1 = 0.005: passes, in < n0 / 3."""
    params = CenterSmoothingParams(n0=10_000, n=10_000, abstain_test="sequential")
    rule = lambda s, t: sequential_decision(s, t, params)  # noqa: E731
    passed, used = _simulate(rule, 0.5, params.n0, 2_000, seed=1)
    assert passed.mean() > 0.99
    assert used.mean() < params.n0 / 3


@pytest.mark.slow
def test_same_center_and_radius_as_the_fixed_test_with_fewer_evaluations() -> None:
    fixed = CenterSmoothingParams(sigma=0.65, epsilon=0.5, n0=5_000, n=2_000, delta=0.1)
    sequential = CenterSmoothingParams(**{**fixed.__dict__, "abstain_test": "sequential"})
    for sample_id in range(3):
        a = CenterSmoothing(smooth_base, 2, fixed).certify(4, sample_id)
        b = CenterSmoothing(smooth_base, 2, sequential).certify(4, sample_id)
        assert not a.abstained and not b.abstained
        np.testing.assert_array_equal(a.center, b.center)
        assert a.r_cs == b.r_cs and a.r_hat == b.r_hat
        assert a.evaluations == 2 * fixed.n0 + fixed.n
        assert b.evaluations < a.evaluations - fixed.n0 / 2


def test_parameters_round_trip_and_refusal() -> None:
    record = BOUNDARY.issued(seed=3, m=1)
    assert record.abstain_test == "sequential"
    assert CenterSmoothingParams.model_validate_json(record.model_dump_json()).procedure() == BOUNDARY
    with pytest.raises(ValueError, match="abstain_test"):
        CenterSmoothingParams(abstain_test="peek")  # type: ignore[arg-type]
    # too few draws for any ball to pass, even with every draw inside
    hopeless = dict(n0=5, n=1_000, epsilon=0.1, delta=0.01, bounds="hoeffding")
    assert "sequential" in never_certifies(CenterSmoothingParams(**hopeless, abstain_test="sequential"))


@pytest.mark.slow
def test_encode_records_the_sequential_test(chain: dict, tmp_path) -> None:
    out = tmp_path / "test.safetensors"
    # fmt: off
    run(producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   *DATA, "--split", "test", "--limit", "2", "--certify", "--n0", "1500",
                   "--n", "2000", "--delta", "0.1", "--abstain-test", "sequential", "--quiet",
                   "--out", str(out)])
    # fmt: on
    meta = read_artifact(out, expect=RepresentationBundle).meta
    assert meta.certificate.abstain_test == "sequential"
