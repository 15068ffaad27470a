"""Center smoothing (producer); its encoders and training losses are in ``test_encoders`` and
``test_losses``.

Every step of :class:`CenterSmoothing` is checked against an independent computation that
replays the per-sample streams of ``lassi.spec.runtime.seeding``; soundness is checked on base functions
whose smoothed output is known in closed form.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import norm

import lassi.spec.runtime.center_smoothing as cs_module
from factories import ROOT
from lassi.spec.contract.models.certificate import (
    CenterSmoothingParams,
    abstain_margins,
    quantile_level,
)
from lassi.spec.runtime.center_selection import lower_median, min_median_index
from lassi.spec.runtime.center_smoothing import CenterSmoothing
from lassi.spec.runtime.seeding import Stage, numpy_rng

pytestmark = pytest.mark.usefixtures("single_thread")

# A smooth, non-linear base R^m -> R^k built only from +, *, / (bit-exact elementwise ops, so its
# values cannot depend on the batch they are evaluated in). Shared with the subprocess test.
BASE_SOURCE = """
import numpy as np
_W = np.random.default_rng(123).standard_normal((2, 6))
def base(t):
    u = t[:, :1] * _W[0] + t[:, 1:2] * _W[1]
    return u + 0.5 * u * u / (1.0 + u * u)
"""
_namespace: dict = {}
exec(BASE_SOURCE, _namespace)
smooth_base = _namespace["base"]

# n0 = 2000 gives Δ1 = 0.039; Δ = 0.1 keeps abstentions rare for smooth bases.
SMALL = CenterSmoothingParams(
    sigma=0.65, epsilon=0.5, n0=2000, n=2000, delta=0.1, bounds="hoeffding"
)


def brute_force_center(points: np.ndarray) -> tuple[int, float]:
    """argmin_i of the lower median of ||p_i − p_j|| over j ≠ i (first index on ties)."""
    count = points.shape[0]
    dist = cdist(points, points)  # direct differences: the self-distance is exactly 0
    medians = np.sort(dist, axis=1)[:, 1 + (count - 2) // 2]  # skip one zero (self)
    best = int(np.argmin(medians))
    return best, float(medians[best])


def replay(f, params: CenterSmoothingParams, m: int, seed: int, sample_id: int, stage: Stage):
    """The stage's draws recomputed in one go: σ · N(0, I_m) from the stage's stream."""
    t = params.sigma * numpy_rng(seed, sample_id, stage).standard_normal(
        (stage_size(params, stage), m)
    )
    return np.asarray(f(t), dtype=np.float64)


def stage_size(params: CenterSmoothingParams, stage: Stage) -> int:
    return params.n if stage == Stage.ESTIMATION else params.n0


# ---------------------------------------------------------------- step 1: center selection


@pytest.mark.parametrize(
    ("count", "dim", "kind"),
    [
        (2, 3, "gauss"),
        (5, 3, "gauss"),
        (300, 5, "gauss"),
        (257, 4, "curve"),
        (900, 40, "curve"),
        (800, 6, "clusters"),
        (701, 3, "gauss"),
    ],
)
def test_center_choice_matches_brute_force(count: int, dim: int, kind: str) -> None:
    rng = np.random.default_rng(count * 7 + dim)
    if kind == "gauss":
        points = rng.standard_normal((count, dim))
    elif kind == "curve":
        t = rng.standard_normal((count, 1))
        points = np.tanh(t @ rng.standard_normal((1, dim))) + 1e-3 * rng.standard_normal(
            (count, dim)
        )
    else:
        modes = rng.standard_normal((3, dim)) * 10
        points = modes[rng.integers(0, 3, count)] + rng.standard_normal((count, dim))
    best, _ = brute_force_center(points)
    assert min_median_index(points) == best


def test_center_choice_ties_keep_lowest_index() -> None:
    points = np.zeros((600, 4))
    assert min_median_index(points) == 0
    points[:300] = 1.0  # two equal atoms: every point has median distance 0 → index 0
    assert min_median_index(points) == 0


@pytest.mark.slow
def test_step1_center_and_r_hat_replay() -> None:
    cert = CenterSmoothing(smooth_base, 2, SMALL).certify(seed=3, sample_id=11)
    outputs = replay(smooth_base, SMALL, 2, 3, 11, Stage.SELECTION)
    best, _ = brute_force_center(outputs)
    np.testing.assert_array_equal(cert.center, outputs[best].astype(np.float32))
    center = outputs[best].astype(np.float32).astype(np.float64)
    others = np.delete(outputs, best, axis=0)
    dist = np.sqrt(((others - center) ** 2).sum(axis=1))
    assert cert.r_hat == np.sort(dist)[(SMALL.n0 - 2) // 2]
    assert lower_median(np.array([3.0, 1.0, 2.0, 5.0])) == 2.0
    assert lower_median(np.array([3.0, 1.0, 2.0])) == 2.0


# ---------------------------------------------------------------- steps 2-4


def test_step2_fraction_and_margins_replay() -> None:
    cert = CenterSmoothing(smooth_base, 2, SMALL).certify(seed=3, sample_id=12)
    fresh = replay(smooth_base, SMALL, 2, 3, 12, Stage.ABSTAIN_TEST)
    dist = np.sqrt(((fresh - cert.center.astype(np.float64)) ** 2).sum(axis=1))
    assert cert.p_hat == np.mean(dist <= cert.r_hat)
    delta1, delta2 = abstain_margins(0.52, 2000, 0.005)
    assert delta1 == pytest.approx(math.sqrt(math.log(2 / 0.005) / 4000), rel=1e-14)
    assert delta2 == pytest.approx(0.5 - (0.52 - delta1), rel=1e-14)


def test_step3_quantile_level_matches_scipy() -> None:
    for params in [
        CenterSmoothingParams(bounds="hoeffding"),
        SMALL,
        CenterSmoothingParams(sigma=0.325, epsilon=0.5, bounds="hoeffding"),
    ]:
        expected = norm.cdf(norm.ppf(0.5 + params.delta) + params.epsilon / params.sigma)
        expected += math.sqrt(math.log(1 / params.alpha2) / (2 * params.n))
        assert quantile_level(params) == pytest.approx(expected, rel=1e-12)
    # Defaults: q ≈ 0.968 < 1; σ = 0.1 makes q > 1 → abstain with reason "q>1".
    assert quantile_level(CenterSmoothingParams(bounds="hoeffding")) < 1.0
    tight = CenterSmoothingParams(sigma=0.1, n0=2000, n=2000, bounds="hoeffding")
    cert = CenterSmoothing(smooth_base, 2, tight).certify(0, 0)
    assert cert.abstained and cert.reason == "q>1" and cert.r_cs == 0.0


def test_step4_order_statistic_replay() -> None:
    cert = CenterSmoothing(smooth_base, 2, SMALL).certify(seed=3, sample_id=13)
    assert not cert.abstained
    est = replay(smooth_base, SMALL, 2, 3, 13, Stage.ESTIMATION)
    dist = np.sqrt(((est - cert.center.astype(np.float64)) ** 2).sum(axis=1))
    q = quantile_level(SMALL)
    assert cert.q == q
    big_r = np.sort(dist)[math.ceil(q * SMALL.n) - 1]  # 1-based ⌈qn⌉-th smallest
    assert cert.r_cs == 3.0 * big_r
    assert cert.r_cs != 3.0 * np.quantile(dist, q)  # not the interpolated quantile


def test_constant_base_never_abstains() -> None:
    smoother = CenterSmoothing(lambda t: np.full((t.shape[0], 5), 2.5), 1, SMALL)
    for sample_id in range(5):
        cert = smoother.certify(0, sample_id)
        assert not cert.abstained and cert.r_cs == 0.0 and cert.p_hat == 1.0
        np.testing.assert_array_equal(cert.center, np.full(5, 2.5, dtype=np.float32))


@pytest.mark.slow
def test_wildly_multimodal_base_abstains() -> None:
    """Step 2 abstains when p̂ − Δ1 < 1/2 − Δ. Since r̂ is an empirical median, p̂ ≈ 1/2 for any
    base; it falls short when the selection is biased: a wildly oscillating base spreads the
    draws like independent points on a sphere, every draw has the same true median distance,
    and the smallest empirical one is an underestimate."""
    rng = np.random.default_rng(1)
    freq, phase = rng.uniform(1e4, 2e4, 64), rng.uniform(0, 2 * np.pi, 64)

    def wild(t: np.ndarray) -> np.ndarray:
        u = np.cos(t * freq + phase)
        return u / np.linalg.norm(u, axis=1, keepdims=True)

    params = CenterSmoothingParams(
        sigma=0.65, epsilon=0.5, n0=4000, n=4000, delta=0.05, bounds="hoeffding"
    )
    certs = [CenterSmoothing(wild, 1, params).certify(0, i) for i in range(10)]
    assert sum(c.abstained and c.reason == "delta" for c in certs) >= 6
    assert np.mean([c.p_hat for c in certs]) < 0.48
    linear = CenterSmoothing(lambda t: t * np.arange(1.0, 4.0), 1, params)
    certs = [linear.certify(0, i) for i in range(10)]
    assert sum(c.abstained for c in certs) <= 3
    assert np.mean([c.p_hat for c in certs]) > 0.485
    # n0 too small for Δ1 ≤ Δ: always abstains.
    small = CenterSmoothing(
        lambda t: np.zeros((len(t), 2)), 1, CenterSmoothingParams(n0=200, bounds="hoeffding")
    )
    assert small.certify(0, 0).reason == "delta"


# ---------------------------------------------------------------- soundness


def ball_mass_on_line(center: np.ndarray, radius: float, v: np.ndarray, sigma: float) -> float:
    """P(||τ v − center|| ≤ radius) for τ ~ N(0, σ²), exactly."""
    norm_v = np.linalg.norm(v)
    along = center @ v / norm_v
    across_sq = center @ center - along**2
    if radius**2 < across_sq:
        return 0.0
    half = math.sqrt(radius**2 - across_sq)
    scale = sigma * norm_v
    return float(norm.cdf((along + half) / scale) - norm.cdf((along - half) / scale))


@pytest.mark.slow
def test_soundness_linear_segment() -> None:
    """f(t) = t v: the smoothed output (center of the smallest ball holding half the mass of
    f(t + N(0, σ²))) is g(t) = t v. Over 2000 independent certifications, the fraction of
    non-abstained ones where the claim fails stays ≤ α = α1 + α2 for: (a) r_CS ≥ max_|t|≤ε
    ||ẑ − g(t)|| and ≥ max ||g(t) − g(0)|| = ε||v||; (b) step 4: B(ẑ, R̂) holds at least
    Φ(Φ⁻¹(1/2 + Δ) + ε/σ) of the mass; (c) step 2: B(ẑ, r̂) holds at least 1/2 − Δ."""
    params = CenterSmoothingParams(
        sigma=0.65, epsilon=0.5, n0=500, n=500, delta=0.15, bounds="hoeffding"
    )
    v = np.random.default_rng(0).standard_normal(8)
    smoother = CenterSmoothing(lambda t: t * v, 1, params)
    target = norm.cdf(norm.ppf(0.5 + params.delta) + params.epsilon / params.sigma)
    certified = fail_a = fail_b = fail_c = 0
    for sample_id in range(2000):
        cert = smoother.certify(seed=7, sample_id=sample_id)
        if cert.abstained:
            continue
        certified += 1
        center = cert.center.astype(np.float64)
        edge = max(np.linalg.norm(center - s * params.epsilon * v) for s in (-1.0, 1.0))
        fail_a += max(edge, params.epsilon * np.linalg.norm(v)) > cert.r_cs
        fail_b += ball_mass_on_line(center, cert.r_cs / 3.0, v, params.sigma) < target
        fail_c += ball_mass_on_line(center, cert.r_hat, v, params.sigma) < 0.5 - params.delta
    assert certified >= 1500
    for failures in (fail_a, fail_b, fail_c):
        assert failures / certified <= params.alpha


@pytest.mark.slow
def test_soundness_disc_two_attributes() -> None:
    """m = 2, f(t) = s·(t1, t2, 0, ...): g(t) = f(t) (Anderson: the centred ball is smallest);
    max over the ε-disc of ||ẑ − g(t)|| = sqrt((||ẑ_12|| + sε)² + ||ẑ_rest||²)."""
    params = CenterSmoothingParams(
        sigma=0.65, epsilon=0.5, n0=500, n=500, delta=0.15, bounds="hoeffding"
    )
    scale = 1.7
    smoother = CenterSmoothing(lambda t: np.hstack([scale * t, np.zeros((len(t), 3))]), 2, params)
    certified = failures = 0
    for sample_id in range(2000):
        cert = smoother.certify(seed=8, sample_id=sample_id)
        if cert.abstained:
            continue
        certified += 1
        c = cert.center.astype(np.float64)
        worst = math.hypot(np.linalg.norm(c[:2]) + scale * params.epsilon, np.linalg.norm(c[2:]))
        failures += worst > cert.r_cs
    assert certified >= 1500
    assert failures / certified <= params.alpha


# ---------------------------------------------------------------- reproducibility


@pytest.mark.slow
def test_bit_identical_across_batch_sizes_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    certs = []
    for batch_size in (7, 500, 2000):
        smoother = CenterSmoothing(smooth_base, 2, SMALL, batch_size=batch_size)
        certs.append(smoother.certify(5, 17))
    monkeypatch.setattr(cs_module, "NOISE_CHUNK_ROWS", 333)
    certs.append(CenterSmoothing(smooth_base, 2, SMALL).certify(5, 17))
    for other in certs[1:]:
        assert other.center.tobytes() == certs[0].center.tobytes()
        assert (other.r_cs, other.r_hat, other.p_hat) == (
            certs[0].r_cs,
            certs[0].r_hat,
            certs[0].p_hat,
        )


@pytest.mark.slow
def test_bit_identical_in_subprocess_without_torch() -> None:
    cert = CenterSmoothing(smooth_base, 2, SMALL).certify(5, 18)
    # The replay runs in a fresh process without torch (an auditor's numpy-only environment).
    code = BASE_SOURCE + (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from lassi.spec.contract.models import CenterSmoothingParams\n"
        "from lassi.spec.runtime.center_smoothing import CenterSmoothing\n"
        "p = CenterSmoothingParams(sigma=0.65, epsilon=0.5, n0=2000, n=2000, delta=0.1,"
        " bounds='hoeffding')\n"
        "c = CenterSmoothing(base, 2, p, batch_size=300).certify(5, 18)\n"
        "print(c.center.tobytes().hex(), c.r_cs.hex())\n"
    )
    paths = ["spec_schema/src", "regulator/src", "producer/src", "consumer/src"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in paths)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [cert.center.tobytes().hex(), cert.r_cs.hex()]


@pytest.mark.slow
def test_stages_draw_fresh_and_ids_differ() -> None:
    seen: list[np.ndarray] = []

    def recording(t: np.ndarray) -> np.ndarray:
        seen.append(t.copy())
        return smooth_base(t)

    params = SMALL
    CenterSmoothing(recording, 2, params, batch_size=2000).certify(9, 4)
    assert len(seen) == 3  # selection, abstain test, estimation
    for stage, t in zip((Stage.SELECTION, Stage.ABSTAIN_TEST, Stage.ESTIMATION), seen, strict=True):
        expected = params.sigma * numpy_rng(9, 4, stage).standard_normal((2000, 2))
        np.testing.assert_array_equal(t, expected)
    flat = np.concatenate(seen).ravel()
    assert np.unique(flat).size == flat.size  # no draw reused across stages
    a = CenterSmoothing(smooth_base, 2, SMALL).certify(9, 4)
    b = CenterSmoothing(smooth_base, 2, SMALL).certify(9, 5)
    c = CenterSmoothing(smooth_base, 2, SMALL).certify(10, 4)
    assert a.center.tobytes() != b.center.tobytes() and a.r_cs != b.r_cs
    assert a.center.tobytes() != c.center.tobytes()


