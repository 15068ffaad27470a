"""The one protocol every invertible transform of the Glow follows.

``forward(x) -> (y, logdet)`` with logdet = log|det dy/dx| and ``inverse(y) -> (x, logdet)``
with logdet = log|det dx/dy| (= minus the forward log-det at that point); both log-dets are
per sample, shape [N]. Composing transforms sums their log-dets (change of variables, Glow
paper Eq. 2-3).
"""

from __future__ import annotations

import abc
import math

from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)


class Transform(nn.Module, abc.ABC):
    """An invertible map with tractable log-determinant (Glow, Sec. 2); every layer of the flow
    implements both directions (an abstract class: it cannot be built without them)."""

    @abc.abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """y = T(x) and log |det ∂T/∂x| per sample."""

    @abc.abstractmethod
    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """x = T⁻¹(y) and log |det ∂T⁻¹/∂y| per sample."""


def per_sample(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scalar log-determinant to one entry per sample of ``x``."""
    return value.expand(x.shape[0])
