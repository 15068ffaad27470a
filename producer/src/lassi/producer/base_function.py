"""The smoothing base function f(t) = E_L(z_G + t A) (paper Sec. 4.3), written once.

z_G is the Glow latent of an input, A [m, D] the similarity spec's attribute vectors and t ∈ R^m
with ||t||_2 ≤ ε (Sec. 3: S(x) = {D_G(z_G + Σ_i t_i a_i)}). :class:`BaseFunction` holds E_L, A
and, for the image encoder, the Glow whose decoder D_G the encoder reads through. It is E_L on
latents (``base(z)``, training and plain encoding), f on batches of (z_G, t) (``base(z_g, t)``,
the ONNX base-function graph), f of one sample (:meth:`BaseFunction.for_latent`, what center
smoothing certifies) and the eval-mode affine trick (:meth:`BaseFunction.affine`, also the
random attack's fast path).

The affine trick: with the latent MLP in eval mode its first Linear W, b and BatchNorm (scale s,
shift c) form one affine map g, so g(z + t A) = g(z) + t H with H = s ⊙ (A Wᵀ) [m, h]. h0 = g(z)
and H are computed once; each draw then costs an m × h product instead of D × h.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lassi.regulator.encoders import ImageResNet18, LatentMLP
from lassi.regulator.glow import Glow
from lassi.regulator.similarity import SimilaritySet, shift
from lassi.spec import EncoderArchitecture, EncoderCard, UsageError, read_artifact
from lassi.spec.contract.torch_state import load_module


class AffineBase(nn.Module):
    """f_b(t) = E_L(z_b + t A) = tail(h0_b + t H) for latents z_b [B, D] (the affine trick).

    ``forward(t)``: t [B, n, m] -> [B, n, k]; with one latent (B = 1) also t [n, m] -> [n, k], the
    center-smoothing base of that sample. ``reference()`` is E_L(z_b) = tail(h0_b). The tail shares
    the encoder's modules, which must stay in eval mode.
    """

    def __init__(self, h0: Tensor, h: Tensor, tail: nn.Module) -> None:
        super().__init__()
        self.register_buffer("h0", h0)
        self.register_buffer("h", h)
        self.tail = tail
        self.train(False)

    def _check_eval(self) -> None:
        if any(module.training for module in self.tail.modules()):
            raise RuntimeError("the affine trick is only valid with the encoder in eval mode")

    def reference(self) -> Tensor:
        """E_L(z_b) [B, k]."""
        self._check_eval()
        return self.tail(self.h0)

    def forward(self, t: Tensor) -> Tensor:
        self._check_eval()
        t = t.to(self.h.dtype)
        if t.dim() == 2:  # one latent's f(t), t [n, m]
            return self.tail(torch.addmm(self.h0[0], t, self.h))
        hidden = self.h0[:, None, :] + t @ self.h
        return self.tail(hidden.reshape(-1, self.h.shape[1])).reshape(*t.shape[:2], -1)


class SampleBase(nn.Module):
    """f(t) = E_L(z_G + t A) of one latent z_G [D], every draw through the whole encoder (and D_G)."""

    def __init__(self, base: BaseFunction, z_g: Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("z_g", z_g.reshape(-1).clone())

    def forward(self, t: Tensor) -> Tensor:
        return self.base(self.z_g, t)


class BaseFunction(nn.Module):
    """E_L as a function of the Glow latent, and f(t) = E_L(z_G + t A) built from it.

    ``encoder`` reads the flattened latent (the latent MLP) or, when ``glow`` is given, the
    decoded image D_G(z) (the ResNet-18); the Glow is the regulator's, frozen and kept in eval
    mode (decoded without gradients). ``vectors``: A [m, D]. ``affine_trick=False`` evaluates
    every draw through the whole encoder even where the affine trick applies (for comparisons).
    """

    def __init__(
        self,
        encoder: nn.Module,
        vectors: Tensor,
        glow: Glow | None = None,
        *,
        affine_trick: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.glow = glow
        self.register_buffer("vectors", vectors.reshape(vectors.shape[0], -1).clone())
        self.uses_affine_trick = affine_trick and glow is None and isinstance(encoder, LatentMLP)
        if glow is not None:
            glow.eval()

    @property
    def m(self) -> int:
        return int(self.vectors.shape[0])

    def train(self, mode: bool = True) -> BaseFunction:
        super().train(mode)
        if self.glow is not None:
            self.glow.eval()
        return self

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (torch's signature)
        """``.to(device)`` and casts keep the Glow's cached 1x1-convolution inverses: they are
        keyed on the parameters' storage, so a move would silently drop them and every decode
        (each center-smoothing draw of the image path) would solve for them again."""
        cached = self.glow is not None and any(
            conv.inverse_cache is not None for conv in self.glow.invconvs()
        )
        out = super()._apply(fn, recurse)
        if cached:
            self.glow.cache_inverse()
        return out

    def shift(self, z: Tensor, t: Tensor) -> Tensor:
        """z + t A (broadcasting: z [..., D] or [D], t [..., m])."""
        return shift(z, t, self.vectors)

    def forward(self, z_g: Tensor, t: Tensor | None = None) -> Tensor:
        """E_L(z_G) for Glow latents z_g [B, D]; with t [B, m], f(t) = E_L(z_G + t A) (the ONNX
        base-function graph has exactly these inputs)."""
        z = z_g if t is None else self.shift(z_g, t)
        if self.glow is None:
            return self.encoder(z)
        with torch.no_grad():
            x = self.glow.decode(z)
        return self.encoder(x)

    @torch.no_grad()
    def affine(self, z: Tensor) -> AffineBase:
        """The affine trick for latents z [B, D] (or one latent [D]): f_b(t) = tail(h0_b + t H)."""
        if not self.uses_affine_trick:
            raise RuntimeError("the affine trick needs the latent MLP (without the Glow decoder)")
        mlp = self.encoder
        if any(module.training for module in mlp.modules()):
            raise RuntimeError("call .eval() first: the affine trick needs BatchNorm's running stats")
        linear, norm = mlp.net[0], mlp.net[1]
        assert isinstance(linear, nn.Linear) and isinstance(norm, nn.BatchNorm1d)
        z = z.reshape(-1, self.vectors.shape[1]).to(linear.weight)
        a = self.vectors.to(linear.weight)
        if z.shape[1] != mlp.input_dim or a.shape[1] != mlp.input_dim:
            raise ValueError(f"latents must have {mlp.input_dim} elements")
        h0 = norm(linear(z))
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        h = (a @ linear.weight.T) * scale
        return AffineBase(h0, h, nn.Sequential(*mlp.net[2:]))

    def for_latent(self, z_g: Tensor) -> nn.Module:
        """The center-smoothing base f of one latent z_G [D] (eval mode; the affine trick when it
        applies)."""
        if self.uses_affine_trick:
            return self.affine(z_g.reshape(1, -1))
        return SampleBase(self, z_g).eval()


def build_base_function(arch: EncoderArchitecture, sim: SimilaritySet) -> BaseFunction:
    """The (untrained) E_L an architecture describes (an encoder card's or a training
    configuration's), with the spec's A (and Glow)."""
    if arch.architecture == "latent_mlp":
        encoder = LatentMLP(sim.glow.latent_dim, tuple(arch.hidden), arch.k)
        return BaseFunction(encoder, sim.vectors)
    return BaseFunction(ImageResNet18(arch.k, width=arch.width), sim.vectors, sim.glow)


def load_spec(spec: Path | SimilaritySet) -> SimilaritySet:
    """The similarity spec, read from ``spec`` unless it is loaded already."""
    return spec if isinstance(spec, SimilaritySet) else SimilaritySet.load(spec)


def load_encoder(encoder_path: Path, sim: SimilaritySet) -> tuple[BaseFunction, EncoderCard, str]:
    """The producer's trained E_L (eval mode), checked to have been trained on this spec."""
    artifact = read_artifact(
        encoder_path, expect=EncoderCard, parents={"similarity_spec": sim.sha256}
    )
    card = artifact.meta
    if card.input_dim != sim.glow.latent_dim:
        raise UsageError(
            encoder_path,
            f"encoder input size {card.input_dim} differs from the spec's latent size {sim.glow.latent_dim}",
        )
    base = build_base_function(card, sim)
    load_module(base.encoder, artifact.weights("encoder."), encoder_path)
    return base.eval(), card, artifact.sha256
