"""Training losses of the fair encoder E_L (LASSI paper Sec. 4.2; DESIGN.md §2).

L = CE(C_aux(E_L(z)), y) + λ_adv · L_adv + λ_contr · L_contr [+ λ_rec · MSE(D(E_L(z)), z)], with
the adversarial term approximated by a *random attack*: sample points t uniformly from the
ε-ball of the m-dimensional attribute space (segment, disc or n-ball) and keep, per input, the
one whose representation is farthest from E_L(z), the encoder in eval mode for the arg-max.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


@torch.no_grad()
def random_attack(
    encoder: Callable[[Tensor], Tensor],
    z: Tensor,
    attr_vectors: Tensor,
    epsilon: float,
    n_points: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The random attack: for each z [B, ...] the z + t·A (t of n_points uniform ball draws)
    whose representation is farthest from E_L(z); attr_vectors [m, ...] like one z.

    The encoder runs in eval mode (its training flag is restored afterwards); one batch of B per
    candidate t, so memory is O(B · D) whatever n_points is. Returns the detached z_adv.
    """
    was_training = encoder.training if isinstance(encoder, nn.Module) else False
    if isinstance(encoder, nn.Module):
        encoder.eval()
    try:
        batch, m = z.shape[0], attr_vectors.shape[0]
        directions = attr_vectors.reshape(m, -1).to(z)
        flat = z.reshape(batch, -1)
        t = sample_ball(generator, batch * n_points, m, epsilon, dtype=z.dtype)
        t = t.to(z.device).reshape(batch, n_points, m)
        reference = encoder(z)
        best_z = z.clone()
        best_distance = torch.full((batch,), -1.0, dtype=reference.dtype, device=z.device)
        for j in range(n_points):
            candidate = (flat + t[:, j] @ directions).reshape(z.shape)
            distance = torch.linalg.vector_norm(encoder(candidate) - reference, dim=1)
            better = distance > best_distance
            best_z[better] = candidate[better]
            best_distance = torch.where(better, distance, best_distance)
        return best_z
    finally:
        if isinstance(encoder, nn.Module):
            encoder.train(was_training)


@torch.no_grad()
def random_attack_affine(
    mlp: nn.Module,
    z: Tensor,
    attr_vectors: Tensor,
    epsilon: float,
    n_points: int,
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 25,
) -> Tensor:
    """:func:`random_attack` for a :class:`LatentMLP`, same draws and same result, faster.

    In eval mode the first Linear + BatchNorm is affine, so for every candidate
    g(z + t A) = g(z) + t (s ⊙ W A): the expensive first layer runs once per input instead of
    once per candidate (the affine trick of center smoothing, applied to the attack).
    """
    was_training = mlp.training
    mlp.eval()
    try:
        batch, m = z.shape[0], attr_vectors.shape[0]
        directions = attr_vectors.reshape(m, -1).to(z)
        t = sample_ball(generator, batch * n_points, m, epsilon, dtype=z.dtype)
        t = t.to(z.device).reshape(batch, n_points, m)
        linear, norm = mlp.net[0], mlp.net[1]
        tail = nn.Sequential(*mlp.net[2:])
        h0 = norm(linear(z.reshape(batch, -1)))
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        h = (directions @ linear.weight.T) * scale
        reference = tail(h0)
        distances = torch.empty(batch, n_points, dtype=reference.dtype, device=z.device)
        step = max(1, max_elements // max(1, batch * h.shape[1]))
        for j in range(0, n_points, step):
            tj = t[:, j : j + step]
            hidden = (h0[:, None, :] + tj @ h).reshape(-1, h.shape[1])
            out = tail(hidden).reshape(batch, tj.shape[1], -1)
            distances[:, j : j + step] = torch.linalg.vector_norm(out - reference[:, None], dim=2)
        best = distances.argmax(dim=1)
        chosen = t[torch.arange(batch, device=z.device), best]
        return (z.reshape(batch, -1) + chosen @ directions).reshape(z.shape)
    finally:
        mlp.train(was_training)


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
    """The encoder objective (DESIGN.md §2): CE + λ_adv · adv + λ_contr · contr + λ_rec · rec.

    Terms whose weight is 0 are not computed (reported as 0). ``__call__`` returns a dict of
    tensors: "loss" (the total to minimise), "ce", "adv", "contr", "rec".
    """

    lambda_adv: float = 0.0
    lambda_contr: float = 0.0
    lambda_rec: float = 0.0
    delta_adv: float = 0.0
    delta_contr: float = 10.0

    def __call__(
        self,
        encoder: Callable[[Tensor], Tensor],
        aux: Callable[[Tensor], Tensor],
        z: Tensor,
        y: Tensor,
        z_adv: Tensor | None = None,
        decoder: Callable[[Tensor], Tensor] | None = None,
    ) -> dict[str, Tensor]:
        r = encoder(z)
        zero = r.new_zeros(())
        ce = F.cross_entropy(aux(r), y)
        adv = contr = rec = zero
        if self.lambda_adv > 0:
            if z_adv is None:
                raise ValueError("lambda_adv > 0 needs z_adv (see random_attack)")
            adv = adversarial_loss(r, encoder(z_adv), self.delta_adv)
        if self.lambda_contr > 0:
            contr = contrastive_loss(r, y, self.delta_contr)
        if self.lambda_rec > 0:
            if decoder is None:
                raise ValueError("lambda_rec > 0 needs a decoder")
            rec = F.mse_loss(decoder(r), z.flatten(1))
        total = ce + self.lambda_adv * adv + self.lambda_contr * contr + self.lambda_rec * rec
        return {"loss": total, "ce": ce, "adv": adv, "contr": contr, "rec": rec}
