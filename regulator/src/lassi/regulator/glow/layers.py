"""The transforms of one Glow step of flow (Kingma & Dhariwal 2018, Table 1 and Fig. 2a).

| transform            | forward                           | log-determinant          |
| -------------------- | --------------------------------- | ------------------------ |
| ActNorm              | y = (x + b) * exp(logs)           | H * W * sum(logs)        |
| invertible 1x1 conv  | y = W x, W = P L (U + diag(s))    | H * W * sum(log abs(s))  |
| additive coupling    | y_b = x_b + NN(x_a)               | 0                        |
| affine coupling      | y_b = (x_b + t) * sigmoid(h + 2)  | sum(log sigmoid(h + 2))  |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lassi.regulator.glow.base import Transform, per_sample

COUPLINGS = ("additive", "affine")


class ActNorm(Transform):
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

    def needs_init(self) -> bool:
        return self.training and not bool(self.initialized)

    def logdet(self, x: Tensor) -> Tensor:
        return per_sample(x.shape[2] * x.shape[3] * self.logs.sum(), x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.needs_init():
            self.initialize(x)
        return (x + self.loc) * torch.exp(self.logs), self.logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y * torch.exp(-self.logs) - self.loc, -self.logdet(y)


class InvConv2dLU(Transform):
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

    def logdet(self, x: Tensor) -> Tensor:
        return per_sample(x.shape[2] * x.shape[3] * self.log_s.sum(), x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return F.conv2d(x, self.weight()[:, :, None, None]), self.logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        w_inv = self._cached_inverse()
        if w_inv is None:
            w_inv = self.inverse_weight()
        return F.conv2d(y, w_inv[:, :, None, None]), -self.logdet(y)


class ZeroConv2d(nn.Module):
    """Zero-initialised 3x3 convolution with a learned output scale exp(3 * scale).

    The input is padded with ones (rosinality), so border pixels are distinguishable. The
    padding is not materialised: conv(pad_1(x)) = conv(pad_0(x)) + conv(ring), where ring is
    1 on the one-pixel border and 0 inside; the second term does not depend on x and is a
    one-channel convolution with the input-channel sums of the weight.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=0)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.conv.weight
        inside = x.new_zeros(1, 1, x.shape[2], x.shape[3])
        ring = F.pad(inside, [1, 1, 1, 1], value=1.0)
        border = F.conv2d(ring, weight.sum(dim=1, keepdim=True))
        out = F.conv2d(x, weight, self.conv.bias, padding=1) + border
        return out * torch.exp(self.scale * 3)


class CouplingNet(nn.Sequential):
    """NN() of the coupling layer: conv3x3-ReLU-conv1x1-ReLU-ZeroConv3x3.

    The hidden activations are kept channels-last (NHWC): oneDNN's convolutions, forward and
    backward, run markedly faster on that layout on CPU than on NCHW. The output has the
    input's values; only its memory layout differs.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        first = nn.Conv2d(in_channels, hidden, 3, padding=1)
        middle = nn.Conv2d(hidden, hidden, 1)
        for conv in (first, middle):
            nn.init.normal_(conv.weight, 0.0, 0.05)
            nn.init.zeros_(conv.bias)
        super().__init__(first, nn.ReLU(), middle, nn.ReLU(), ZeroConv2d(hidden, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def coupling_net(in_channels: int, hidden: int, out_channels: int) -> CouplingNet:
    """NN() of the coupling layer (see :class:`CouplingNet`)."""
    return CouplingNet(in_channels, hidden, out_channels)


class AdditiveCoupling(Transform):
    """Additive coupling (NICE / Glow): y_a = x_a, y_b = x_b + NN(x_a); volume preserving."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        self.net = coupling_net(channels // 2, hidden, channels // 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        y = torch.cat([x_a, x_b + self.net(x_a)], dim=1)
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        y_a, y_b = y.chunk(2, dim=1)
        return torch.cat([y_a, y_b - self.net(y_a)], dim=1), y.new_zeros(y.shape[0])


class AffineCoupling(Transform):
    """Affine coupling: y_b = (x_b + t) * sigmoid(h + 2) with (h, t) = NN(x_a).

    The sigmoid keeps the scale in (0, 1) and starts near 0.88, which avoids the
    exploding-scale NaNs of the plain exp(h) form.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        self.net = coupling_net(channels // 2, hidden, channels)

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        h, shift = self.net(x_a).chunk(2, dim=1)
        return h + 2.0, shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        pre_scale, shift = self._scale_shift(x_a)
        y_b = (x_b + shift) * torch.sigmoid(pre_scale)
        logdet = F.logsigmoid(pre_scale).flatten(1).sum(dim=1)
        return torch.cat([x_a, y_b], dim=1), logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        y_a, y_b = y.chunk(2, dim=1)
        pre_scale, shift = self._scale_shift(y_a)
        x = torch.cat([y_a, y_b / torch.sigmoid(pre_scale) - shift], dim=1)
        return x, -F.logsigmoid(pre_scale).flatten(1).sum(dim=1)


def make_coupling(kind: str, channels: int, hidden: int) -> AdditiveCoupling | AffineCoupling:
    if kind == "additive":
        return AdditiveCoupling(channels, hidden)
    if kind == "affine":
        return AffineCoupling(channels, hidden)
    raise ValueError(f"coupling must be one of {COUPLINGS}, got {kind!r}")


class FlowStep(Transform):
    """One step of flow (Glow, Fig. 2a): ActNorm -> invertible 1x1 conv -> coupling."""

    def __init__(self, channels: int, hidden: int, coupling: str = "additive") -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv2dLU(channels)
        self.coupling = make_coupling(coupling, channels, hidden)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.actnorm.needs_init():
            x, logdet = self.actnorm(x)
            x, ld_conv = self.invconv(x)
            logdet = logdet + ld_conv
        else:
            x, logdet = self.normalised_conv(x)
        x, ld_coupling = self.coupling(x)
        return x, logdet + ld_coupling

    def normalised_conv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """ActNorm then the 1x1 conv as one convolution: W ((x + b) * e) = (W e) x + (W e) b.

        e = exp(logs) scales the columns of W; the log-dets of the two layers are summed once.
        """
        actnorm, invconv = self.actnorm, self.invconv
        weight = invconv.weight() * torch.exp(actnorm.logs.flatten())[None, :]
        bias = weight @ actnorm.loc.flatten()
        dtype = torch.promote_types(x.dtype, weight.dtype)  # as (x + b) * e would promote
        y = F.conv2d(x.to(dtype), weight[:, :, None, None].to(dtype), bias.to(dtype))
        logdet = x.shape[2] * x.shape[3] * (actnorm.logs.sum() + invconv.log_s.sum())
        return y, per_sample(logdet, x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = self.coupling.inverse(y)
        y, ld_conv = self.invconv.inverse(y)
        x, ld_norm = self.actnorm.inverse(y)
        return x, logdet + ld_conv + ld_norm
