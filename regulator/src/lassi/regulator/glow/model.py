"""Multi-scale Glow (Kingma & Dhariwal 2018, Fig. 2b), rosinality-style, with exact encode/decode.

The flow E_G maps a preprocessed image x in [-0.5, 0.5) to a flat latent z of the same
dimension (channels * H * W) and D_G is its exact inverse. All split halves are kept, so
``decode(encode(x)) == x`` up to floating-point error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lassi.regulator.glow.layers import COUPLINGS, FlowStep, InvConv2dLU
from lassi.regulator.glow.split import SplitPrior, Squeeze, TopPrior


class GlowLevel(nn.Module):
    """One level of the multi-scale architecture: squeeze -> K flow steps -> split (or top)."""

    def __init__(
        self, in_channels: int, size: int, n_steps: int, hidden: int, coupling: str, split: bool
    ) -> None:
        super().__init__()
        channels = in_channels * 4
        self.split = split
        self.squeeze = Squeeze()
        self.steps = nn.ModuleList(FlowStep(channels, hidden, coupling) for _ in range(n_steps))
        self.prior: SplitPrior | TopPrior
        if split:
            self.prior = SplitPrior(channels)
            self.z_shape = (channels // 2, size // 2, size // 2)
        else:
            self.prior = TopPrior(channels, size // 2)
            self.z_shape = (channels, size // 2, size // 2)

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """Return (kept half or None at the top, z, log-det, log p(z))."""
        h, logdet = self.squeeze(x)
        for step in self.steps:
            h, ld = step(h)
            logdet = logdet + ld
        if self.split:
            kept, z, log_p = self.prior(h)
            return kept, z, logdet, log_p
        return None, h, logdet, self.prior.log_prob(h)

    def inverse(self, kept: Tensor | None, z: Tensor) -> tuple[Tensor, Tensor]:
        """Return (x, log|det dx/dz|) from the kept half (None at the top) and z."""
        h = self.prior.inverse(kept, z) if self.split else z
        logdet = h.new_zeros(h.shape[0])
        for step in reversed(self.steps):
            h, ld = step.inverse(h)
            logdet = logdet + ld
        x, _ = self.squeeze.inverse(h)
        return x, logdet

    def sample_z(
        self,
        kept: Tensor | None,
        n: int,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if self.split:
            return self.prior.sample(kept, temperature, generator)
        return self.prior.sample(n, temperature, generator)


class Glow(nn.Module):
    """Multi-scale Glow with LU 1x1 convs, learned priors and exact, lossless encode/decode.

    ``encode(x)`` returns the flat latent [N, channels * image_size**2]: every level's
    split-off z followed by the top z, each flattened in C, H, W order. ``decode`` is its
    exact inverse. x is a preprocessed image in [-0.5, 0.5) (see :func:`preprocess`).
    """

    def __init__(
        self,
        image_size: int = 64,
        n_levels: int = 3,
        n_steps: int = 8,
        hidden: int = 128,
        coupling: str = "additive",
        n_bits: int = 5,
        channels: int = 3,
    ) -> None:
        super().__init__()
        if n_levels < 1 or image_size % (2**n_levels):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**n_levels = {2**n_levels}"
            )
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
        if not 1 <= n_bits <= 8:
            raise ValueError(f"n_bits must be in 1..8, got {n_bits}")
        self.image_size = image_size
        self.n_levels = n_levels
        self.n_steps = n_steps
        self.hidden = hidden
        self.coupling = coupling
        self.n_bits = n_bits
        self.channels = channels

        levels = []
        c, size = channels, image_size
        for i in range(n_levels):
            split = i < n_levels - 1
            levels.append(GlowLevel(c, size, n_steps, hidden, coupling, split))
            c, size = c * 2, size // 2
        self.levels = nn.ModuleList(levels)
        self.z_shapes: list[tuple[int, int, int]] = [lv.z_shape for lv in self.levels]
        self.z_sizes: list[int] = [math.prod(s) for s in self.z_shapes]

    @property
    def latent_dim(self) -> int:
        return self.channels * self.image_size**2

    @property
    def n_bins(self) -> int:
        return 2**self.n_bits

    def _check_image(self, x: Tensor) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected input [N, {', '.join(map(str, expected))}], got {tuple(x.shape)}"
            )

    def encode_with_logdet(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (flat z, log|det dz/dx|, log p(z)); the last two per sample, shape [N]."""
        self._check_image(x)
        zs = []
        logdet = x.new_zeros(x.shape[0])
        log_pz = x.new_zeros(x.shape[0])
        h: Tensor | None = x
        for level in self.levels:
            h, z, ld, lp = level(h)
            zs.append(z.flatten(1))
            logdet = logdet + ld
            log_pz = log_pz + lp
        return torch.cat(zs, dim=1), logdet, log_pz

    def encode(self, x: Tensor) -> Tensor:
        """E_G: preprocessed images [N, C, H, W] -> flat latents [N, latent_dim]."""
        self._check_image(x)
        zs = []
        h: Tensor | None = x
        for level in self.levels:
            h, z, _, _ = level(h)
            zs.append(z.flatten(1))
        return torch.cat(zs, dim=1)

    def split_latent(self, z: Tensor) -> list[Tensor]:
        """Cut a flat latent into the per-level z tensors [N, C_i, H_i, W_i]."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latent [N, {self.latent_dim}], got {tuple(z.shape)}")
        parts = torch.split(z, self.z_sizes, dim=1)
        return [p.reshape(-1, *shape) for p, shape in zip(parts, self.z_shapes, strict=True)]

    def decode_with_logdet(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """D_G with log|det dx/dz| per sample (= minus the encoder's log-det at x)."""
        zs = self.split_latent(z)
        h: Tensor | None = None
        logdet = z.new_zeros(z.shape[0])
        for level, z_level in zip(reversed(self.levels), reversed(zs), strict=True):
            h, ld = level.inverse(h, z_level)
            logdet = logdet + ld
        assert h is not None
        return h, logdet

    def decode(self, z: Tensor) -> Tensor:
        """D_G: flat latents [N, latent_dim] -> preprocessed images [N, C, H, W]."""
        return self.decode_with_logdet(z)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Continuous log-density log p(x) = log p(z) + log|det dz/dx| per sample, [N]."""
        _, logdet, log_pz = self.encode_with_logdet(x)
        return log_pz + logdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (flat z, log p(x)); the first call in training mode initialises ActNorm."""
        z, logdet, log_pz = self.encode_with_logdet(x)
        return z, log_pz + logdet

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Per-sample bits/dim of dequantised x: -(log p(x) - D log(2**n_bits)) / (D ln 2).

        With x = quantised image + U[0, 1/2**n_bits) noise this is the standard (Glow, Sec. 5;
        RealNVP Sec. 4.1) upper bound on the discrete model's code length, never negative
        in expectation over the noise.
        """
        n_dims = self.latent_dim
        log_px = self.log_prob(x)
        return -(log_px - n_dims * math.log(self.n_bins)) / (n_dims * math.log(2.0))

    @torch.no_grad()
    def initialize_actnorm(self, x: Tensor) -> None:
        """Run the data-dependent ActNorm initialisation on the batch ``x``."""
        was_training = self.training
        self.train()
        self.encode(x)
        self.train(was_training)

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 0.7, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw images [n, C, H, W] by sampling every z from the learned priors."""
        h: Tensor | None = None
        for level in reversed(self.levels):
            z = level.sample_z(h, n, temperature, generator)
            h, _ = level.inverse(h, z)
        assert h is not None
        return h

    def invconvs(self) -> Iterator[InvConv2dLU]:
        return (m for m in self.modules() if isinstance(m, InvConv2dLU))

    def cache_inverse(self) -> None:
        """Precompute every 1x1-conv inverse weight (faster decode; required for export)."""
        for conv in self.invconvs():
            conv.cache_inverse()

    def clear_inverse_cache(self) -> None:
        for conv in self.invconvs():
            conv.clear_inverse_cache()

    @contextmanager
    def inverse_cached(self) -> Iterator[Glow]:
        """Context in which reverse passes use the cached 1x1-conv inverse weights."""
        self.cache_inverse()
        try:
            yield self
        finally:
            self.clear_inverse_cache()


@torch.no_grad()
def validate_inverse(glow: Glow, x: Tensor) -> float:
    """Max abs error of decode(encode(x)) - x (in the model's dtype); no ActNorm init."""
    was_training = glow.training
    glow.eval()
    try:
        return float((glow.decode(glow.encode(x)) - x).abs().max())
    finally:
        glow.train(was_training)
