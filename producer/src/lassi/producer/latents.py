"""Glow latents of the producer's images, cached: they never change for a given spec and data.

The cache is a local ``checkpoint`` artifact keyed by the spec's hash, the data configuration and
the sample ids, so a different spec or split can never be served stale latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lassi.producer import TOOL
from lassi.regulator.data_config import DatasetConfig
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.torch_state import load_checkpoint, run_key, save_checkpoint


@torch.no_grad()
def glow_latents(
    sim: SimilaritySet,
    source,
    data: DatasetConfig,
    ids: np.ndarray,
    cache_dir: Path | None,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "glow latents",
) -> torch.Tensor:
    """E_G(x) [N, D] (float32) of the images ``ids``, from the cache when possible."""
    key = run_key(spec=sim.sha256, data=data.model_dump(mode="json"), ids=ids.tolist())
    cache = None if cache_dir is None else Path(cache_dir) / f"latents-{key}.safetensors"
    if cache is not None:
        restored = load_checkpoint(cache, stage="latents", key=key, modules={})
        if restored is not None:
            return torch.from_numpy(restored[2]["z"].copy())
    z = torch.empty(len(ids), sim.glow.latent_dim)
    bar = tqdm(total=len(ids), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        z[start : start + len(chunk)] = sim.encode_images(source.images(chunk), batch_size)
        bar.update(len(chunk))
    bar.close()
    if cache is not None:
        save_checkpoint(
            cache,
            tool=TOOL,
            stage="latents",
            key=key,
            step=len(ids),
            modules={},
            extra={"z": z.numpy()},
        )
    return z
