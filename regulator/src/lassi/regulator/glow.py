"""Multi-scale Glow normalising flow (Kingma & Dhariwal, 2018), rosinality-style.

The flow E_G maps a preprocessed image x in [-0.5, 0.5) to a flat latent z of the same
dimension (channels * H * W) and D_G is its exact inverse. Every transform below follows
Table 1 of the Glow paper and exposes ``forward(x) -> (y, logdet)`` (log-det per sample,
shape [N]) and ``inverse(y) -> x``:

| transform            | forward                           | log-determinant          |
| -------------------- | --------------------------------- | ------------------------ |
| ActNorm              | y = (x + b) * exp(logs)           | H * W * sum(logs)        |
| invertible 1x1 conv  | y = W x, W = P L (U + diag(s))    | H * W * sum(log abs(s))  |
| additive coupling    | y_b = x_b + NN(x_a)               | 0                        |
| affine coupling      | y_b = (x_b + t) * sigmoid(h + 2)  | sum(log sigmoid(h + 2))  |

A level squeezes (2x2 space-to-depth), applies K flow steps and splits half of the channels
off as that level's z, scored by a learned conditional Gaussian prior; the last level keeps
everything and has a learned unconditional prior. All split halves are kept, so
``decode(encode(x)) == x`` up to floating-point error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "FlowStep",
    "Glow",
    "GlowLevel",
    "InvConv2dLU",
    "SplitPrior",
    "TopPrior",
    "ZeroConv2d",
    "export_onnx",
    "gaussian_log_prob",
    "postprocess",
    "preprocess",
    "squeeze",
    "unsqueeze",
    "validate_inverse",
]

COUPLINGS = ("additive", "affine")
_LOG_2PI = math.log(2.0 * math.pi)


def _per_sample(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scalar log-determinant to one entry per sample of ``x``."""
    return value.expand(x.shape[0])


# --------------------------------------------------------------------------- transforms


class ActNorm(nn.Module):
    """Per-channel affine normalisation with data-dependent initialisation (Glow, Sec. 3.1).

    The first forward pass in training mode sets ``loc``/``logs`` so that the output has zero
    mean and unit variance per channel. The ``initialized`` flag is a persistent buffer, so
    it travels with the weights and a reloaded model is not re-initialised.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters from the statistics of the batch ``x``."""
        if x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError("ActNorm initialisation needs at least 2 values per channel")
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.loc.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.loc) * torch.exp(self.logs)
        logdet = x.shape[2] * x.shape[3] * self.logs.sum()
        return y, _per_sample(logdet, x)

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs) - self.loc


class InvConv2dLU(nn.Module):
    """Invertible 1x1 convolution with LU-parametrised weight W = P L (U + diag(sign * exp(log_s))).

    P (a permutation) and the signs of s are fixed buffers; L is unit lower triangular and U
    strictly upper triangular. The inverse weight is computed with triangular solves in
    float64, never with ``torch.linalg.inv``; :meth:`cache_inverse` stores it in a buffer
    so that reverse passes export to ONNX as a plain convolution.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())
        self.register_buffer("inverse_cache", None, persistent=False)
        self._cache_key: tuple | None = None

    def _factors(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        eye = torch.eye(self.log_s.shape[0], dtype=dtype, device=self.log_s.device)
        lower = torch.tril(self.lower.to(dtype), -1) + eye
        upper = torch.triu(self.upper.to(dtype), 1) + torch.diag(
            self.sign_s.to(dtype) * torch.exp(self.log_s.to(dtype))
        )
        return self.perm.to(dtype), lower, upper

    def weight(self) -> Tensor:
        """The forward weight W = P L U, shape [C, C]."""
        perm, lower, upper = self._factors(self.log_s.dtype)
        return perm @ lower @ upper

    def _parameter_key(self) -> tuple:
        return tuple(
            (p._version, p.data_ptr(), p.dtype, p.device)
            for p in (self.lower, self.upper, self.log_s)
        )

    def inverse_weight(self) -> Tensor:
        """W^-1 = U^-1 L^-1 P^T by two triangular solves (float64 where the device has it)."""
        work = torch.float64 if self.log_s.device.type != "mps" else self.log_s.dtype
        perm, lower, upper = self._factors(work)
        l_inv_pt = torch.linalg.solve_triangular(lower, perm.T, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, l_inv_pt, upper=True).to(self.log_s.dtype)

    @torch.no_grad()
    def cache_inverse(self) -> None:
        """Store W^-1 in a buffer used by :meth:`inverse` until the parameters change."""
        self.inverse_cache = self.inverse_weight()
        self._cache_key = self._parameter_key()

    def clear_inverse_cache(self) -> None:
        self.inverse_cache = None
        self._cache_key = None

    def _cached_inverse(self) -> Tensor | None:
        if self.inverse_cache is None:
            return None
        tracing = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if tracing or self._cache_key == self._parameter_key():
            return self.inverse_cache
        self.clear_inverse_cache()
        return None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = F.conv2d(x, self.weight()[:, :, None, None])
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return y, _per_sample(logdet, x)

    def inverse(self, y: Tensor) -> Tensor:
        w_inv = self._cached_inverse()
        if w_inv is None:
            w_inv = self.inverse_weight()
        return F.conv2d(y, w_inv[:, :, None, None])


class ZeroConv2d(nn.Module):
    """Zero-initialised 3x3 convolution with a learned output scale exp(3 * scale).

    The input is padded with ones (rosinality), so border pixels are distinguishable.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=0)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, [1, 1, 1, 1], value=1.0)) * torch.exp(self.scale * 3)


def _coupling_net(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """NN() of the coupling layer: conv3x3-ReLU-conv1x1-ReLU-ZeroConv3x3."""
    first = nn.Conv2d(in_channels, hidden, 3, padding=1)
    middle = nn.Conv2d(hidden, hidden, 1)
    for conv in (first, middle):
        nn.init.normal_(conv.weight, 0.0, 0.05)
        nn.init.zeros_(conv.bias)
    return nn.Sequential(first, nn.ReLU(), middle, nn.ReLU(), ZeroConv2d(hidden, out_channels))


class AdditiveCoupling(nn.Module):
    """Additive coupling (NICE / Glow): y_a = x_a, y_b = x_b + NN(x_a); volume preserving."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        self.net = _coupling_net(channels // 2, hidden, channels // 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        y = torch.cat([x_a, x_b + self.net(x_a)], dim=1)
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = y.chunk(2, dim=1)
        return torch.cat([y_a, y_b - self.net(y_a)], dim=1)


class AffineCoupling(nn.Module):
    """Affine coupling: y_b = (x_b + t) * sigmoid(h + 2) with (h, t) = NN(x_a).

    The sigmoid keeps the scale in (0, 1) and starts near 0.88, which avoids the
    exploding-scale NaNs of the plain exp(h) form.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        self.net = _coupling_net(channels // 2, hidden, channels)

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        h, shift = self.net(x_a).chunk(2, dim=1)
        return h + 2.0, shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        pre_scale, shift = self._scale_shift(x_a)
        y_b = (x_b + shift) * torch.sigmoid(pre_scale)
        logdet = F.logsigmoid(pre_scale).flatten(1).sum(dim=1)
        return torch.cat([x_a, y_b], dim=1), logdet

    def inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = y.chunk(2, dim=1)
        pre_scale, shift = self._scale_shift(y_a)
        return torch.cat([y_a, y_b / torch.sigmoid(pre_scale) - shift], dim=1)


def _make_coupling(kind: str, channels: int, hidden: int) -> nn.Module:
    if kind == "additive":
        return AdditiveCoupling(channels, hidden)
    if kind == "affine":
        return AffineCoupling(channels, hidden)
    raise ValueError(f"coupling must be one of {COUPLINGS}, got {kind!r}")


class FlowStep(nn.Module):
    """One step of flow (Glow, Fig. 2a): ActNorm -> invertible 1x1 conv -> coupling."""

    def __init__(self, channels: int, hidden: int, coupling: str = "additive") -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv2dLU(channels)
        self.coupling = _make_coupling(coupling, channels, hidden)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, logdet = self.actnorm(x)
        x, ld_conv = self.invconv(x)
        x, ld_coupling = self.coupling(x)
        return x, logdet + ld_conv + ld_coupling

    def inverse(self, y: Tensor) -> Tensor:
        return self.actnorm.inverse(self.invconv.inverse(self.coupling.inverse(y)))


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


# --------------------------------------------------------------------------- priors


def gaussian_log_prob(z: Tensor, mean: Tensor, log_sd: Tensor) -> Tensor:
    """Per-sample log N(z; mean, exp(log_sd)^2), summed over all non-batch dimensions."""
    log_p = -0.5 * _LOG_2PI - log_sd - 0.5 * (z - mean) ** 2 * torch.exp(-2.0 * log_sd)
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


# --------------------------------------------------------------------------- Glow


class GlowLevel(nn.Module):
    """One level of the multi-scale architecture: squeeze -> K flow steps -> split (or top)."""

    def __init__(
        self, in_channels: int, size: int, n_steps: int, hidden: int, coupling: str, split: bool
    ) -> None:
        super().__init__()
        channels = in_channels * 4
        self.split = split
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
        h = squeeze(x)
        logdet = x.new_zeros(x.shape[0])
        for step in self.steps:
            h, ld = step(h)
            logdet = logdet + ld
        if self.split:
            kept, z, log_p = self.prior(h)
            return kept, z, logdet, log_p
        return None, h, logdet, self.prior.log_prob(h)

    def inverse(self, kept: Tensor | None, z: Tensor) -> Tensor:
        h = self.prior.inverse(kept, z) if self.split else z
        for step in reversed(self.steps):
            h = step.inverse(h)
        return unsqueeze(h)

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
    def config(self) -> dict[str, int | str]:
        """Constructor arguments, e.g. for safetensors metadata."""
        return {
            "image_size": self.image_size,
            "n_levels": self.n_levels,
            "n_steps": self.n_steps,
            "hidden": self.hidden,
            "coupling": self.coupling,
            "n_bits": self.n_bits,
            "channels": self.channels,
        }

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

    def decode(self, z: Tensor) -> Tensor:
        """D_G: flat latents [N, latent_dim] -> preprocessed images [N, C, H, W]."""
        zs = self.split_latent(z)
        h: Tensor | None = None
        for level, z_level in zip(reversed(self.levels), reversed(zs), strict=True):
            h = level.inverse(h, z_level)
        assert h is not None
        return h

    def log_prob(self, x: Tensor) -> Tensor:
        """Continuous log-density log p(x) = log p(z) + log|det dz/dx| per sample, [N]."""
        _, logdet, log_pz = self.encode_with_logdet(x)
        return log_pz + logdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (flat z, log p(x)); the first call in training mode initialises ActNorm."""
        z, logdet, log_pz = self.encode_with_logdet(x)
        return z, log_pz + logdet

    def dequantize(self, x: Tensor) -> Tensor:
        """Add uniform noise U(0, 1/2**n_bits) (training only)."""
        return x + torch.rand_like(x) / self.n_bins

    def bits_per_dim(self, x: Tensor, dequantize: bool = False) -> Tensor:
        """Per-sample bits/dim: -(log p(x) - D log(2**n_bits)) / (D ln 2)."""
        if dequantize:
            x = self.dequantize(x)
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
            h = level.inverse(h, z)
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


# --------------------------------------------------------------------------- image I/O


def preprocess(images: np.ndarray | Tensor, n_bits: int = 5) -> Tensor:
    """uint8 images [N, H, W, C] -> float32 [N, C, H, W] = floor(x / 2**(8-n)) / 2**n - 0.5."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.dim() != 4:
        raise ValueError(f"expected uint8 [N, H, W, C] images, got {t.dtype} {tuple(t.shape)}")
    quantised = torch.div(t.to(torch.int64), 2 ** (8 - n_bits), rounding_mode="floor")
    x = quantised.to(torch.float32) / 2**n_bits - 0.5
    return x.permute(0, 3, 1, 2).contiguous()


def postprocess(x: Tensor) -> np.ndarray:
    """float [N, C, H, W] in [-0.5, 0.5] -> uint8 numpy [N, H, W, C] (clamp, +0.5, *255)."""
    img = (x.detach().clamp(-0.5, 0.5) + 0.5) * 255.0
    img = img.round().to(torch.uint8).permute(0, 2, 3, 1)
    return img.cpu().numpy()


@torch.no_grad()
def validate_inverse(glow: Glow, x: Tensor) -> float:
    """Max abs error of decode(encode(x)) - x (in the model's dtype); no ActNorm init."""
    was_training = glow.training
    glow.eval()
    try:
        return float((glow.decode(glow.encode(x)) - x).abs().max())
    finally:
        glow.train(was_training)


# --------------------------------------------------------------------------- ONNX


class _EncodeGraph(nn.Module):
    def __init__(self, glow: Glow) -> None:
        super().__init__()
        self.glow = glow

    def forward(self, x: Tensor) -> Tensor:
        return self.glow.encode(x)


class _DecodeGraph(nn.Module):
    def __init__(self, glow: Glow) -> None:
        super().__init__()
        self.glow = glow

    def forward(self, z: Tensor) -> Tensor:
        return self.glow.decode(z)


def export_onnx(
    glow: Glow,
    path: str | os.PathLike[str],
    direction: str,
    opset: int = 18,
    example_batch: int = 2,
) -> None:
    """Export E_G ("encode": x [N, C, H, W] -> z [N, D]) or D_G ("decode": z -> x) to ONNX.

    The batch dimension is dynamic; weights are embedded in the file (no external data).
    The model is exported in eval mode with cached 1x1-conv inverses, in its own dtype.
    """
    import onnx

    param = next(glow.parameters())
    dtype, device = param.dtype, param.device
    if direction == "encode":
        graph: nn.Module = _EncodeGraph(glow)
        shape = (example_batch, glow.channels, glow.image_size, glow.image_size)
        example = torch.rand(shape, dtype=dtype, device=device) - 0.5
        names = (["x"], ["z"])
    elif direction == "decode":
        graph = _DecodeGraph(glow)
        example = torch.randn(example_batch, glow.latent_dim, dtype=dtype, device=device) * 0.5
        names = (["z"], ["x"])
    else:
        raise ValueError(f"direction must be 'encode' or 'decode', got {direction!r}")

    batch = torch.export.Dim("batch")
    was_training = glow.training
    graph.eval()
    try:
        with glow.inverse_cached(), torch.no_grad():
            torch.onnx.export(
                graph,
                (example,),
                os.fspath(path),
                verbose=False,
                input_names=names[0],
                output_names=names[1],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes={names[0][0]: {0: batch}},
            )
    finally:
        glow.train(was_training)
    onnx.checker.check_model(os.fspath(path), full_check=True)
