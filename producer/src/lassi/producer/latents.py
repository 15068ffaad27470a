"""Glow latents of the producer's images, cached by content: a changed image is never served.

The cache is a local ``checkpoint`` artifact per Glow, data configuration and sample ids that
holds each sample's latent z_G = E_G(x) and, for data on disk, the SHA-256 of the image file it
was encoded from. It is keyed by what the latents are a function of, not by the spec: the Glow
(:func:`glow_identity`: its weights, configuration and preprocessing, and the latents it gives
probe images here, so specs sharing a Glow share the cache and a changed Glow, Glow code or
device arithmetic never does) and the images (:func:`generator_parameters`: the data options,
the stored rows of a 3dshapes.h5, and the identity of the code that makes the images from what
is stored, a renderer or a decoder, taken from probe images at run time). Every use reads each
file once (``lassi.regulator.content_hash``), compares its hash with the cached one and encodes
anew the batches with a changed file from the very bytes hashed. The hashes come back with the
latents, so a bundle or a checkpoint records the identity of exactly the images encoded.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lassi.producer.tool import TOOL
from lassi.regulator.content_hash import (
    decode_sample,
    has_files,
    pipeline_sha256_of,
    read_samples,
    stored_content_sha256,
)
from lassi.regulator.data_config import DatasetConfig
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.contract.data_identity import DIGEST_SIZE, data_key
from lassi.spec.contract.errors import InvalidArtifactError, printable
from lassi.spec.contract.torch_state import load_checkpoint, run_key, save_checkpoint


@dataclass
class Latents:
    """E_G(x) [N, D] (float32) of samples ``ids`` and the SHA-256 of each one's image file
    (uint8 [N, 32]; None for rendered data)."""

    ids: np.ndarray
    z: torch.Tensor
    file_sha256: np.ndarray | None

    def content_sha256(self, source) -> str | None:
        """``DataProvenance.content_sha256`` of these samples (of their files or a 3dshapes.h5's
        rows; None: rendered data)."""
        return stored_content_sha256(source, self.ids, self.file_sha256)

    def identity(self, source, data: DatasetConfig) -> str:
        """The data identity of a run over these samples (checkpoint keys): the per-file
        content hashes or the generator parameters of rendered data, the code that made the
        images, the labels (a CSV's) and the latents themselves (whatever made them)."""
        labels = hashlib.sha256()
        for name, values in sorted(source.attributes(self.ids).items()):
            labels.update(name.encode() + b"\0" + np.ascontiguousarray(values, np.int64).tobytes())
        latents = hashlib.sha256(np.ascontiguousarray(self.z.numpy(), np.float32).tobytes())
        common = {
            "ids": self.ids.tolist(),
            "pipeline": pipeline_sha256_of(source),
            "labels": labels.hexdigest(),
            "latents": latents.hexdigest(),
        }
        if self.file_sha256 is None:
            return data_key(rendered=generator_parameters(data, source, self.ids), **common)
        return data_key(files=self.content_sha256(source), **common)


def generator_parameters(data: DatasetConfig, source=None, ids: np.ndarray | None = None) -> dict:
    """What determines the images apart from their files: the data configuration without the
    location of the files (their content is hashed instead), the identity of the code that
    makes the images (``pipeline_sha256``: the 3D Shapes renderer, a decoder and resize, from
    probe images made now), and for a source that stores its images in one file (3dshapes.h5)
    the SHA-256 of the stored rows ``ids``."""
    parameters = data.model_dump(mode="json", exclude={"root", "csv"})
    if source is not None:
        parameters["pipeline_sha256"] = pipeline_sha256_of(source)
    if ids is not None and hasattr(source, "rows_sha256"):
        parameters["rows_sha256"] = source.rows_sha256(ids)
    return parameters


@torch.no_grad()
def glow_identity(sim: SimilaritySet) -> str:
    """What E_G(x) is a function of besides x: SHA-256 of the Glow's configuration and
    preprocessing, its weights (every tensor's name, dtype, shape and bytes) and the latents it
    gives two seeded probe images here (so a change in the Glow's code, torch or the device's
    arithmetic changes it too). Computed on every call: the weights or device may change."""
    digest = hashlib.sha256(b"lassi glow identity v1\0")
    described = {"flow": sim.meta.flow.model_dump(mode="json"),
                 "preprocessing": sim.meta.preprocessing.model_dump(mode="json")}
    digest.update(json.dumps(described, sort_keys=True).encode() + b"\0")
    for name, tensor in sorted(sim.glow.state_dict().items()):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    size = sim.meta.flow.image_size
    probe = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    digest.update(np.ascontiguousarray(sim.encode_images(probe).numpy(), np.float32).tobytes())
    return digest.hexdigest()


@torch.no_grad()
def glow_latents_of(
    sim: SimilaritySet,
    source,
    data: DatasetConfig,
    ids: np.ndarray,
    cache_dir: Path | None,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "glow latents",
    glow_key: str | None = None,
) -> Latents:
    """The latents of the images ``ids``, from the cache where their files are unchanged.
    Rendered data the spec records from another renderer than this machine's is refused (exit
    4): the spec's Glow and vectors were made from images that render differently here.
    ``glow_key``: the Glow's identity as another process computed it (torchrun: rank 0's, so
    that every rank reads the cache rank 0 filled even where its own arithmetic differs)."""
    data.check_rendered_as(sim.meta.data, sim.path)
    ids = np.asarray(ids, dtype=np.int64)
    glow = glow_identity(sim) if glow_key is None else glow_key
    key = run_key(glow=glow, data=generator_parameters(data, source, ids), ids=ids.tolist())
    cache = None if cache_dir is None else Path(cache_dir) / f"latents-{key}.safetensors"
    files = has_files(source)
    cached_z, cached_sha = _restore(cache, key, len(ids), sim.glow.latent_dim, files)
    if cached_z is not None and not files:
        return Latents(ids, torch.from_numpy(cached_z), None)
    z = torch.empty(len(ids), sim.glow.latent_dim)
    digests = np.zeros((len(ids), DIGEST_SIZE), np.uint8) if files else None
    changed = 0
    bar = tqdm(total=len(ids), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(ids), batch_size):
        rows = slice(start, start + batch_size)
        chunk = ids[rows]
        if digests is None:
            z[rows] = sim.encode_images(source.images(chunk), batch_size)
        else:
            read = read_samples(source, chunk, keep=chunk)
            digests[rows] = read.digests
            if cached_z is not None and np.array_equal(cached_sha[rows], read.digests):
                z[rows] = torch.from_numpy(cached_z[rows])
            else:
                if cached_z is not None:
                    changed += int((cached_sha[rows] != read.digests).any(axis=1).sum())
                # the whole batch anew, as a run without a cache encodes it (same floats)
                images = np.stack([decode_sample(source, i, read.kept[i]) for i in chunk.tolist()])
                z[rows] = sim.encode_images(images, batch_size)
        bar.update(len(chunk))
    bar.close()
    if changed:
        print(
            f"note: {changed} of {len(ids)} images changed since the latent cache {cache}: "
            "their latents are encoded anew",
            file=sys.stderr,
        )
    if cache is not None and (cached_z is None or changed):
        extra = {"z": z.numpy()} | ({} if digests is None else {"file_sha256": digests})
        save_checkpoint(
            cache, tool=TOOL, stage="latents", key=key, step=len(ids), modules={}, extra=extra
        )
    return Latents(ids, z, digests)


def _restore(
    cache: Path | None, key: str, n: int, dim: int, files: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(z [n, dim], file SHA-256 [n, 32] or None) of a usable cache, else (None, None)."""
    if cache is None:
        return None, None
    try:
        restored = load_checkpoint(cache, stage="latents", key=key, modules={})
    except InvalidArtifactError:  # truncated, edited, not an artifact: never trusted
        print(f"note: the latent cache {printable(cache)} is damaged: its latents are encoded "
              "anew and it is rewritten", file=sys.stderr)
        return None, None
    if restored is None:
        return None, None
    extra = restored[2]
    z, sha = extra.get("z"), extra.get("file_sha256")
    if z is None or z.shape != (n, dim) or z.dtype != np.float32:
        return None, None
    if files and (sha is None or sha.shape != (n, DIGEST_SIZE) or sha.dtype != np.uint8):
        return None, None  # a cache written before it recorded file hashes: encode anew
    return np.array(z), None if sha is None else np.array(sha)
