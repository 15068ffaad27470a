"""Glow training figures (dequantised bits/dim) and the preprocessing recorded beside a Glow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from factories import make, write_raw
from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.training import evaluate_bits_per_dim, validation_noise
from lassi.spec import GlowConfig, InvalidArtifactError, Preprocessing, read_artifact

F64 = torch.float64


class _Images:
    """A minimal image source: fixed uint8 images addressed by id."""

    def __init__(self, images: np.ndarray) -> None:
        self._images = images

    def images(self, ids: np.ndarray) -> np.ndarray:
        return self._images[ids]


def _uint8_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    base = rng.uniform(0, 1, (n, 1, 1, 3))
    img = base + 0.3 * (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _overfit_glow(images: np.ndarray, n_bits: int) -> Glow:
    """A tiny Glow trained hard on un-noised quantised images (their density at lattice points
    grows without bound, so a bits/dim of those points goes negative)."""
    torch.manual_seed(0)
    glow = Glow(image_size=4, n_levels=1, n_steps=2, hidden=16, n_bits=n_bits).double()
    x = preprocess(images, n_bits).double()
    glow.initialize_actnorm(x)
    opt = torch.optim.Adam(glow.parameters(), lr=1e-2)
    glow.train()
    for _ in range(150):
        loss = glow.bits_per_dim(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return glow.eval()


@pytest.mark.slow
def test_validation_bits_per_dim_is_dequantised_and_non_negative() -> None:
    images = _uint8_images(4, 4)
    source, ids, n_bits = _Images(images), np.arange(4), 3
    glow = _overfit_glow(images, n_bits)
    with torch.no_grad():
        discrete = float(glow.bits_per_dim(preprocess(images, n_bits).double()).mean())
    assert discrete < 0  # the old (un-noised) figure: a density, not a code length
    bpd = evaluate_bits_per_dim(glow, source, ids, n_bits, seed=0)
    assert bpd >= 0 and math.isfinite(bpd)


def test_validation_bits_per_dim_matches_a_hand_computation() -> None:
    """bits/dim = (-log p_Z(f(x + u)) - log|det df/dx| + D n ln 2) / (D ln 2) by brute force:
    the Jacobian from autograd and a N(0, I) prior (untrained priors are zero-initialised)."""
    torch.manual_seed(1)
    n_bits, size = 4, 4
    images = _uint8_images(3, size, seed=2)
    glow = Glow(image_size=size, n_levels=2, n_steps=1, hidden=8, n_bits=n_bits).double()
    glow.initialize_actnorm(preprocess(images, n_bits).double())
    with torch.no_grad():  # move the flow (not the priors) off its identity-like start
        for name, p in glow.named_parameters():
            if ".prior." not in name:
                p.add_(0.1 * torch.randn_like(p))
    glow.eval()
    ids = np.array([0, 2])
    noise = validation_noise(ids, (3, size, size), n_bits, seed=5)
    assert noise.min() >= 0 and noise.max() < 1 / 2**n_bits
    x = (preprocess(images[ids], n_bits) + noise).double()  # as evaluated: float32 inputs
    dims = 3 * size * size
    expected = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(
            lambda v: glow.encode(v.reshape(1, 3, size, size)).reshape(-1), xi.reshape(-1)
        )
        z = glow.encode(xi[None]).detach().reshape(-1)
        log_pz = float(-0.5 * (z**2).sum() - 0.5 * dims * math.log(2 * math.pi))
        log_px = log_pz + float(torch.linalg.slogdet(jac)[1])
        expected.append((-log_px + dims * n_bits * math.log(2)) / (dims * math.log(2)))
    bpd = evaluate_bits_per_dim(glow, _Images(images), ids, n_bits, seed=5, batch_size=1)
    assert abs(bpd - float(np.mean(expected))) <= 1e-9


def test_preprocessing_is_built_from_the_flow() -> None:
    flow = GlowConfig(image_size=16, n_levels=2, n_bits=4)
    assert Preprocessing.for_flow(flow) == Preprocessing(image_size=16, n_bits=4)


@pytest.mark.parametrize("kind", ["glow", "similarity_spec"])
@pytest.mark.parametrize("field,value", [("image_size", 16), ("n_bits", 6)])
def test_flow_and_preprocessing_mismatch_is_an_invalid_artifact(
    tmp_path: Path, kind: str, field: str, value: int
) -> None:
    meta, tensors = make(kind)
    raw = json.loads(meta.model_dump_json())
    raw["preprocessing"][field] = value
    path = tmp_path / f"{kind}.safetensors"
    write_raw(path, json.dumps(raw), tensors)
    with pytest.raises(InvalidArtifactError, match=f"preprocessing.{field} = {value} differs"):
        read_artifact(path)
