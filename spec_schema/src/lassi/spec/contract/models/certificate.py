"""Center smoothing's parameters: one model for the algorithm, the producer's certified bundles,
the consumer's checks and the audit's replay (Kumar & Goldstein 2021, Alg. 1-2; paper Sec. 4.3).

Besides the model, what the parameters alone imply, before any draw: step 2's margins, step 3's
level q0 = Φ(Φ⁻¹(1/2 + Δ) + ε/σ), step 4's rank k of R̂, the sequential test's looks and decision,
and whether a sample can ever be certified (:func:`never_certifies`). The steps are those of
:mod:`lassi.spec.runtime.center_smoothing`, which runs them.
"""

from __future__ import annotations

import math
from enum import IntEnum
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from lassi.spec.contract.models.base import (
    MAX_SMOOTHING_SAMPLES,
    MAX_VECTORS,
    Model,
    PositiveFloat,
    Probability,
)
from lassi.spec.runtime.binomial_bounds import clopper_pearson_lower, quantile_upper_rank
from lassi.spec.runtime.confidence_sequence import log_mixture, look_times

Bounds = Literal["hoeffding", "exact"]
AbstainTest = Literal["fixed", "sequential"]

# The sequential abstain test (step 2, abstain_test="sequential"): its prior and look schedule are
# part of the certified procedure (an audit replays them).
SEQUENTIAL_PRIOR = (100.0, 100.0)
SEQUENTIAL_FIRST_LOOK = 100
SEQUENTIAL_GROWTH = 1.1

_NORMAL = NormalDist()


class CenterStatus(IntEnum):
    """Outcome of center smoothing for one sample (stored as U8)."""

    CERTIFIED = 0
    ABSTAIN_DELTA = 1
    ABSTAIN_Q = 2


class CenterSmoothingParams(Model):
    """Center smoothing's parameters (α1 + α2 = α_c = 0.01 as in the paper, Sec. 5).

    sigma: std σ_enc of the t-noise; epsilon: ℓ2 radius of the similarity set in t-space;
    n0: selection and abstain-test draws (each); n: estimation draws; alpha1, alpha2: failure
    probabilities of steps 2 and 4 (α_c = α1 + α2); delta: Δ of step 2; beta: the approximation
    factor β of the minimum enclosing ball; bounds: "exact" (Clopper–Pearson and binomial
    order-statistic rank) or "hoeffding" (Kumar & Goldstein's Hoeffding margins); abstain_test:
    step 2 with n0 draws ("fixed", with ``bounds``) or the anytime-valid test with at most n0
    ("sequential", the same α1 whatever ``bounds``). ``seed`` and ``m`` are set when the
    parameters are issued with a certificate (:meth:`issued`; a certified file records both):
    the seed of the per-sample streams and the dimension of t (the spec's attribute vectors).

    Exact settings with which no sample can ever certify are refused when built (and so in a
    file: every certificate the schema accepts can be replayed); Hoeffding ones abstain at run
    time (``lassi-producer encode --certify`` refuses them up front).
    """

    sigma: PositiveFloat = 0.65
    epsilon: PositiveFloat = 1.0
    n0: int = Field(10_000, ge=2, le=MAX_SMOOTHING_SAMPLES)
    n: int = Field(10_000, ge=1, le=MAX_SMOOTHING_SAMPLES)
    alpha1: Probability = 0.005
    alpha2: Probability = 0.005
    delta: float = Field(0.05, gt=0, lt=0.5, allow_inf_nan=False)
    beta: float = Field(2.0, ge=1, allow_inf_nan=False)
    bounds: Bounds = "exact"
    abstain_test: AbstainTest = "fixed"
    seed: int | None = Field(None, ge=0, description="the per-sample streams' seed, once issued")
    m: int | None = Field(
        None,
        ge=1,
        le=MAX_VECTORS,
        description="dimension of the t-noise (the spec's number of attribute vectors), once issued",
    )

    @model_validator(mode="after")
    def _can_certify(self) -> CenterSmoothingParams:
        if not self.alpha1 + self.alpha2 < 1:
            raise ValueError("alpha1 + alpha2 must be < 1")
        if self.bounds == "exact" and (reason := never_certifies(self)) is not None:
            raise ValueError(reason)
        return self

    @property
    def alpha(self) -> float:
        """α_c = α1 + α2: the certificate fails with probability at most this."""
        return self.alpha1 + self.alpha2

    @property
    def is_issued(self) -> bool:
        """Whether the seed and m of an issued certificate are recorded."""
        return self.seed is not None and self.m is not None

    def replace(self, **changes: Any) -> CenterSmoothingParams:
        """A copy with ``changes``, validated again."""
        return type(self).model_validate(self.model_dump() | changes)

    def issued(self, seed: int, m: int) -> CenterSmoothingParams:
        """These parameters as a certified bundle records them: with the seed and m."""
        return self.replace(seed=seed, m=m)

    def procedure(self) -> CenterSmoothingParams:
        """These parameters without the seed and m of an issued certificate."""
        return self.replace(seed=None, m=None)


def never_certifies(params: CenterSmoothingParams) -> str | None:
    """Why no sample can ever be certified with ``params`` (even p̂ = 1), or None.

    Step 2: exact needs the Clopper–Pearson bound at p̂ = 1 to reach 1/2 − Δ, Hoeffding needs
    Δ1 = sqrt(ln(2/α1) / (2 n0)) ≤ Δ. Step 4: exact needs a rank k ≤ n, Hoeffding
    q = q0 + sqrt(ln(1/α2) / (2 n)) ≤ 1.
    """
    if params.abstain_test == "sequential" and not sequential_can_pass(params):
        return (
            f"n0={params.n0} can never certify with the sequential abstain test: even p_hat = 1 "
            f"after n0 draws leaves 1/2 - delta = {0.5 - params.delta:.4f} inside the "
            f"confidence sequence at alpha1={params.alpha1}"
        )
    if params.bounds == "exact":
        best = clopper_pearson_lower(params.n0, params.n0, params.alpha1)
        if params.abstain_test == "fixed" and best < 0.5 - params.delta:
            return (
                f"n0={params.n0} can never certify: even p_hat = 1 gives a Clopper-Pearson "
                f"bound {best:.4f} < 1/2 - delta = {0.5 - params.delta:.4f}"
            )
        if estimation_rank(params) is None:
            return (
                f"n={params.n} can never certify: no rank k <= n has "
                f"P(Binomial(n, q0={shifted_level(params):.4f}) >= k) <= alpha2={params.alpha2}"
            )
        return None
    delta1, _ = abstain_margins(1.0, params.n0, params.alpha1)
    if params.abstain_test == "fixed" and delta1 > params.delta:
        return (
            f"n0={params.n0} can never certify with Hoeffding bounds: "
            f"sqrt(ln(2/alpha1)/(2 n0)) = {delta1:.4f} > delta = {params.delta}"
        )
    q = quantile_level(params)
    if q > 1.0:
        return (
            f"n={params.n}, epsilon={params.epsilon}, sigma={params.sigma} can never certify with "
            f"Hoeffding bounds: q = q0 + sqrt(ln(1/alpha2)/(2 n)) = {q:.4f} > 1"
        )
    return None


def sequential_decision(within: Any, drawn: Any, params: CenterSmoothingParams) -> np.ndarray:
    """Step 2, sequential: +1 pass, −1 abstain (futility), 0 continue, after ``within`` of
    ``drawn`` draws fell within r̂ (elementwise): ±1 once M_t(1/2 − Δ) ≥ 1/α1, by the side of
    p̂ = within / drawn."""
    within, drawn = np.asarray(within, dtype=np.float64), np.asarray(drawn, dtype=np.float64)
    p_star = 0.5 - params.delta
    log_m = log_mixture(within, drawn, np.full(within.shape, p_star), SEQUENTIAL_PRIOR)
    outside = log_m >= math.log(1.0 / params.alpha1)
    return np.where(outside, np.where(within > p_star * drawn, 1, -1), 0).astype(np.int8)


def sequential_looks(params: CenterSmoothingParams) -> list[int]:
    """Step 2, sequential: the draw counts after which the test looks (the last is n0)."""
    return look_times(params.n0, SEQUENTIAL_FIRST_LOOK, SEQUENTIAL_GROWTH)


def sequential_can_pass(params: CenterSmoothingParams) -> bool:
    """Whether p̂ = 1 passes the sequential test by n0 draws (else no sample can certify)."""
    return int(sequential_decision(params.n0, params.n0, params)) == 1


def abstain_margins(p_hat: float, n0: int, alpha1: float) -> tuple[float, float]:
    """Step 2: Δ1 = sqrt(ln(2/α1) / (2 n0)) and Δ2 = 1/2 − (p̂ − Δ1)."""
    delta1 = math.sqrt(math.log(2.0 / alpha1) / (2.0 * n0))
    return delta1, 0.5 - (p_hat - delta1)


def exact_abstain_bound(within: int, n0: int, alpha1: float) -> float:
    """Step 2, exact: the one-sided (1 − α1) Clopper–Pearson lower bound on P(d ≤ r̂)."""
    return clopper_pearson_lower(within, n0, alpha1)


def shifted_level(params: CenterSmoothingParams) -> float:
    """Step 3: q0 = Φ(Φ⁻¹(1/2 + Δ) + ε/σ)."""
    return _NORMAL.cdf(_NORMAL.inv_cdf(0.5 + params.delta) + params.epsilon / params.sigma)


def quantile_level(params: CenterSmoothingParams) -> float:
    """Step 3, Hoeffding: q = Φ(Φ⁻¹(1/2 + Δ) + ε/σ) + sqrt(ln(1/α2) / (2 n))."""
    return shifted_level(params) + math.sqrt(math.log(1.0 / params.alpha2) / (2.0 * params.n))


def estimation_rank(params: CenterSmoothingParams) -> int | None:
    """Step 4: the 1-based rank k of R̂ among the n estimation distances, None to abstain.

    Hoeffding: ⌈q n⌉ (None if q > 1); exact: the smallest k with P(Binomial(n, q0) ≥ k) ≤ α2.
    """
    if params.bounds == "exact":
        q0 = shifted_level(params)
        return quantile_upper_rank(params.n, q0, params.alpha2) if q0 < 1.0 else None
    q = quantile_level(params)
    return None if q > 1.0 else max(1, math.ceil(q * params.n))
