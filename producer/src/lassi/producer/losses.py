"""Training losses of the fair encoder E_L (LASSI paper Sec. 4.2).

L = CE(C_aux(E_L(z)), y) + λ_adv · L_adv + λ_contr · L_contr [+ λ_rec · MSE(D(E_L(z)), z)], with
the adversarial term approximated by a *random attack*: sample points t uniformly from the
ε-ball of the m-dimensional attribute space (segment, disc or n-ball), or from the cube
[−ε, ε]^m that contains it, and keep, per input, the one whose representation is farthest from
E_L(z), the encoder in eval mode for the arg-max.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lassi.producer.base_function import AffineBase, BaseFunction
from lassi.spec import LossWeights


def sample_ball(
    generator: np.random.Generator | torch.Generator | None,
    n_points: int,
    m: int,
    epsilon: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> np.ndarray | Tensor:
    """n_points uniform samples [n_points, m] from the ℓ2 ball of radius ε in R^m.

    Direction ~ normalised Gaussian, radius ε · U^(1/m) (m = 1: uniform on [−ε, ε]; m = 2: the
    disc). A numpy Generator gives a float64 array; a torch Generator (or None) a tensor.
    A Gaussian draw of exactly 0 (it happens: float32 ``randn`` gives 0.0 about once in 2^24
    draws) takes the direction e_1 instead of 0/0 = NaN; that event has probability zero under
    the ideal distribution, so the law is unchanged.
    """
    if isinstance(generator, np.random.Generator):
        direction = generator.standard_normal((n_points, m))
        radius = epsilon * generator.random(n_points) ** (1.0 / m)
        direction[~direction.any(axis=1), 0] = 1.0
        return direction / np.linalg.norm(direction, axis=1, keepdims=True) * radius[:, None]
    gen_device = generator.device if generator is not None else device
    direction = torch.randn(n_points, m, generator=generator, dtype=dtype, device=gen_device)
    uniform = torch.rand(n_points, generator=generator, dtype=dtype, device=gen_device)
    radius = epsilon * uniform ** (1.0 / m)
    direction[~direction.any(dim=1), 0] = 1.0
    points = direction / torch.linalg.vector_norm(direction, dim=1, keepdim=True) * radius[:, None]
    return points.to(device) if device is not None else points


def sample_attack(
    generator: torch.Generator | None,
    n_points: int,
    m: int,
    epsilon: float,
    region: str = "ball",
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """n_points attack draws t [n_points, m]: uniform on the ε-ball (:func:`sample_ball`), or,
    for ``region="cube"``, each coordinate uniform on [−ε, ε] independently (the authors' random
    attack for one attribute with several vectors, eth-sri/lassi ``UniformNoiseAdder``). The cube
    contains the ball, so training on it asks for invariance on a superset of the certified set;
    for m = 49 its draws have norm ≈ ε·sqrt(m/3) ≈ 4ε, the scale of center smoothing's
    N(0, σ² I_m) noise (σ·sqrt(m) ≈ 4.6 at σ = 0.65), which the ball's draws never reach."""
    if region == "ball":
        return sample_ball(generator, n_points, m, epsilon, dtype=dtype)
    if region == "cube":
        uniform = torch.rand(n_points, m, generator=generator, dtype=dtype)
        return (2.0 * uniform - 1.0) * epsilon
    raise ValueError(f"unknown attack region {region!r} (ball or cube)")


@torch.no_grad()
def random_attack(
    base: BaseFunction,
    z: Tensor,
    epsilon: float,
    n_points: int,
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 25,
    points: Tensor | None = None,
    region: str = "ball",
) -> Tensor:
    """The random attack: for each latent z_b of z [B, D] the z_b + t A, t among n_points
    uniform draws from the ε-ball (or the ε-cube, ``region``; see :func:`sample_attack`), whose
    representation is farthest from E_L(z_b).

    E_L runs in eval mode (the training flag is restored afterwards). With the affine trick
    (latent MLP) each candidate costs the layers after the first; otherwise the candidates go
    through the whole encoder one batch of B at a time, so memory is O(B · D) whatever n_points
    is. Ties go to the first draw. Returns the detached z_adv. ``points`` [B, n_points, m]: the
    draws t given by the caller instead (a data-parallel rank passes its rows of the global
    batch's draws).
    """
    was_training = base.training
    base.eval()
    try:
        batch = z.shape[0]
        if points is None:
            points = sample_attack(generator, batch * n_points, base.m, epsilon, region, dtype=z.dtype)
        t = points.to(z.device).reshape(batch, n_points, base.m)
        if base.uses_affine_trick:
            distances = _affine_distances(base.affine(z), t, max_elements)
        else:
            distances = _plain_distances(base, z, t)
        chosen = t[torch.arange(batch, device=z.device), distances.argmax(dim=1)]
        return base.shift(z.reshape(batch, -1), chosen).reshape(z.shape)
    finally:
        base.train(was_training)


def _affine_distances(affine: AffineBase, t: Tensor, max_elements: int) -> Tensor:
    """||f_b(t_bj) − f_b(0)||₂ [B, n] via the affine trick, in chunks of ≈ max_elements hiddens."""
    reference = affine.reference()
    batch, n_points = t.shape[:2]
    distances = torch.empty(batch, n_points, dtype=reference.dtype, device=t.device)
    step = max(1, max_elements // max(1, batch * affine.h.shape[1]))
    for j in range(0, n_points, step):
        out = affine(t[:, j : j + step])
        distances[:, j : j + step] = torch.linalg.vector_norm(out - reference[:, None], dim=2)
    return distances


def _plain_distances(base: BaseFunction, z: Tensor, t: Tensor) -> Tensor:
    """||E_L(z_b + t_bj A) − E_L(z_b)||₂ [B, n], one candidate per latent at a time."""
    flat = z.reshape(z.shape[0], -1)
    reference = base(z)
    distances = torch.empty(t.shape[:2], dtype=reference.dtype, device=z.device)
    for j in range(t.shape[1]):
        candidate = base.shift(flat, t[:, j]).reshape(z.shape)
        distances[:, j] = torch.linalg.vector_norm(base(candidate) - reference, dim=1)
    return distances


def augmented_latents(base: BaseFunction, z: Tensor, t: Tensor) -> Tensor:
    """The data-augmentation baseline's extra samples: z_b + t_bj A for latents z [B, ...] and
    draws t [B, N, m] of the set, as [B·N, ...] (each latent's N points together)."""
    batch, n_points = t.shape[:2]
    flat = z.reshape(batch, -1).repeat_interleave(n_points, dim=0)
    return base.shift(flat, t.reshape(batch * n_points, -1)).reshape(batch * n_points, *z.shape[1:])


def adversarial_loss(r: Tensor, r_adv: Tensor, delta_adv: float = 0.0) -> Tensor:
    """L_adv = mean_b max(0, ||r_b − r_adv,b||₂ − δ_adv)."""
    return torch.relu(torch.linalg.vector_norm(r - r_adv, dim=1) - delta_adv).mean()


def contrastive_loss(r: Tensor, y: Tensor, delta: float) -> Tensor:
    """L_contr (paper Sec. 4.2), averaged over the pairs i < j of the batch (0 for B < 2):
    same class max(0, d − δ), different class max(0, 2δ − d), d = ||r_i − r_j||₂."""
    batch = r.shape[0]
    if batch < 2:
        return r.sum() * 0.0
    # ||r_i − r_j||² from inner products, clamped away from 0 before the square root: sqrt has
    # an infinite derivative at 0 (torch.cdist's backward gives NaN for coinciding points).
    sq = (r * r).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * r @ r.T).clamp_min(1e-12)
    i, j = torch.triu_indices(batch, batch, offset=1, device=r.device)
    d = d2[i, j].sqrt()
    same = y[i] == y[j]
    terms = torch.where(same, torch.relu(d - delta), torch.relu(2.0 * delta - d))
    return terms.mean()


@dataclass
class LassiLoss:
    """The encoder objective (paper Sec. 4.2): CE + λ_adv · adv + λ_contr · contr + λ_rec · rec.

    Called with representations already computed (the trainer passes r and r_adv from one joint
    forward pass of z and z_adv). Terms whose weight is 0 are not computed (reported as 0).
    Returns a dict of tensors: "loss" (the total to minimise), "ce", "adv", "contr", "rec" and
    "logits" (aux(r), for the accuracy).
    """

    lambda_adv: float = 0.0
    lambda_contr: float = 0.0
    lambda_rec: float = 0.0
    delta_adv: float = 0.0
    delta_contr: float = 10.0

    @classmethod
    def from_weights(cls, weights: LossWeights) -> LassiLoss:
        return cls(weights.adv, weights.contr, weights.rec, weights.delta_adv, weights.delta_contr)

    @property
    def active_terms(self) -> list[str]:
        """The terms this objective computes, in the order it computes them."""
        weights = {"adv": self.lambda_adv, "ce": 1.0, "contr": self.lambda_contr, "rec": self.lambda_rec}
        return [name for name, w in weights.items() if w > 0]

    def __call__(
        self,
        r: Tensor,
        y: Tensor,
        aux: Callable[[Tensor], Tensor],
        r_adv: Tensor | None = None,
        z: Tensor | None = None,
        decoder: Callable[[Tensor], Tensor] | None = None,
        r_aug: Tensor | None = None,
        y_aug: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """r = E_L(z) [B, k], y labels, r_adv = E_L(z_adv) (for λ_adv > 0), z and the decoder
        (for λ_rec > 0). ``r_aug``, ``y_aug``: the data-augmentation baseline's extra samples
        (points of the set, their sample's label); CE is then the mean over r and r_aug
        together ("logits" stay those of r)."""
        zero = r.new_zeros(())
        terms = {"adv": zero, "ce": zero, "contr": zero, "rec": zero}
        if self.lambda_adv > 0:
            if r_adv is None:
                raise ValueError("lambda_adv > 0 needs r_adv (see random_attack)")
            terms["adv"] = adversarial_loss(r, r_adv, self.delta_adv)
        logits = aux(r)
        if r_aug is None:
            terms["ce"] = F.cross_entropy(logits, y)
        else:
            if y_aug is None or len(y_aug) != len(r_aug):
                raise ValueError("r_aug needs one label per row (y_aug)")
            terms["ce"] = F.cross_entropy(torch.cat([logits, aux(r_aug)]), torch.cat([y, y_aug]))
        if self.lambda_contr > 0:
            terms["contr"] = contrastive_loss(r, y, self.delta_contr)
        if self.lambda_rec > 0:
            if decoder is None or z is None:
                raise ValueError("lambda_rec > 0 needs a decoder and z")
            terms["rec"] = F.mse_loss(decoder(r), z.flatten(1))
        weights = {"adv": self.lambda_adv, "contr": self.lambda_contr, "rec": self.lambda_rec}
        total = terms["ce"] + sum(w * terms[name] for name, w in weights.items() if w > 0)
        return {"loss": total, **terms, "logits": logits}
