"""Writes the reference files of tests/regulator/test_glow.py (run once; not a test).

The reference is the single-file Glow of commit 45a0d66 (regulator/src/lassi/regulator/glow.py,
before the flow was split into one class per transform and fused): for each coupling, a Glow
trained three Adam steps from a fixed seed, its inputs, and what it computes (encode, log-det,
log p(z), decode, and in training mode the loss and every gradient). The test loads the weights
into today's Glow and compares. Regenerate with

    git show 45a0d66:regulator/src/lassi/regulator/glow.py > /tmp/glow_baseline.py
    python tests/data/glow_single_file/make_reference.py /tmp/glow_baseline.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from lassi.regulator.glow import preprocess

HERE = Path(__file__).resolve().parent
SETTINGS = {  # name: Glow kwargs, number of images
    "eval": (dict(image_size=8, n_levels=2, n_steps=2, hidden=8), 6),
    "train": (dict(image_size=16, n_levels=3, n_steps=2, hidden=16), 8),
}


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """The test's structured 5-bit images (tests/regulator/test_glow.py ``_images``)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    base = rng.uniform(0, 1, (n, 1, 1, 3))
    slope = rng.uniform(-0.5, 0.5, (n, 1, 1, 3))
    img = base + slope * (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    return preprocess((np.clip(img, 0, 1) * 255).astype(np.uint8), n_bits=5)


def trained(old, kwargs: dict, x: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(14)
    reference = old.Glow(**kwargs)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    reference.train()
    for _ in range(3):
        loss = reference.bits_per_dim(x + torch.rand_like(x) / 32).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    reference.zero_grad(set_to_none=True)
    return reference.eval()


def main(baseline: str) -> None:
    spec = importlib.util.spec_from_file_location("glow_baseline", baseline)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    for coupling in ("additive", "affine"):
        kwargs, n = SETTINGS["eval"]
        x = images(n, kwargs["image_size"])
        reference = trained(old, {**kwargs, "coupling": coupling}, x)
        with torch.no_grad():
            z, logdet, log_pz = reference.encode_with_logdet(x)
            out = {"x": x, "z": z, "logdet": logdet, "log_pz": log_pz, "decoded": reference.decode(z)}
        weights = {f"weight.{k}": v.contiguous() for k, v in reference.state_dict().items()}
        save_file({**out, **weights}, HERE / f"eval-{coupling}.safetensors")

        kwargs, n = SETTINGS["train"]
        size = kwargs["image_size"]
        x = images(n, size) + torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3)) / 32
        reference = trained(old, {**kwargs, "coupling": coupling}, x).train()
        weights = {f"weight.{k}": v.detach().clone().contiguous() for k, v in reference.state_dict().items()}
        z, logdet, log_pz = reference.encode_with_logdet(x)
        loss = reference.bits_per_dim(x).mean()
        loss.backward()
        grads = {f"grad.{k}": p.grad.contiguous() for k, p in reference.named_parameters()}
        out = {"x": x, "z": z.detach(), "logdet": logdet.detach(), "log_pz": log_pz.detach(), "loss": loss.detach()}
        save_file({**out, **weights, **grads}, HERE / f"train-{coupling}.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
