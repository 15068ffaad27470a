"""Squeeze and the learned priors of the multi-scale architecture (Glow, Fig. 2b; RealNVP Sec. 3.6).

A level squeezes (2x2 space-to-depth, a :class:`Transform` with log-det 0), and after its
steps of flow splits half of the channels off as that level's z, scored by a learned
conditional Gaussian prior p(z | kept) (:class:`SplitPrior`); the last level keeps everything
and has a learned unconditional prior (:class:`TopPrior`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lassi.regulator.glow.base import LOG_2PI, Transform
from lassi.regulator.glow.layers import ZeroConv2d


def squeeze(x: Tensor) -> Tensor:
    """2x2 space-to-depth: [N, C, H, W] -> [N, 4C, H/2, W/2] (Glow, Fig. 2b)."""
    _, c, h, w = x.shape
    x = x.reshape(-1, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(-1, c * 4, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Inverse of :func:`squeeze`: [N, 4C, H, W] -> [N, C, 2H, 2W]."""
    _, c4, h, w = x.shape
    c = c4 // 4
    x = x.reshape(-1, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(-1, c, h * 2, w * 2)


class Squeeze(Transform):
    """:func:`squeeze` as a transform: a permutation of the entries, so log-det 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return unsqueeze(y), y.new_zeros(y.shape[0])


def gaussian_log_prob(z: Tensor, mean: Tensor, log_sd: Tensor) -> Tensor:
    """Per-sample log N(z; mean, exp(log_sd)^2), summed over all non-batch dimensions."""
    log_p = -0.5 * LOG_2PI - log_sd - 0.5 * (z - mean) ** 2 * torch.exp(-2.0 * log_sd)
    return log_p.flatten(1).sum(dim=1)


class SplitPrior(nn.Module):
    """Split off half the channels as z, with a learned prior p(z | kept) (Glow, Fig. 2b).

    ``forward(h) -> (kept, z, log_p)`` and ``inverse(kept, z) -> h`` (a concatenation, so
    the split is exactly invertible); a zero-initialised conv gives mean and log-std of z.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"split needs an even channel count, got {channels}")
        self.conv = ZeroConv2d(channels // 2, channels)

    def _params(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_sd = self.conv(kept).chunk(2, dim=1)
        return mean, log_sd

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        kept, z = h.chunk(2, dim=1)
        return kept, z, self.log_prob(kept, z)

    def inverse(self, kept: Tensor, z: Tensor) -> Tensor:
        return torch.cat([kept, z], dim=1)

    def log_prob(self, kept: Tensor, z: Tensor) -> Tensor:
        mean, log_sd = self._params(kept)
        return gaussian_log_prob(z, mean, log_sd)

    def sample(
        self, kept: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        mean, log_sd = self._params(kept)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(log_sd) * eps * temperature


class TopPrior(nn.Module):
    """Learned diagonal Gaussian prior for the top level's z (zero-initialised: N(0, I))."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, channels, size, size))
        self.log_sd = nn.Parameter(torch.zeros(1, channels, size, size))

    def log_prob(self, z: Tensor) -> Tensor:
        return gaussian_log_prob(z, self.mean, self.log_sd)

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        shape = (n, *self.mean.shape[1:])
        eps = torch.randn(
            shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        return self.mean + torch.exp(self.log_sd) * eps * temperature
