"""Coverage: how much of the real orientation siblings the similarity set contains (3D Shapes).

The set is S(x) = { D_G(E_G(x) + t A) : ||t||_2 ≤ ε } (paper Sec. 3, Eq. 1 with the ℓ2 ball
of Sec. 4.1), A the spec's m attribute vectors as rows. For a test image x with latent z and a
ground-truth sibling x_j (same factors, another orientation) with latent z_j, d = z_j − z, the
point of the set closest to the sibling in latent space is given by the ball-constrained least
squares problem

    t* = argmin_t ||d − t A||_2   subject to ||t||_2 ≤ ε,

solved exactly by :func:`ball_least_squares`. How far t* A falls short of d (in latent space)
and how much D_G(z + t* A) looks like x_j (in pixels) says how much of the real siblings the
set contains, whatever vectors it is built from.
"""

from __future__ import annotations

import numpy as np
import torch

from lassi.regulator.attributes import shift
from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.shapes3d import SHAPE_NAMES
from lassi.spec import Coverage

COVERAGE_MIN_ANGLE = 20.0
_BISECTIONS = 200


def ball_least_squares(
    vectors: np.ndarray, targets: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """t* = argmin ||d − t A|| over ||t||_2 ≤ ε for every row d of ``targets`` [N, D].

    With the eigen-decomposition A Aᵀ = V diag(λ) Vᵀ and c = V^T A d, the minimum-norm
    unconstrained solution is t = V (c / λ) (pseudo-inverse). When it lies outside the ball,
    the KKT conditions give t(μ) = V (c / (λ + μ)) with the Lagrange multiplier μ > 0 the root
    of ||t(μ)|| = ε; ||t(μ)|| decreases monotonically in μ from ||t(0)|| > ε to below ε at
    μ = ||c|| / ε, and the root is found by bisection to float64 precision. Since A d lies in
    the range of A Aᵀ, directions with λ = 0 have c = 0 and no "hard case" arises.
    Returns t* [N, m] and whether the ball constraint is active [N].
    """
    a = np.asarray(vectors, dtype=np.float64)
    d = np.atleast_2d(np.asarray(targets, dtype=np.float64))
    lam, v = np.linalg.eigh(a @ a.T)
    keep = lam > max(lam.max(), 0.0) * len(lam) * 1e-12
    lam = np.where(keep, lam, 0.0)
    c = np.where(keep, (d @ a.T) @ v, 0.0)  # [N, m]
    safe = np.where(keep, lam, 1.0)
    free = np.where(keep, c / safe, 0.0)
    outside = np.linalg.norm(free, axis=1) > epsilon
    coeff = free
    if outside.any():
        co = c[outside]
        lo = np.zeros(len(co))
        hi = np.linalg.norm(co, axis=1) / epsilon
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            norm = np.linalg.norm(co / (lam + mid[:, None]), axis=1)
            too_long = norm > epsilon
            lo = np.where(too_long, mid, lo)
            hi = np.where(too_long, hi, mid)
        coeff = free.copy()
        coeff[outside] = co / (lam + hi[:, None])  # hi: the side with ||t|| ≤ ε
    return coeff @ v.T, outside


@torch.no_grad()
def sibling_projections(
    glow: Glow, sibling_images: np.ndarray, own: int, vectors: torch.Tensor, epsilon: float
) -> dict[str, torch.Tensor | np.ndarray]:
    """For one image (``sibling_images[own]``) and all its siblings: targets x_j (Glow input
    scale), the reconstruction D_G(z), the closest in-set images D_G(z + t*_j A), t*_j, and the
    relative latent residuals in the ball and in the span (t unconstrained)."""
    device = next(glow.parameters()).device  # the Glow's device; least squares on the host
    x = preprocess(sibling_images, glow.n_bits).to(device)
    z_all = glow.encode(x).double().cpu()
    z = z_all[own]
    d = (z_all - z[None]).numpy()
    a = vectors.double().numpy()
    t, active = ball_least_squares(a, d, epsilon)
    t_span, _ = ball_least_squares(a, d, np.inf)
    norm_d = np.maximum(np.linalg.norm(d, axis=1), 1e-300)
    residual = np.linalg.norm(d - t @ a, axis=1) / norm_d
    residual_span = np.linalg.norm(d - t_span @ a, axis=1) / norm_d
    shifted = shift(z[None], torch.from_numpy(t), vectors)
    dtype = x.dtype
    return {
        "targets": x,
        "recon": glow.decode(z[None].to(device, dtype))[0],
        "closest": glow.decode(shifted.to(device, dtype)),
        "t": t,
        "on_boundary": active,
        "residual": residual,
        "residual_span": residual_span,
    }


@torch.no_grad()
def coverage(
    glow: Glow,
    source,
    vectors: torch.Tensor,
    epsilon: float,
    choice: str,
    n_images: int = 32,
    min_angle: float = COVERAGE_MIN_ANGLE,
) -> Coverage:
    """Coverage of the orientation siblings ≥ ``min_angle`` degrees away, over the first
    ``n_images`` test images of a 3D Shapes source (see the module docstring)."""
    from lassi.regulator.shapes3d import ORIENTATIONS, Shapes3D

    renderer = getattr(source, "renderer", None) or Shapes3D(source.image_size)
    ids = source.split_ids("test")[:n_images]
    factors = Shapes3D.index_to_factors(ids)
    sums = {name: [0.0, 0.0] for name in SHAPE_NAMES}
    residuals, residuals_span, boundary = [], [], []
    glow.eval()
    with glow.inverse_cached():
        for f in factors:
            own = int(f[5])
            far = np.flatnonzero(np.abs(ORIENTATIONS - ORIENTATIONS[own]) >= min_angle - 1e-6)
            siblings = renderer.render(Shapes3D.siblings(f[None])[0])
            p = sibling_projections(glow, siblings, own, vectors, epsilon)
            targets = p["targets"][far]
            e_set = (p["closest"][far] - targets).abs().mean(dim=(1, 2, 3))
            e_recon = (p["recon"][None] - targets).abs().mean(dim=(1, 2, 3))
            name = SHAPE_NAMES[int(f[4])]
            sums[name][0] += float(e_set.sum())
            sums[name][1] += float(e_recon.sum())
            residuals.append(p["residual"][far])
            residuals_span.append(p["residual_span"][far])
            boundary.append(p["on_boundary"][far])
    total = [sum(v[k] for v in sums.values()) for k in (0, 1)]
    return Coverage(
        vectors=choice,
        m=int(vectors.shape[0]),
        epsilon=epsilon,
        latent_residual=float(np.concatenate(residuals).mean()),
        latent_residual_span=float(np.concatenate(residuals_span).mean()),
        pixel_ratio=total[0] / total[1],
        per_shape={k: v[0] / v[1] for k, v in sums.items() if v[1] > 0},
        on_boundary=float(np.concatenate(boundary).mean()),
        n_images=len(ids),
        n_siblings=int(sum(len(r) for r in residuals)),
        min_angle_deg=min_angle,
    )


def describe(cov: Coverage) -> str:
    """One line for a terminal."""
    per_shape = ", ".join(f"{k} {v:.3f}" for k, v in cov.per_shape.items())
    return (
        f"coverage of the real siblings >= {cov.min_angle_deg:g} deg ({cov.vectors}, m = {cov.m}, "
        f"eps {cov.epsilon:g}): latent residual {cov.latent_residual:.3f} "
        f"(span alone {cov.latent_residual_span:.3f}), pixel ratio {cov.pixel_ratio:.3f} "
        f"({per_shape}; 1 = useless, 0 = perfect), t* on the ball's boundary "
        f"{cov.on_boundary:.0%} of {cov.n_siblings} siblings"
    )
