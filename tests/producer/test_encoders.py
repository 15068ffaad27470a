"""The producer's base function over its encoders: the affine evaluation of the latent MLP
(its first layer applied once to z and to the attribute vectors) equals plain evaluation, also
through center smoothing, and needs eval mode; the encoders' output shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lassi.producer.base_function import BaseFunction
from lassi.regulator.encoders import (
    AuxClassifier,
    ImageResNet18,
    LatentDecoder,
    LatentMLP,
)
from lassi.spec.contract.models.certificate import (
    CenterSmoothingParams,
)
from lassi.spec.runtime.center_smoothing import (
    CenterSmoothing,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# n0 = 2000 gives Δ1 = 0.039; Δ = 0.1 keeps abstentions rare for smooth bases.
SMALL = CenterSmoothingParams(
    sigma=0.65, epsilon=0.5, n0=2000, n=2000, delta=0.1, bounds="hoeffding"
)


def _trained_mlp(dtype: torch.dtype) -> LatentMLP:
    torch.manual_seed(0)
    enc = LatentMLP(48, hidden=(32, 24), k=16).to(dtype)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for module in enc.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2.0)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    return enc.eval()


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_affine_trick_equals_plain_evaluation(dtype: torch.dtype, tol: float) -> None:
    enc = _trained_mlp(dtype)
    z = torch.randn(48, dtype=dtype)
    attrs = torch.randn(3, 48, dtype=dtype)
    t = torch.randn(64, 3, dtype=dtype)
    base = BaseFunction(enc, attrs).for_latent(z)
    with torch.no_grad():
        plain = enc(z[None] + t @ attrs)
        fast = base(t)
    torch.testing.assert_close(fast, plain, rtol=tol, atol=tol)
    if dtype != torch.float64:
        return  # (float32 rounding may flip a near-tie in the center choice)
    # Through center smoothing: a module base gets tensors of its dtype.
    params = CenterSmoothingParams(n0=1500, n=1500, sigma=0.65, epsilon=0.5, bounds="hoeffding")
    cert = CenterSmoothing(base, 3, params).certify(1, 2)
    ref = CenterSmoothing(lambda t: enc(z[None] + torch.from_numpy(t).to(dtype) @ attrs), 3, params)
    other = ref.certify(1, 2)
    np.testing.assert_allclose(cert.center, other.center, rtol=0, atol=10 * tol)
    assert cert.r_cs == pytest.approx(other.r_cs, rel=100 * tol)


def test_affine_base_needs_eval_mode() -> None:
    enc = _trained_mlp(torch.float32).train()
    with pytest.raises(RuntimeError):
        BaseFunction(enc, torch.zeros(1, 48)).for_latent(torch.zeros(48))
    base = BaseFunction(enc.eval(), torch.zeros(1, 48)).for_latent(torch.zeros(48))
    enc.train()
    with pytest.raises(RuntimeError):
        base(torch.zeros(4, 1))
    with pytest.raises(ValueError):
        CenterSmoothing(enc, 1, SMALL).certify(0, 0)
    with pytest.raises(ValueError):
        CenterSmoothing(lambda t: np.full((len(t), 2), np.nan), 1, SMALL).certify(0, 0)


def test_encoder_shapes() -> None:
    torch.manual_seed(0)
    resnet = ImageResNet18(k=16, width=8).eval()
    x = torch.rand(4, 3, 32, 32) - 0.5
    with torch.no_grad():
        r = resnet(x)
    assert r.shape == (4, 16)
    assert isinstance(resnet.head[-1], torch.nn.BatchNorm1d) and not resnet.head[-1].affine
    assert sum(isinstance(m, torch.nn.Conv2d) for m in resnet.modules()) == 1 + 16 + 3
    big = ImageResNet18(k=8, width=8, cifar_stem=False)
    assert big(torch.rand(2, 3, 64, 64) - 0.5).shape == (2, 8)
    mlp = LatentMLP(3 * 8 * 8, hidden=(32, 16), k=12)
    assert mlp(torch.randn(5, 3, 8, 8)).shape == (5, 12)
    assert isinstance(mlp.net[-1], torch.nn.BatchNorm1d) and not mlp.net[-1].affine
    assert AuxClassifier(12, 4)(torch.randn(5, 12)).shape == (5, 4)
    assert LatentDecoder(12, 192, hidden=(20,))(torch.randn(5, 12)).shape == (5, 192)
    assert LatentDecoder(12, 192, hidden=20)(torch.randn(5, 12)).shape == (5, 192)
