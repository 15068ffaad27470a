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

from lassi.producer.encode import load_encoder
from lassi.producer.training import LatentPipeline
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.onnx_check import export_checked_onnx


class PipelineGraph(nn.Module):
    """x → E_L(E_G(x))."""

    def __init__(self, sim: SimilaritySet, pipeline: LatentPipeline) -> None:
        super().__init__()
        self.glow = sim.glow
        self.pipeline = pipeline

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pipeline(self.glow.encode(x))


class BaseFunctionGraph(nn.Module):
    """(z_G, t) → E_L(z_G + t A) with the spec's attribute vectors A baked in."""

    def __init__(self, sim: SimilaritySet, pipeline: LatentPipeline) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.register_buffer("vectors", sim.vectors.clone())

    def forward(self, z_g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.pipeline(z_g + t @ self.vectors)


def export_producer_onnx(
    spec_path: Path, encoder_path: Path, out_dir: Path
) -> list[tuple[Path, float]]:
    """Write pipeline.onnx and base_function.onnx into ``out_dir``; return (path, max error)."""
    sim = SimilaritySet.load(spec_path)
    pipeline, card, encoder_sha = load_encoder(encoder_path, sim)
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
        ("pipeline.onnx", PipelineGraph(sim, pipeline).eval(), (x,), ["x"], ["z"]),
        (
            "base_function.onnx",
            BaseFunctionGraph(sim, pipeline).eval(),
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
