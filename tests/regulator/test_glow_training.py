"""Glow training figures (dequantised bits/dim) and the preprocessing recorded beside a Glow."""

from __future__ import annotations

import json
import math
import re
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


def _divergence_config(**flow):
    from lassi.regulator import DatasetConfig
    from lassi.regulator.training import GlowTrainConfig

    data = DatasetConfig(dataset="shapes3d", image_size=8, n_train=64, n_val=16, n_test=16)
    glow = GlowConfig(image_size=8, n_levels=1, n_steps=2, hidden=8, **flow)
    return GlowTrainConfig(flow=glow, data=data, steps=60, batch_size=16, warmup_steps=0, lr=100.0)


@pytest.mark.slow
def test_a_divergence_says_the_step_the_history_and_the_fitting_remedies(tmp_path: Path) -> None:
    """--lr 100 with affine couplings: step 0 is finite, step 1 NaN. The message names both, the
    learning rate at the step, and suggests what fits an update that blew up (a lower --lr, a
    warm-up, the additive coupling); nothing is written."""
    from lassi.regulator.training import train_glow
    from lassi.spec.contract.errors import TrainingDiverged

    out = tmp_path / "glow.safetensors"
    with pytest.raises(TrainingDiverged) as error:
        train_glow(_divergence_config(coupling="affine"), out, progress=False)
    message = str(error.value)
    assert re.search(r"bits/dim nan at step 1 of 60; before it \d+\.\d{3} \(step 0\); learning rate 100 \(--lr\)",
                     message), message  # fmt: skip
    assert "lower --lr (e.g. --lr 10)" in message and "--coupling additive" in message
    assert "a longer --warmup (now 0)" in message
    assert "not the cause" not in message and "nearly constant" not in message
    assert error.value.exit_code == 2 and not out.exists()


def test_a_divergence_before_any_update_does_not_blame_the_learning_rate() -> None:
    """A non-finite first step of a fresh run comes before any update: --lr is not suggested; a
    batch of constant images is named as what it is (the data's scale, not the optimiser)."""
    from lassi.regulator.training import divergence_message

    config = _divergence_config(coupling="affine")
    constant = torch.full((4, 3, 8, 8), 0.1) + torch.rand(4, 3, 8, 8) / 64  # under one 5-bit level
    message = divergence_message(config, 0, math.inf, [], None, constant, fresh=True)
    assert "bits/dim inf at step 0 of 60" in message
    assert "nearly constant" in message and "check the images" in message
    assert "--lr is not the cause" in message and "lower --lr" not in message
    varied = torch.rand(4, 3, 8, 8) - 0.5
    resumed = divergence_message(config, 0, math.nan, [], None, varied, fresh=False)
    assert "lower --lr" in resumed and "nearly constant" not in resumed


def test_a_divergence_after_a_rise_says_so() -> None:
    from lassi.regulator.training import divergence_message

    config = _divergence_config().model_copy(update={"warmup_steps": 200})
    history = [(46, 3.2), (47, 3.9), (48, 4.8), (49, 6.1)]
    message = divergence_message(config, 50, math.nan, history, (12, 2.9), torch.rand(4, 3, 8, 8) - 0.5, fresh=True)
    assert "before it 3.200 (step 46), 3.900 (step 47), 4.800 (step 48), 6.100 (step 49)" in message
    assert "risen from its lowest, 2.900 at step 12" in message
    assert "learning rate 25.5, warm-up step 51 of 200 to --lr 100" in message
    assert "a longer --warmup (now 200)" in message and "--coupling" not in message  # additive already
