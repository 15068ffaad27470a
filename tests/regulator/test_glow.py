"""Tests of the Glow flow: exact inverses, log-determinants, training and weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from factories import TEST_DATA
from lassi.regulator.glow import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowStep,
    Glow,
    GlowLevel,
    InvConv2dLU,
    SplitPrior,
    Squeeze,
    TopPrior,
    Transform,
    postprocess,
    preprocess,
    squeeze,
    unsqueeze,
    validate_inverse,
)

F64 = torch.float64


def _perturb(module: nn.Module, scale: float = 0.1) -> nn.Module:
    """Move every parameter off its (often identity-like) initial value."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _jacobian_logdet(fn: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """Brute-force log|det J| of ``fn`` at a single input ``x`` (shape [1, ...])."""
    n_in = x.numel()
    jac = torch.autograd.functional.jacobian(
        lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1)
    )
    assert jac.shape == (n_in, n_in)
    return float(torch.linalg.slogdet(jac)[1])


def _train_steps(glow: Glow, x: Tensor, steps: int, lr: float) -> list[float]:
    glow.train()
    opt = torch.optim.Adam(glow.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        loss = glow.bits_per_dim(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    glow.eval()
    return history


def _images(n: int, size: int, seed: int = 0) -> Tensor:
    """Smooth, structured 5-bit images (random colour gradients), preprocessed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    base = rng.uniform(0, 1, (n, 1, 1, 3))
    slope = rng.uniform(-0.5, 0.5, (n, 1, 1, 3))
    img = base + slope * (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    uint8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return preprocess(uint8, n_bits=5)


# ------------------------------------------------------------------ one harness for every transform

TRANSFORMS: dict[str, tuple[Callable[[], Transform], tuple[int, ...]]] = {
    "actnorm": (lambda: ActNorm(4), (5, 4, 3, 3)),
    "invconv": (lambda: InvConv2dLU(6), (3, 6, 3, 3)),
    "additive": (lambda: AdditiveCoupling(4, hidden=8), (3, 4, 3, 3)),
    "affine": (lambda: AffineCoupling(4, hidden=8), (3, 4, 3, 3)),
    "step-additive": (lambda: FlowStep(4, hidden=8, coupling="additive"), (3, 4, 2, 2)),
    "step-affine": (lambda: FlowStep(4, hidden=8, coupling="affine"), (3, 4, 2, 2)),
    "squeeze": (lambda: Squeeze(), (3, 2, 4, 2)),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_protocol(name: str) -> None:
    """forward -> (y, logdet), inverse -> (x, -logdet); float64 round trip <= 1e-9 and the
    log-det equals log|det J| of the autograd Jacobian on a tiny input."""
    torch.manual_seed(sorted(TRANSFORMS).index(name))
    factory, shape = TRANSFORMS[name]
    module = factory().double()
    assert isinstance(module, Transform)
    x = 1.5 * torch.randn(shape, dtype=F64) + 0.3
    module.train()
    module(x)  # data-dependent initialisation where there is one
    _perturb(module)
    module.eval()
    y, logdet = module(x)
    assert logdet.shape == (x.shape[0],) and y.shape[0] == x.shape[0]
    x_back, inv_logdet = module.inverse(y)
    assert (x_back - x).abs().max().item() <= 1e-9
    assert (inv_logdet + logdet).abs().max().item() <= 1e-9
    x1 = x[:1]
    expected = _jacobian_logdet(lambda v: module(v)[0], x1)
    assert abs(module(x1)[1].item() - expected) <= 1e-8
    y1 = module(x1)[0]
    expected_inv = _jacobian_logdet(lambda v: module.inverse(v)[0], y1)
    assert abs(module.inverse(y1)[1].item() - expected_inv) <= 1e-8


def test_actnorm_data_dependent_init() -> None:
    torch.manual_seed(0)
    norm = ActNorm(4).double()
    x = 3.0 * torch.randn(5, 4, 3, 3, dtype=F64) + 1.0
    assert not bool(norm.initialized)
    y, _ = norm(x)
    assert bool(norm.initialized)
    assert y.mean(dim=(0, 2, 3)).abs().max() < 1e-9
    assert (y.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-5
    loc = norm.loc.detach().clone()
    norm(x + 5.0)  # second call must not re-initialise
    assert torch.equal(norm.loc.detach(), loc)
    with pytest.raises(ValueError):
        ActNorm(4).train()(torch.randn(1, 4, 1, 1))


def test_invconv_lu_inverse_weight() -> None:
    torch.manual_seed(1)
    conv = _perturb(InvConv2dLU(6).double())
    w = conv.weight().detach()
    eye = torch.eye(6, dtype=F64)
    assert (conv.inverse_weight() @ w - eye).abs().max() <= 1e-12
    assert torch.allclose(torch.linalg.slogdet(w)[1], conv.log_s.sum())


def test_invconv_inverse_cache_tracks_parameters() -> None:
    torch.manual_seed(2)
    conv = InvConv2dLU(4).double()
    x = torch.randn(2, 4, 2, 2, dtype=F64)
    conv.cache_inverse()
    assert conv.inverse_cache is not None
    assert "inverse_cache" not in conv.state_dict()
    _perturb(conv)  # a stale cache must not be used after the weights change
    y, _ = conv(x)
    assert (conv.inverse(y)[0] - x).abs().max() <= 1e-9
    assert conv.inverse_cache is None


def test_affine_coupling_is_bounded() -> None:
    torch.manual_seed(4)
    coupling = _perturb(AffineCoupling(4, hidden=8).double())
    # sigmoid-bounded scale: huge inputs give finite outputs and log-dets
    y, logdet = coupling(1e6 * torch.randn(2, 4, 3, 3, dtype=F64))
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()


def test_squeeze_round_trip() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=F64).reshape(2, 3, 4, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s[0, :4, 0, 0], x[0, 0, :2, :2].reshape(-1))  # one 2x2 block per pixel
    assert torch.equal(unsqueeze(s), x)


def test_split_prior_round_trip_and_log_prob() -> None:
    torch.manual_seed(6)
    prior = _perturb(SplitPrior(8).double())
    h = torch.randn(3, 8, 2, 2, dtype=F64)
    kept, z, log_p = prior(h)
    assert kept.shape == z.shape == (3, 4, 2, 2)
    assert torch.equal(prior.inverse(kept, z), h)
    mean, log_sd = prior.conv(kept).chunk(2, dim=1)
    normal = torch.distributions.Normal(mean, log_sd.exp())
    assert torch.allclose(log_p, normal.log_prob(z).flatten(1).sum(1), atol=1e-10)
    assert prior.sample(kept, temperature=0.5).shape == z.shape


def test_top_prior_is_learned_gaussian() -> None:
    prior = TopPrior(4, 2).double()
    z = torch.randn(3, 4, 2, 2, dtype=F64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-12)
    assert prior.sample(5).shape == (5, 4, 2, 2)
    assert sum(p.numel() for p in prior.parameters()) == 2 * 16


def test_glow_level_round_trip() -> None:
    torch.manual_seed(7)
    level = GlowLevel(3, 4, n_steps=2, hidden=8, coupling="additive", split=True).double()
    x = torch.randn(2, 3, 4, 4, dtype=F64)
    level(x)
    _perturb(level)
    kept, z, logdet, _ = level(x)
    x_back, inv_logdet = level.inverse(kept, z)
    assert (x_back - x).abs().max() <= 1e-9
    assert (inv_logdet + logdet).abs().max() <= 1e-9


# ------------------------------------------------------------------ whole Glow


@pytest.mark.parametrize("coupling", ["additive", "affine"])
def test_glow_exact_round_trip_after_training(coupling: str) -> None:
    torch.manual_seed(8)
    glow = Glow(image_size=8, n_levels=3, n_steps=2, hidden=16, coupling=coupling).double()
    x = _images(8, 8).double()
    _train_steps(glow, x, steps=4, lr=1e-2)
    assert all(bool(m.initialized) for m in glow.modules() if isinstance(m, ActNorm))
    zero_conv = glow.levels[0].steps[0].coupling.net[-1].conv.weight
    assert zero_conv.abs().max() > 0  # weights are non-trivial
    x_new = _images(4, 8, seed=1).double()
    z = glow.encode(x_new)
    assert z.shape == (4, 3 * 8 * 8) == (4, glow.latent_dim)
    assert (glow.decode(z) - x_new).abs().max().item() <= 1e-9
    z_rand = torch.randn(3, glow.latent_dim, dtype=F64)
    assert (glow.encode(glow.decode(z_rand)) - z_rand).abs().max().item() <= 1e-9
    assert validate_inverse(glow, x_new) <= 1e-9


def test_glow_latent_layout() -> None:
    glow = Glow(image_size=8, n_levels=3, n_steps=1, hidden=8)
    assert glow.z_shapes == [(6, 4, 4), (12, 2, 2), (48, 1, 1)]
    assert sum(glow.z_sizes) == glow.latent_dim == 192
    with pytest.raises(ValueError):
        Glow(image_size=12, n_levels=3)
    with pytest.raises(ValueError):
        Glow(image_size=8, n_levels=2, coupling="spline")


@pytest.mark.parametrize("coupling", ["additive", "affine"])
def test_glow_logdet_matches_jacobian(coupling: str) -> None:
    torch.manual_seed(9)
    glow = Glow(image_size=4, n_levels=2, n_steps=2, hidden=8, coupling=coupling).double()
    glow.initialize_actnorm(torch.rand(6, 3, 4, 4, dtype=F64) - 0.5)
    _perturb(glow, 0.05)
    glow.eval()
    x = torch.rand(1, 3, 4, 4, dtype=F64) - 0.5
    z, logdet, _ = glow.encode_with_logdet(x)
    expected = _jacobian_logdet(glow.encode, x)
    assert abs(logdet.item() - expected) <= 1e-6
    x_back, inv_logdet = glow.decode_with_logdet(z)
    assert (x_back - x).abs().max() <= 1e-9
    assert abs(inv_logdet.item() + logdet.item()) <= 1e-9


@pytest.mark.slow
def test_bits_per_dim_decreases_with_training() -> None:
    torch.manual_seed(10)
    glow = Glow(image_size=8, n_levels=2, n_steps=2, hidden=16)
    x = _images(16, 8)
    history = _train_steps(glow, x, steps=30, lr=1e-3)
    assert all(np.isfinite(history))
    assert history[-1] < history[0] - 0.1
    with torch.no_grad():
        bpd = glow.bits_per_dim(x)
        # the dequantisation term: bpd = -(log p(x) - D log 2^n) / (D ln 2)
        expected = -(glow.log_prob(x) - 192 * np.log(32)) / (192 * np.log(2))
    assert torch.allclose(bpd, expected)


def test_state_dict_safetensors_round_trip() -> None:
    from safetensors.torch import load, save

    torch.manual_seed(11)
    glow = Glow(image_size=8, n_levels=2, n_steps=2, hidden=8)
    x = _images(4, 8)
    _train_steps(glow, x, steps=2, lr=1e-2)
    blob = save(glow.state_dict())
    loaded = load(blob)
    assert any(k.endswith("actnorm.initialized") for k in loaded)

    restored = Glow(image_size=8, n_levels=2, n_steps=2, hidden=8)
    restored.load_state_dict(loaded, strict=True)
    assert all(bool(m.initialized) for m in restored.modules() if isinstance(m, ActNorm))
    restored.train()
    with torch.no_grad():
        restored(x + 0.1)  # must not re-initialise ActNorm: the flag came with the weights
    restored.eval()
    with torch.no_grad():
        assert torch.equal(restored.encode(x), glow.encode(x))


def test_preprocess_postprocess() -> None:
    img = np.array([0, 7, 8, 128, 255], dtype=np.uint8).reshape(1, 1, 5, 1).repeat(3, axis=3)
    x = preprocess(img, n_bits=5)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 1, 5)
    assert x[0, 0, 0].tolist() == [-0.5, -0.5, -0.5 + 1 / 32, 0.0, 0.5 - 1 / 32]
    back = postprocess(x)
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 8
    with pytest.raises(ValueError):
        preprocess(img.astype(np.float32))


def test_sample_shapes() -> None:
    torch.manual_seed(12)
    glow = Glow(image_size=8, n_levels=2, n_steps=1, hidden=8)
    glow.initialize_actnorm(_images(4, 8))
    out = glow.sample(3, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 8, 8) and torch.isfinite(out).all()


# ------------------------------------------------------------------ against the single-file Glow

# What the single-file Glow of commit 45a0d66 computed (tests/data/glow_single_file, written by
# its make_reference.py): its weights after three training steps, inputs and outputs.
SINGLE_FILE = TEST_DATA / "glow_single_file"
SINGLE_FILE_KWARGS = {
    "eval": dict(image_size=8, n_levels=2, n_steps=2, hidden=8),
    "train": dict(image_size=16, n_levels=3, n_steps=2, hidden=16),
}


def _single_file(mode: str, coupling: str) -> tuple[Glow, dict[str, Tensor]]:
    """Today's Glow holding the single-file Glow's weights, and what that Glow computed."""
    from safetensors.torch import load_file

    stored = load_file(SINGLE_FILE / f"{mode}-{coupling}.safetensors")
    weights = {k.removeprefix("weight."): v for k, v in stored.items() if k.startswith("weight.")}
    glow = Glow(**SINGLE_FILE_KWARGS[mode], coupling=coupling)
    assert set(glow.state_dict()) == set(weights)
    glow.load_state_dict(weights, strict=True)
    for name, tensor in weights.items():
        assert torch.equal(glow.state_dict()[name], tensor), name
    return glow, stored


def _close(a: Tensor, b: Tensor) -> None:
    """float32 agreement to 1e-5 (relative for large values such as log p(x))."""
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("coupling", ["additive", "affine"])
def test_weights_of_the_single_file_glow_load_and_agree(coupling: str) -> None:
    """Old weight files load unchanged; the optimised code computes the same flow.

    The keys and tensors load bit for bit; encode, decode, log-det and log p(x) agree with the
    single-file Glow within 1e-5 in float32 (the fused ActNorm/1x1 conv and the channels-last
    convolutions sum in another order, so bit equality is not expected).
    """
    glow, ref = _single_file("eval", coupling)
    glow.eval()
    with torch.no_grad():
        z, logdet, log_pz = glow.encode_with_logdet(ref["x"])
        _close(z, ref["z"])
        _close(logdet, ref["logdet"])
        _close(log_pz, ref["log_pz"])
        _close(glow.decode(ref["z"]), ref["decoded"])
        with glow.inverse_cached():
            _close(glow.decode(ref["z"]), ref["decoded"])


@pytest.mark.parametrize("coupling", ["additive", "affine"])
@pytest.mark.slow
def test_optimised_training_step_matches_the_single_file_glow(coupling: str) -> None:
    """In training mode (the fused path) loss and every gradient match the old code to 1e-5."""
    glow, ref = _single_file("train", coupling)
    glow.train()
    z, logdet, log_pz = glow.encode_with_logdet(ref["x"])
    _close(z, ref["z"])
    _close(logdet, ref["logdet"])
    _close(log_pz, ref["log_pz"])
    loss = glow.bits_per_dim(ref["x"]).mean()
    _close(loss, ref["loss"])
    loss.backward()
    for name, p in glow.named_parameters():
        torch.testing.assert_close(p.grad, ref[f"grad.{name}"], rtol=1e-4, atol=1e-5, msg=name)
