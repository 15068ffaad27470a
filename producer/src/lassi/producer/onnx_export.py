"""ONNX exports of the producer's models, for parties that do not run lassi's code.

* ``pipeline.onnx``: the deterministic pipeline x → E_L(E_G(x)) (through D_G for the image
  encoder), input ``x`` [batch, 3, H, W] preprocessed, output ``z`` [batch, k].
* ``base_function.onnx``: the smoothing base function (z_G, t) → E_L(z_G + t A), inputs ``z_g``
  [batch, D] and ``t`` [batch, m], output ``z`` [batch, k]; the auditor replays center smoothing
  with it (``lassi-regulator audit``).

Both have a dynamic batch dimension, are checked with ``onnx.checker`` and compared against torch
in onnxruntime before they are kept; provenance travels in ``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lassi.producer.base_function import BaseFunction, load_encoder, load_spec
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.contract.onnx_check import export_checked_onnx


class PipelineGraph(nn.Module):
    """x → E_L(E_G(x))."""

    def __init__(self, sim: SimilaritySet, base: BaseFunction) -> None:
        super().__init__()
        self.glow = sim.glow
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(self.glow.encode(x))


def export_producer_onnx(
    spec: Path | SimilaritySet, encoder_path: Path, out_dir: Path
) -> list[tuple[Path, float]]:
    """Write pipeline.onnx and base_function.onnx into ``out_dir``; return (path, max error)."""
    sim = load_spec(spec)
    base, card, encoder_sha = load_encoder(encoder_path, sim)
    out_dir = Path(out_dir)
    provenance = {
        "parents": {"similarity_spec": sim.sha256, "encoder": encoder_sha},
        "k": card.k,
        "latent_dim": sim.glow.latent_dim,
        "m": sim.m,
        "architecture": card.architecture,
    }
    rng = np.random.default_rng(0)
    size = sim.glow.image_size
    x = torch.from_numpy((rng.integers(0, 32, (3, 3, size, size)) / 32 - 0.5).astype(np.float32))
    z_g = sim.glow.encode(x).detach()
    t = torch.from_numpy(rng.normal(size=(3, sim.m)).astype(np.float32))
    jobs = [
        ("pipeline.onnx", PipelineGraph(sim, base).eval(), (x,), ["x"], ["z"]),
        (
            "base_function.onnx",
            base.eval(),  # (z_G, t) → E_L(z_G + t A), A baked in
            (z_g, t),
            ["z_g", "t"],
            ["z"],
        ),
    ]
    written = []
    for name, module, args, inputs, outputs in jobs:
        path = out_dir / name
        with sim.glow.inverse_cached():
            error = export_checked_onnx(
                module,
                args,
                path,
                inputs=inputs,
                outputs=outputs,
                card={"kind": name.removesuffix(".onnx"), **provenance},
            )
        written.append((path, error))
    return written
