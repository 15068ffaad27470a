"""The producer's training losses (paper Sec. 4.2): the ball and cube attack samplers are
uniform, the random attack picks the farthest point, the contrastive and adversarial losses
match their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lassi.producer.base_function import BaseFunction
from lassi.producer.losses import (
    LassiLoss,
    adversarial_loss,
    contrastive_loss,
    random_attack,
    sample_attack,
    sample_ball,
)
from lassi.regulator.encoders import (
    AuxClassifier,
    LatentDecoder,
    LatentMLP,
)
from lassi.spec.runtime.seeding import Stage, torch_seed

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("m", [1, 2, 3, 49])
def test_ball_sampler_is_uniform(m: int) -> None:
    eps = 0.7
    points = sample_ball(np.random.default_rng(m), 40_000, m, eps)
    radius = np.linalg.norm(points, axis=1)
    assert points.shape == (40_000, m) and radius.max() <= eps
    # Uniform in the ball: (r/ε)^m ~ U(0, 1), so mean r^m = ε^m / 2; directions isotropic.
    assert np.mean(radius**m) == pytest.approx(eps**m / 2, rel=0.02)
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=0.01)
    if m == 1:
        assert np.mean(points < 0) == pytest.approx(0.5, abs=0.01)
    gen = torch.Generator().manual_seed(m)
    tpoints = sample_ball(gen, 40_000, m, eps)
    tradius = torch.linalg.vector_norm(tpoints, dim=1)
    assert tpoints.dtype == torch.float32 and float(tradius.max()) <= eps * (1 + 1e-6)
    assert float((tradius**m).mean()) == pytest.approx(eps**m / 2, rel=0.02)


def test_ball_sampler_survives_a_gaussian_draw_of_exactly_zero() -> None:
    # Regression: this training-attack stream (seed 0, global step 302) contains a float32
    # randn of exactly 0.0; normalising it gave 0/0 = NaN and diverged LASSI training.
    seed = torch_seed(0, 302, Stage.TRAINING, 2)
    raw = torch.randn(5000, 1, generator=torch.Generator().manual_seed(seed))
    assert bool((raw == 0).any())
    points = sample_ball(torch.Generator().manual_seed(seed), 5000, 1, 0.9)
    assert bool(torch.isfinite(points).all()) and float(points.abs().max()) <= 0.9
    nonzero = raw[:, 0] != 0
    # every other draw is unchanged: its sign follows the Gaussian
    assert bool((torch.sign(points[nonzero, 0]) == torch.sign(raw[nonzero, 0])).all())


@pytest.mark.parametrize("m", [1, 49])
def test_cube_attack_sampler_is_uniform_on_the_cube(m: int) -> None:
    """region="cube": every coordinate uniform on [−ε, ε], independently (mean 0, variance ε²/3,
    zero correlation); the ball region is sample_ball's draws unchanged."""
    eps, n = 0.7, 40_000
    points = sample_attack(torch.Generator().manual_seed(m), n, m, eps, "cube").double().numpy()
    assert points.shape == (n, m) and np.abs(points).max() <= eps
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=0.015)
    np.testing.assert_allclose(points.var(axis=0), eps**2 / 3, rtol=0.04)
    assert np.mean(np.abs(points) > eps / 2) == pytest.approx(0.5, abs=0.01)
    if m > 1:
        corr = np.corrcoef(points[:, :5].T) - np.eye(5)
        assert np.abs(corr).max() < 0.03
        # the cube reaches far beyond the certified ball: typical norm eps * sqrt(m / 3)
        norms = np.linalg.norm(points, axis=1)
        assert np.median(norms) == pytest.approx(eps * np.sqrt(m / 3), rel=0.03)
    ball = sample_attack(torch.Generator().manual_seed(3), 100, m, eps, "ball")
    torch.testing.assert_close(ball, sample_ball(torch.Generator().manual_seed(3), 100, m, eps))
    with pytest.raises(ValueError, match="attack region"):
        sample_attack(None, 3, m, eps, "sphere")


@pytest.mark.parametrize("region", ["ball", "cube"])
def test_random_attack_picks_the_farthest_point(region: str) -> None:
    torch.manual_seed(0)
    enc = LatentMLP(10, hidden=(16,), k=6)
    enc.train()
    z = torch.randn(5, 10)
    attrs = torch.randn(2, 10)
    stats = enc.net[1].running_mean.clone()
    z_adv = random_attack(
        BaseFunction(enc, attrs), z, 0.8, 12, torch.Generator().manual_seed(4), region=region
    )
    assert enc.training  # restored
    torch.testing.assert_close(enc.net[1].running_mean, stats)  # evaluated in eval mode
    t = sample_attack(torch.Generator().manual_seed(4), 5 * 12, 2, 0.8, region).reshape(5, 12, 2)
    if region == "cube":  # the draws leave the ball but stay in the cube
        assert float(t.abs().max()) <= 0.8 and float(torch.linalg.vector_norm(t, dim=2).max()) > 0.8
    enc.eval()
    with torch.no_grad():
        ref = enc(z)
        for b in range(5):
            candidates = z[b] + t[b] @ attrs
            dist = torch.linalg.vector_norm(enc(candidates) - ref[b], dim=1)
            torch.testing.assert_close(z_adv[b], candidates[int(torch.argmax(dist))])


def test_contrastive_loss_matches_double_loop() -> None:
    torch.manual_seed(1)
    r = torch.randn(9, 4, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 0, 2, 1, 1, 0, 2, 2])
    delta = 1.5
    total, pairs = 0.0, 0
    for i in range(9):
        for j in range(9):
            if i == j:
                continue
            d = float(torch.linalg.vector_norm(r[i] - r[j]))
            total += max(0.0, d - delta) if y[i] == y[j] else max(0.0, 2 * delta - d)
            pairs += 1
    assert float(contrastive_loss(r, y, delta)) == pytest.approx(total / pairs, rel=1e-9)
    dup = r.clone().requires_grad_()
    with torch.no_grad():
        dup[1] = dup[0]
    contrastive_loss(dup, y, delta).backward()
    assert torch.isfinite(dup.grad).all()


def test_adversarial_and_combined_loss() -> None:
    r = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    r_adv = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert float(adversarial_loss(r, r_adv)) == pytest.approx(2.5)
    assert float(adversarial_loss(r, r_adv, delta_adv=1.0)) == pytest.approx(2.0)
    torch.manual_seed(0)
    enc, aux, dec = LatentMLP(12, hidden=(8,), k=4), AuxClassifier(4, 3), LatentDecoder(4, 12, (6,))
    z, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    z_adv = random_attack(BaseFunction(enc, torch.randn(1, 12)), z, 1.0, 5)
    loss = LassiLoss(lambda_adv=0.1, lambda_contr=0.2, lambda_rec=0.3, delta_contr=1.0)
    parts = loss(enc(z), y, aux, r_adv=enc(z_adv), z=z, decoder=dec)
    expected = parts["ce"] + 0.1 * parts["adv"] + 0.2 * parts["contr"] + 0.3 * parts["rec"]
    torch.testing.assert_close(parts["loss"], expected)
    assert all(float(parts[key].detach()) > 0 for key in ("ce", "adv", "contr", "rec"))
    parts["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters())
    plain = LassiLoss()(enc(z), y, aux)
    assert float(plain["adv"]) == float(plain["contr"]) == float(plain["rec"]) == 0.0


def test_random_attack_affine_matches_the_plain_attack() -> None:
    """The first-layer-once attack picks the same candidates as the plain random attack."""
    from lassi.producer.losses import random_attack
    from lassi.regulator.encoders import LatentMLP

    torch.manual_seed(0)
    mlp = LatentMLP(24, (16, 8), 6).double()
    mlp.train()
    mlp(torch.randn(64, 24, dtype=torch.float64))  # non-trivial BatchNorm statistics
    z = torch.randn(9, 24, dtype=torch.float64)
    vectors = torch.randn(2, 24, dtype=torch.float64)
    plain_base = BaseFunction(mlp, vectors, affine_trick=False)
    plain = random_attack(plain_base, z, 1.0, 17, torch.Generator().manual_seed(3))
    fast = random_attack(
        BaseFunction(mlp, vectors), z, 1.0, 17, torch.Generator().manual_seed(3), max_elements=50
    )
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    assert mlp.training


def test_contrastive_loss_gradient_is_finite_for_coinciding_points() -> None:
    """Identical representations in a batch (collapsed classes) must not give NaN gradients."""
    from lassi.producer.losses import contrastive_loss

    r = torch.zeros(40, 8, requires_grad=True)
    y = torch.arange(40) % 3
    contrastive_loss(r, y, 1.0).backward()
    assert torch.isfinite(r.grad).all()
