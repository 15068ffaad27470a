"""Encoding a data split into a representation bundle, optionally center-smoothed (Sec. 4.3).

Plain: z = E_L(E_G(x)), the requested labels and sample ids. Labels policy: only the labels asked
for are exported (default: the encoder's task); the labels of the spec's sensitive attributes only
on explicit request (``include_sensitive``), and the bundle then lists them in
``sensitive_labels`` so that a consumer refuses to train on them.

Certified (``certify``): for every sample, center smoothing of f(t) = E_L(z_G + Σ t_i a_i) with t ~ N(0, σ_enc² I_m) gives z_CS and r_CS, or an
abstention. Certification is checkpointed as it goes; a killed run resumes where it stopped and,
thanks to per-sample seeds, writes a bit-identical file. The checkpoint and the Glow-latent
cache are keyed by the data's content (each image file's SHA-256, or the generator parameters
of rendered data): a run on changed data starts over and never mixes two data sets.

Data on disk: the bundle records the SHA-256 of each sample's file (tensor ``file_sha256``) and
their file-list hash (``DataProvenance.content_sha256``), taken from the very bytes encoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lassi.producer.base_function import BaseFunction, load_encoder, load_spec
from lassi.producer.endpoints import certify_endpoints
from lassi.producer.latents import TOOL, glow_latents_of
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import RepresentationBundle, UsageError, write_artifact
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.contract.torch_state import (
    run_key,
)
from lassi.spec.runtime.center_smoothing import BATCH_SIZE, CenterSmoothing, progress_hooks
from lassi.spec.runtime.per_sample import Executor, PerSampleLoop


def select_ids(source, split: str, limit: int | None, every: int) -> np.ndarray:
    if every < 1:
        raise UsageError(None, "--every must be at least 1")
    ids = source.split_ids(split)[::every]
    return ids if limit is None else ids[:limit]


def sensitive_names(sim: SimilaritySet) -> set[str]:
    """Names of the spec's sensitive attributes (and of their vectors)."""
    return set(sim.meta.attribute_names) | set(sim.meta.vector_names)


def choose_labels(
    source, sim: SimilaritySet, task: str, labels: list[str] | None, include_sensitive: bool
) -> tuple[list[str], list[str]]:
    """(labels to export, the sensitive ones among them); see the module docstring."""
    sensitive = sensitive_names(sim)
    wanted = list(dict.fromkeys(labels if labels else [task]))
    for name in wanted:
        source.check_attribute(name)
        if name in sensitive and not include_sensitive:
            raise UsageError(
                None,
                f"label {name!r} is a sensitive attribute of the spec; it is exported only with "
                "--include-sensitive-labels",
            )
    if include_sensitive and not labels:  # --labels given: exactly those, nothing more
        wanted += [a for a in sim.meta.attribute_names if a not in wanted and a in source.attribute_names]
    return sorted(wanted), sorted(name for name in wanted if name in sensitive)


def encode_split(
    spec: Path | SimilaritySet,
    encoder_path: Path,
    data: DatasetConfig,
    split: str,
    out: Path,
    limit: int | None = None,
    every: int = 1,
    certify: CenterSmoothingParams | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    device: str | torch.device = "cpu",
    labels: list[str] | None = None,
    include_sensitive: bool = False,
    endpoints: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Path:
    """Write the representation bundle of ``split`` (certified when ``certify`` is given) with
    the ``labels`` asked for (default: the encoder's task).

    ``device``: where E_L runs (plain encoding and every center-smoothing draw); ``batch_size``:
    center-smoothing draws per call of E_L (the certificates do not depend on it).
    ``endpoints``: also center-smooth each segment end z_G ± ε·a_i (the authors' endpoints
    analysis, :mod:`lassi.producer.endpoints`; needs ``certify``)."""
    if endpoints and certify is None:
        raise UsageError(None, "--endpoints needs --certify (end points are center-smoothed)")
    out = Path(out)
    sim = load_spec(spec)
    base, card, encoder_sha = load_encoder(encoder_path, sim)
    base.to(device)
    if data.image_size != sim.glow.image_size:
        data = data.model_copy(update={"image_size": sim.glow.image_size})
    source = make_source(data)
    if split not in ("train", "val", "test"):
        raise UsageError(None, f"unknown split '{split}' (train, val, test)")
    names, sensitive = choose_labels(source, sim, card.task, labels, include_sensitive)
    ids = select_ids(source, split, limit, every)
    cache_dir = Path(cache_dir) if cache_dir is not None else out.parent / ".cache"
    latents = glow_latents_of(
        sim, source, data, ids, cache_dir, progress=progress, desc=f"glow latents ({split})"
    )
    z_g = latents.z
    all_labels = source.attributes(ids)
    exported = {name: np.asarray(all_labels[name], dtype=np.int64) for name in names}
    with torch.no_grad():
        z = (
            torch.cat([base(z_g[i : i + 1024].to(device)).cpu() for i in range(0, len(ids), 1024)])
            if len(ids)
            else torch.zeros(0, card.k)
        )
    tensors: dict[str, np.ndarray] = {
        "z": z.numpy().astype(np.float32),
        "ids": ids.astype(np.int64),
    }
    tensors.update({f"labels.{name}": y for name, y in exported.items()})
    if latents.file_sha256 is not None:
        tensors["file_sha256"] = latents.file_sha256
    certificate = None
    if certify is not None:
        certificate = certify.issued(seed, sim.m)
        if abs(certify.epsilon - sim.epsilon) > 1e-12:
            raise UsageError(
                None, f"certificate epsilon {certify.epsilon} differs from the spec's {sim.epsilon}"
            )
        tensors.update(
            certify_all(
                base,
                sim,
                z_g,
                ids,
                tensors["z"],
                certify,
                seed,
                out,
                encoder_sha,
                progress,
                executor,
                endpoints=endpoints,
                data=latents.identity(source, data),
                batch_size=batch_size,
            )
        )
    meta = RepresentationBundle(
        tool=TOOL,
        split=split,
        n_samples=len(ids),
        k=card.k,
        label_names=names,
        label_classes={name: source.num_classes(name) for name in names},
        sensitive_labels=sensitive,
        file_names=source.file_names(ids),
        certified=certify is not None,
        certificate=certificate,
        endpoints=2 * sim.m if endpoints else 0,
        attributes=sim.meta.attribute_names,
        data=data.provenance(split, len(ids)).with_content(latents.content_sha256(source)),
        parents={"encoder": encoder_sha, "similarity_spec": sim.sha256},
    )
    write_artifact(out, meta, tensors)
    return out


def certify_all(
    base: BaseFunction,
    sim: SimilaritySet,
    z_g: torch.Tensor,
    ids: np.ndarray,
    z: np.ndarray,
    params: CenterSmoothingParams,
    seed: int,
    out: Path,
    encoder_sha: str,
    progress: bool,
    executor: Executor | None = None,
    endpoints: bool = False,
    data: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Center-smooth every sample; checkpoint to ``<out>.ckpt`` and resume from it.

    ``executor``: where the samples are computed (default: in order, in this process); the
    result does not depend on it (per-sample seeds). ``data``: the identity of the samples'
    data (``Latents.identity``): a checkpoint of other data is not resumed."""
    n, k = len(ids), z.shape[1]
    result = {
        "z_cs": np.zeros((n, k), np.float32),
        "r_cs": np.zeros(n, np.float32),
        "status": np.zeros(n, np.uint8),
        "center_shift": np.zeros(n, np.float32),
        "seconds": np.zeros(n, np.float32),
    }
    if endpoints:  # lassi.producer.endpoints: center smoothing at z_G ± eps a_i as well
        result["endpoint_z_cs"] = np.zeros((n, 2 * sim.m, k), np.float32)
        result["endpoint_status"] = np.zeros((n, 2 * sim.m), np.uint8)
    checkpoint = out.with_name(out.name + ".ckpt")
    key = run_key(
        spec=sim.sha256,
        encoder=encoder_sha,
        ids=ids.tolist(),
        params=params.procedure().model_dump(),
        seed=seed,
        **({"endpoints": True} if endpoints else {}),
    )
    loop = PerSampleLoop(
        result,
        checkpoint,
        tool=TOOL,
        stage="certify",
        key=key,
        desc="center smoothing",
        what="certification",
        progress=progress,
        data=data,
        **progress_hooks(),
    )

    m = sim.m  # the sample function closes over what it needs only (it may go to Ray actors)
    epsilon = sim.epsilon

    def certify_one(i: int) -> dict[str, object]:
        z_i = z_g[i].to(base.vectors.device)  # the base function runs where E_L lives
        smoother = CenterSmoothing(base.for_latent(z_i), m, params, batch_size=batch_size)
        cert = smoother.certify(seed, int(ids[i]))
        row = {
            "z_cs": cert.center,
            "r_cs": cert.r_cs,
            "status": cert.status,
            "center_shift": float(np.linalg.norm(cert.center.astype(np.float64) - z[i])),
            "seconds": cert.seconds,
        }
        if endpoints:
            row.update(
                certify_endpoints(base, z_i, epsilon, params, seed, int(ids[i]), batch_size)
            )
        return row

    loop.run(certify_one, executor)
    loop.finish()
    return result
