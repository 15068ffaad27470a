"""Multi-scale Glow normalising flow (Kingma & Dhariwal, 2018), rosinality-style.

- :mod:`.base`: the one protocol of every transform, ``forward(x) -> (y, logdet)`` and
  ``inverse(y) -> (x, logdet)``;
- :mod:`.layers`: ActNorm, LU-parametrised invertible 1x1 conv, additive/affine couplings,
  the step of flow;
- :mod:`.split`: squeeze and the learned split/top priors;
- :mod:`.model`: the multi-scale Glow with exact encode/decode keeping every split z;
- :mod:`.images`: uint8 images <-> Glow inputs;
- :mod:`.rosinality`: importing a rosinality/glow-pytorch checkpoint (the LASSI authors' Glows).
"""

from lassi.regulator.glow.base import Transform
from lassi.regulator.glow.images import postprocess, preprocess
from lassi.regulator.glow.layers import (
    COUPLINGS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowStep,
    InvConv2dLU,
    ZeroConv2d,
)
from lassi.regulator.glow.model import Glow, GlowLevel, validate_inverse
from lassi.regulator.glow.split import (
    SplitPrior,
    Squeeze,
    TopPrior,
    gaussian_log_prob,
    squeeze,
    unsqueeze,
)

__all__ = [
    "COUPLINGS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "FlowStep",
    "Glow",
    "GlowLevel",
    "InvConv2dLU",
    "SplitPrior",
    "Squeeze",
    "TopPrior",
    "Transform",
    "ZeroConv2d",
    "gaussian_log_prob",
    "postprocess",
    "preprocess",
    "squeeze",
    "unsqueeze",
    "validate_inverse",
]
