"""Li & Xu 2021, "Discover the unknown biased attribute of an image classifier": directions
along which a biased classifier's probability changes most, the ``discover`` attribute-vector
method of :mod:`lassi.regulator.attribute_methods` (the authors' code, eth-sri/lassi, offers it).

Hyperplanes (w, b) are learned so that walking each point's projection onto the plane along the
unit normal by fixed steps changes the classifier's probability most: loss
−log(1e−10 + mean |p_{k+1} − p_k|) + λ · mean((w/||w|| · u)²) over the known unit normals u
(first the task's linear normal, then every direction found). The projection here is the
orthogonal one, z − w (z·w + b) / ||w||².
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from lassi.regulator.glow import Glow
from lassi.spec import UsageError

TV_FLOOR = 1e-10


ProbabilityFn = Callable[[Tensor], Tensor]  # latents [B, D] -> probability of one class [B]


@dataclass
class DiscoveredDirection:
    """One discovered unit direction [D] (float64), its plane's bias, and its last losses."""

    vector: np.ndarray
    bias: float
    tv_loss: float
    max_known_cosine: float


def traverse(z: Tensor, w: Tensor, b: Tensor, steps: Tensor) -> Tensor:
    """Project z [B, D] onto the plane z·w + b = 0 (orthogonally) and walk along the unit
    normal by each step: [B, S, D]."""
    norm_sq = (w * w).sum()
    projected = z - ((z @ w) + b)[:, None] * w[None] / norm_sq
    unit = w / norm_sq.sqrt()
    return projected[:, None, :] + steps[None, :, None] * unit[None, None, :]


def discover_directions(
    probability: ProbabilityFn,
    z_train: np.ndarray,
    known: Sequence[np.ndarray],
    directions: int = 3,
    iterations: int = 2000,
    batch_size: int = 4,
    lr: float = 1e-3,
    lambda_orth: float = 10.0,
    steps: Sequence[float] = (-5.0, 0.0, 5.0),
    seed: int = 0,
    progress: bool = True,
) -> list[DiscoveredDirection]:
    """Li & Xu: ``directions`` hyperplanes learned one after another on shuffled batches of
    ``z_train`` (cycled), each then added to the ``known`` normals; unit vectors returned."""
    if directions < 1 or iterations < 1 or batch_size < 1 or not lr > 0 or lambda_orth < 0:
        raise UsageError(
            None, "discover needs directions, iterations, batch size >= 1, lr > 0, lambda >= 0"
        )
    if len(steps) < 2:
        raise UsageError(None, "discover needs at least two traversal steps")
    d = z_train.shape[1]
    known_units = [np.asarray(u, dtype=np.float64) / np.linalg.norm(u) for u in known]
    generator = torch.Generator().manual_seed(seed)
    step_t = torch.tensor(list(steps), dtype=torch.float32)
    data = torch.from_numpy(np.ascontiguousarray(z_train, dtype=np.float32))
    found: list[DiscoveredDirection] = []
    for k in range(directions):
        w = nn.Parameter(torch.randn(d, generator=generator))
        b = nn.Parameter(torch.randn((), generator=generator))
        optimizer = torch.optim.Adam([w, b], lr=lr)
        u = torch.from_numpy(np.stack(known_units)).float() if known_units else None
        order = torch.randperm(len(data), generator=generator)
        position = 0
        tv = orth = torch.zeros(())
        for _ in tqdm(range(iterations), desc=f"discover {k}", disable=not progress, leave=False):
            if position + batch_size > len(order):
                order, position = torch.randperm(len(data), generator=generator), 0
            z = data[order[position : position + batch_size]]
            position += batch_size
            points = traverse(z, w, b, step_t)
            p = probability(points.reshape(-1, d)).reshape(len(z), len(step_t))
            tv = -torch.log(TV_FLOOR + (p[:, 1:] - p[:, :-1]).abs().mean())
            orth = ((u @ (w / w.norm())) ** 2).mean() if u is not None else torch.zeros(())
            loss = tv + lambda_orth * orth
            if not torch.isfinite(loss):
                raise UsageError(None, f"discover diverged at direction {k} (loss {float(loss)})")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        vector = w.detach().double().numpy()
        norm = np.linalg.norm(vector)
        vector = vector / norm
        cos = max((abs(float(vector @ q)) for q in known_units), default=0.0)
        found.append(DiscoveredDirection(vector, float(b.detach()) / norm, float(tv.detach()), min(cos, 1.0)))
        known_units.append(vector)
    return found


def classifier_probability(
    path: Path, glow: Glow, class_index: int = 1
) -> tuple[ProbabilityFn, str, str]:
    """The biased classifier held by the regulator: a lassi encoder artifact (E_L and its
    auxiliary head, e.g. a naive ``lassi-producer train --lambda-adv 0`` encoder of the task).
    Returns p(z) = softmax(aux(E_L(·)))[class_index] on latents (a latent encoder reads z
    itself, the same as reading D_G(z) since E_G(D_G(z)) = z; an image encoder reads D_G(z)),
    the artifact's SHA-256 and its task. Frozen, eval mode; gradients flow to z only."""
    from lassi.regulator.encoders import AuxClassifier, ImageResNet18, LatentMLP
    from lassi.spec import EncoderCard, read_artifact
    from lassi.spec.contract.torch_state import load_module

    artifact = read_artifact(path, expect=EncoderCard)
    card = artifact.meta
    if card.input_dim != glow.latent_dim:
        raise UsageError(
            path, f"classifier input size {card.input_dim} differs from the Glow's {glow.latent_dim}"
        )
    if not 0 <= class_index < card.num_classes:
        raise UsageError(
            path, f"--class-index {class_index} is not a class of its {card.num_classes}"
        )
    device = next(glow.parameters()).device
    if card.architecture == "latent_mlp":
        encoder: nn.Module = LatentMLP(card.input_dim, tuple(card.hidden), card.k)
    else:
        encoder = ImageResNet18(card.k, width=card.width)
    aux = AuxClassifier(card.k, card.num_classes)
    load_module(encoder, artifact.weights("encoder."), path)
    load_module(aux, artifact.weights("aux."), path)
    for module in (encoder, aux):
        module.to(device).eval().requires_grad_(False)
    reads_images = card.architecture != "latent_mlp"

    def probability(z: Tensor) -> Tensor:
        z = z.to(device)
        x = glow.decode(z) if reads_images else z
        return torch.softmax(aux(encoder(x)), dim=1)[:, class_index].cpu()

    return probability, artifact.sha256, card.task
