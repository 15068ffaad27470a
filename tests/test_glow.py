"""Tests of the Glow flow: exact inverses, log-determinants, training, weights and ONNX."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lassi.regulator.glow import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowStep,
    Glow,
    GlowLevel,
    InvConv2dLU,
    SplitPrior,
    TopPrior,
    export_onnx,
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


# ------------------------------------------------------------------ per-transform checks


def _check_transform(module: nn.Module, x: Tensor) -> None:
    """forward/inverse round trip <= 1e-9 and log-det == brute force, in float64."""
    module = module.double()
    module.train()
    module(x)  # data-dependent initialisation where there is one
    _perturb(module)
    module.eval()
    y, logdet = module(x)
    assert y.shape == x.shape and logdet.shape == (x.shape[0],)
    assert (module.inverse(y) - x).abs().max().item() <= 1e-9
    x1 = x[:1]
    expected = _jacobian_logdet(lambda v: module(v)[0], x1)
    assert abs(module(x1)[1].item() - expected) <= 1e-8


def test_actnorm_init_and_round_trip() -> None:
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
    _check_transform(norm, x)
    with pytest.raises(ValueError):
        ActNorm(4).train()(torch.randn(1, 4, 1, 1))


def test_invconv_lu_round_trip_and_inverse_weight() -> None:
    torch.manual_seed(1)
    conv = InvConv2dLU(6).double()
    _check_transform(conv, torch.randn(3, 6, 3, 3, dtype=F64))
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
    assert (conv.inverse(y) - x).abs().max() <= 1e-9
    assert conv.inverse_cache is None


def test_additive_coupling_round_trip() -> None:
    torch.manual_seed(3)
    _check_transform(AdditiveCoupling(4, hidden=8), torch.randn(3, 4, 3, 3, dtype=F64))


def test_affine_coupling_round_trip() -> None:
    torch.manual_seed(4)
    coupling = AffineCoupling(4, hidden=8)
    _check_transform(coupling, torch.randn(3, 4, 3, 3, dtype=F64))
    # sigmoid-bounded scale: huge inputs give finite outputs and log-dets
    y, logdet = coupling(1e6 * torch.randn(2, 4, 3, 3, dtype=F64))
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()


def test_flow_step_round_trip() -> None:
    torch.manual_seed(5)
    _check_transform(FlowStep(4, hidden=8, coupling="affine"), torch.randn(3, 4, 2, 2, dtype=F64))


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
    kept, z, _, _ = level(x)
    assert (level.inverse(kept, z) - x).abs().max() <= 1e-9


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
    _, logdet, _ = glow.encode_with_logdet(x)
    expected = _jacobian_logdet(glow.encode, x)
    assert abs(logdet.item() - expected) <= 1e-6


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
    glow.train()
    noisy = glow.bits_per_dim(x, dequantize=True)
    assert noisy.shape == (16,) and torch.isfinite(noisy).all()


def test_state_dict_safetensors_round_trip() -> None:
    from safetensors.torch import load, save

    torch.manual_seed(11)
    glow = Glow(image_size=8, n_levels=2, n_steps=2, hidden=8)
    x = _images(4, 8)
    _train_steps(glow, x, steps=2, lr=1e-2)
    blob = save(glow.state_dict(), metadata={k: str(v) for k, v in glow.config.items()})
    loaded = load(blob)
    assert any(k.endswith("actnorm.initialized") for k in loaded)

    restored = Glow(**glow.config)
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


def test_onnx_export_both_directions(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(13)
    glow = Glow(image_size=8, n_levels=2, n_steps=2, hidden=8, coupling="affine")
    _train_steps(glow, _images(4, 8), steps=2, lr=1e-2)
    export_onnx(glow, tmp_path / "encode.onnx", "encode", example_batch=2)
    export_onnx(glow, tmp_path / "decode.onnx", "decode", example_batch=2)
    assert all(c.inverse_cache is None for c in glow.invconvs())

    x = _images(5, 8, seed=3)
    with torch.no_grad():
        z = glow.encode(x)
    enc = ort.InferenceSession(str(tmp_path / "encode.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "decode.onnx"), providers=["CPUExecutionProvider"])
    assert enc.get_providers() == ["CPUExecutionProvider"]
    (z_onnx,) = enc.run(None, {"x": x.numpy()})
    (x_onnx,) = dec.run(None, {"z": z.numpy()})
    assert z_onnx.shape == (5, 192) and x_onnx.shape == (5, 3, 8, 8)
    assert np.abs(z_onnx - z.numpy()).max() <= 1e-4
    assert np.abs(x_onnx - x.numpy()).max() <= 1e-4
