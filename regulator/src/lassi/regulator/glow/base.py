"""The one protocol every invertible transform of the Glow follows.

``forward(x) -> (y, logdet)`` with logdet = log|det dy/dx| and ``inverse(y) -> (x, logdet)``
with logdet = log|det dx/dy| (= minus the forward log-det at that point); both log-dets are
per sample, shape [N]. Composing transforms sums their log-dets (change of variables, Glow
paper Eq. 2-3).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)


class Transform(nn.Module):
    """An invertible map with tractable log-determinant (Glow, Sec. 2)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def per_sample(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scalar log-determinant to one entry per sample of ``x``."""
    return value.expand(x.shape[0])
