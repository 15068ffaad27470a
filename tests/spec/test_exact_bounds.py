"""Center smoothing with exact binomial bounds (``bounds="exact"``).

The bound helpers are checked against scipy; the rank rule's exact failure probability is computed
with the binomial CDF; and soundness is checked by simulation on linear isometric base functions,
whose distance distribution around any center is a scaled non-central χ² in closed form: a segment
(m = 1), a disc (m = 2) and a 49-dimensional ball. Each claim of the certificate is checked on
2000 trials: step 2 (the ball B(ẑ, r̂) has mass ≥ 1/2 − Δ), step 4 (R̂ ≥ the q0-quantile ξ of the
distance) and the end result (the true smoothed output f(t') of every ||t'|| ≤ ε lies within r_CS of
ẑ). A variant with the rank one lower must fail the same test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import beta, binom, binomtest, ncx2

import lassi.spec.runtime.center_smoothing as cs_module
from lassi.spec.contract.models.certificate import (
    CenterSmoothingParams,
    estimation_rank,
    shifted_level,
)
from lassi.spec.runtime.binomial_bounds import (
    binomial_sf,
    clopper_pearson_lower,
    quantile_upper_rank,
)
from lassi.spec.runtime.center_smoothing import CenterSmoothing
from lassi.spec.runtime.seeding import Stage, numpy_rng

TRIALS = 2000
# Small n makes the ranks coarse, so a rank one too low has a visibly larger failure rate.
SIM = CenterSmoothingParams(
    sigma=1.0, epsilon=1.0, n0=200, n=30, alpha1=0.05, alpha2=0.05, delta=0.1
)
BATCH = 256
SIGNIFICANCE = 1e-3  # of the one-sided binomial tests of the empirical failure rates


def test_binomial_helpers_match_scipy() -> None:
    for n, p in [(1, 0.3), (50, 0.895), (2000, 0.97), (10_000, 0.5)]:
        k = np.arange(n + 2)
        np.testing.assert_allclose(binomial_sf(n, p), binom.sf(k - 1, n, p), rtol=1e-9, atol=1e-300)
    for c, n, alpha in [(1, 10, 0.05), (97, 200, 0.05), (5000, 10_000, 0.005), (199, 200, 0.01)]:
        expected = beta.ppf(alpha, c, n - c + 1)
        assert clopper_pearson_lower(c, n, alpha) == pytest.approx(expected, rel=1e-8)
        assert clopper_pearson_lower(c, n, alpha) <= expected * (1 + 1e-12)
    assert clopper_pearson_lower(0, 7, 0.1) == 0.0
    assert clopper_pearson_lower(7, 7, 0.1) == pytest.approx(0.1 ** (1 / 7), rel=1e-15)


@pytest.mark.parametrize(
    ("n", "q", "alpha"), [(30, 0.895, 0.05), (50, 0.895, 0.05), (2000, 0.9675, 0.005), (10_000, 0.9675, 0.005)]
)
def test_rank_rule_exact_failure_probability(n: int, q: float, alpha: float) -> None:
    """For continuous distances P(X_(k) < ξ_q) = P(Binomial(n, q) ≥ k) exactly: ≤ α at the
    chosen rank, > α one rank lower (so the rule is the tightest valid one)."""
    k = quantile_upper_rank(n, q, alpha)
    assert k is not None
    assert binom.sf(k - 1, n, q) <= alpha
    assert binom.sf(k - 2, n, q) > alpha


def test_exact_rank_is_tighter_than_hoeffding() -> None:
    exact = CenterSmoothingParams(n0=2000, n=2000, sigma=0.65, epsilon=0.5)
    hoeffding = CenterSmoothingParams(
        n0=2000, n=2000, sigma=0.65, epsilon=0.5, bounds="hoeffding"
    )
    assert estimation_rank(exact) < estimation_rank(hoeffding)
    assert CenterSmoothingParams().bounds == "exact"


def test_settings_that_can_never_certify_are_refused() -> None:
    with pytest.raises(ValueError, match="n0=5 can never certify"):
        CenterSmoothingParams(n0=5, alpha1=0.005)
    with pytest.raises(ValueError, match="n=20 can never certify"):
        CenterSmoothingParams(n=20)
    CenterSmoothingParams(n=20, bounds="hoeffding")  # Hoeffding keeps abstaining at run time


def test_bounds_round_trip_through_certificate() -> None:
    params = CenterSmoothingParams(n0=500, n=500, sigma=0.65, epsilon=0.5, delta=0.15)
    recorded = params.issued(seed=3, m=2)
    assert recorded.bounds == "exact" and (recorded.seed, recorded.m) == (3, 2)
    again = CenterSmoothingParams.model_validate_json(recorded.model_dump_json(), strict=True)
    assert again == recorded and again.procedure() == params
    hoeffding = params.replace(bounds="hoeffding").issued(seed=3, m=2)
    assert CenterSmoothingParams.model_validate_json(hoeffding.model_dump_json()).bounds == "hoeffding"


def test_exact_steps_replay() -> None:
    """Step 2 compares the Clopper–Pearson bound of the replayed count, step 4 takes the rank."""
    params = CenterSmoothingParams(sigma=0.65, epsilon=0.5, n0=500, n=500, delta=0.15)
    f = _isometry(2, 3)
    cert = CenterSmoothing(f, 2, params).certify(seed=1, sample_id=4)
    assert not cert.abstained
    center = cert.center.astype(np.float64)
    test = f(params.sigma * numpy_rng(1, 4, Stage.ABSTAIN_TEST).standard_normal((500, 2)))
    within = int(np.count_nonzero(np.linalg.norm(test - center, axis=1) <= cert.r_hat))
    assert cert.p_hat == within / 500
    assert beta.ppf(params.alpha1, within, 500 - within + 1) >= 0.5 - params.delta
    est = f(params.sigma * numpy_rng(1, 4, Stage.ESTIMATION).standard_normal((500, 2)))
    dist = np.sort(np.linalg.norm(est - center, axis=1))
    assert cert.r_cs == 3.0 * dist[estimation_rank(params) - 1]
    assert cert.q == shifted_level(params)


def _isometry(m: int, k: int):
    """f(t) = t Q with Q [m, k] orthonormal rows: distances in R^k equal distances in t-space."""
    q = np.linalg.qr(np.random.default_rng(m).standard_normal((k, k)))[0][:m]
    return lambda t: np.asarray(t) @ q


def _failure_rates(m: int, k: int, broken: bool = False) -> dict[str, int]:
    """:func:`_simulate` in a child process with single-threaded BLAS: the selection's small
    matrix products are ~15x slower with threaded BLAS on a busy two-core machine."""
    threads = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = (
        "import json, test_exact_bounds as t\n"
        f"print(json.dumps(t._simulate({m}, {k}, {broken})))\n"
    )
    # the child imports this module from the parent's import path (pytest's, this folder included)
    env = {**os.environ, **threads, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _simulate(m: int, k: int, broken: bool) -> dict[str, int]:
    """Counts over TRIALS samples of certificates whose step-2 claim, step-4 claim or end result
    is false (the truth from the non-central χ² law of ||t − t_c||², t ~ N(0, σ² I_m)).
    ``broken`` takes R̂ one rank lower than the exact rule."""
    params = SIM
    if broken:
        correct = estimation_rank(SIM)
        cs_module.estimation_rank = lambda params: correct - 1
    f = _isometry(m, k)
    q_rows = f(np.eye(m))
    smoother = CenterSmoothing(f, m, params, batch_size=BATCH)
    sigma, q0 = params.sigma, shifted_level(params)
    counts = {"step2": 0, "step4": 0, "end": 0, "any": 0, "certified": 0}
    for trial in range(TRIALS):
        cert = smoother.certify(seed=11, sample_id=trial)
        if cert.abstained:
            continue
        t_c = q_rows @ cert.center.astype(np.float64)  # ẑ = f(t_c)
        nc = float(t_c @ t_c) / sigma**2
        mass = ncx2.cdf((cert.r_hat / sigma) ** 2, m, nc)  # true P(||f(t) − ẑ|| ≤ r̂)
        big_r = cert.r_cs / (1.0 + params.beta)
        # R̂ < ξ (the q0-quantile of ||f(t) − ẑ||) iff P(||f(t) − ẑ|| ≤ R̂) < q0 (continuous law).
        # The smoothed output at t' is f(t') (the image law is symmetric about it).
        false = {
            "step2": bool(mass < 0.5 - params.delta),
            "step4": bool(ncx2.cdf((big_r / sigma) ** 2, m, nc) < q0),
            "end": math.sqrt(t_c @ t_c) + params.epsilon > cert.r_cs,
        }
        counts["certified"] += 1
        for key, value in false.items():
            counts[key] += int(value)
        counts["any"] += int(any(false.values()))
    return counts


def _within(count: int, rate: float, trials: int = TRIALS) -> bool:
    """Whether ``count`` of ``trials`` is consistent with a failure rate ≤ ``rate``."""
    return binomtest(count, trials, rate, alternative="greater").pvalue > SIGNIFICANCE


@pytest.mark.parametrize(("m", "k"), [(1, 3), (2, 4), (49, 64)], ids=["segment", "disc", "ball"])
@pytest.mark.slow
def test_exact_certificates_are_sound(m: int, k: int) -> None:
    counts = _failure_rates(m, k)
    assert counts["certified"] > TRIALS // 2  # the check is not vacuous
    assert _within(counts["step2"], SIM.alpha1), counts
    assert _within(counts["step4"], SIM.alpha2), counts
    # Step 4's draws are fresh: given that a trial reaches it, its claim fails w.p. ≤ α2.
    assert _within(counts["step4"], SIM.alpha2, counts["certified"]), counts
    assert _within(counts["any"], SIM.alpha), counts
    assert counts["end"] == 0 or _within(counts["end"], SIM.alpha), counts


@pytest.mark.slow
def test_rank_one_lower_fails_the_same_test() -> None:
    correct = estimation_rank(SIM)
    assert binom.sf(correct - 2, SIM.n, shifted_level(SIM)) > 1.5 * SIM.alpha2  # exact rate
    counts = _failure_rates(2, 4, broken=True)
    assert not _within(counts["step4"], SIM.alpha2, counts["certified"]), counts
