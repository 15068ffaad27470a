"""The auditor's re-check of a producer's certificates, without the producer's code.

Given the regulator's own similarity spec, the producer's exported ONNX base function
(z_G, t) → E_L(z_G + t A) and a certified bundle, the auditor re-renders the samples from the
bundle's recorded data provenance, encodes them with the spec's Glow, and replays center
smoothing in onnxruntime with the bundle's recorded parameters and per-sample seeds. A claimed
r_CS is confirmed when it agrees with the replay within a relative float tolerance (the
producer's torch evaluation and onnxruntime differ only in rounding); a claim smaller than the
replay is the dangerous direction (it makes certification easier) and is reported as understated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import IntegrityError, RepresentationBundle, UsageError, read_artifact
from lassi.spec.center_smoothing import CenterSmoothing, CenterSmoothingParams
from lassi.spec.onnx_check import load_checked_onnx, onnx_card

DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class AuditRow:
    sample_id: int
    claimed_status: int
    replayed_status: int
    claimed_r_cs: float
    replayed_r_cs: float
    center_distance: float
    verdict: str  # confirmed | understated | overstated | status_mismatch


def onnx_base(session, z_g: np.ndarray):
    """The base function t [B, m] → representations [B, k] of one sample via onnxruntime."""
    z_row = np.ascontiguousarray(z_g, dtype=np.float32)[None]

    def base(t: np.ndarray) -> np.ndarray:
        z = np.repeat(z_row, len(t), axis=0)
        return session.run(None, {"z_g": z, "t": t.astype(np.float32)})[0]

    return base


def audit_bundle(
    spec_path: Path,
    onnx_path: Path,
    bundle_path: Path,
    ids: list[int] | None = None,
    count: int = 5,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = 2_000,
) -> list[AuditRow]:
    """Replay center smoothing for chosen samples and compare with the bundle's claims."""
    import onnxruntime as ort

    sim = SimilaritySet.load(spec_path)
    bundle = read_artifact(
        bundle_path, expect=RepresentationBundle, parents={"similarity_spec": sim.sha256}
    )
    meta, t = bundle.meta, bundle.tensors
    if not meta.certified or meta.certificate is None:
        raise UsageError(bundle_path, "is a plain bundle; the audit needs a certified one")
    if meta.data is None:
        raise IntegrityError(
            bundle_path, "records no data provenance; its samples cannot be re-created"
        )
    graph = load_checked_onnx(onnx_path, inputs={"z_g": 2, "t": 2}, outputs={"z": 2})
    parents = onnx_card(graph).get("parents", {})
    if parents.get("similarity_spec") != sim.sha256:
        raise IntegrityError(onnx_path, "was not exported for this similarity spec")
    if parents.get("encoder") != meta.parents.get("encoder"):
        raise IntegrityError(onnx_path, "was exported from another encoder than the bundle's")
    all_ids = [int(i) for i in t["ids"]]
    if ids is None:
        ids = all_ids[:count]
    missing = [i for i in ids if i not in all_ids]
    if missing:
        raise UsageError(bundle_path, f"has no sample with id {missing[0]}")
    rows_of = {sample_id: row for row, sample_id in enumerate(all_ids)}
    config = DatasetConfig.from_provenance(meta.data)
    source = make_source(config)
    chosen = np.array(ids, dtype=np.int64)
    z_g = sim.encode_images(source.images(chosen)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    c = meta.certificate
    params = CenterSmoothingParams.from_certificate(c, batch_size=batch_size)
    rows = []
    for j, sample_id in enumerate(ids):
        i = rows_of[sample_id]
        cert = CenterSmoothing(onnx_base(session, z_g[j]), sim.m, params).certify(c.seed, sample_id)
        replayed_status = cert.status
        claimed = float(t["r_cs"][i])
        distance = float(np.linalg.norm(cert.center.astype(np.float64) - t["z_cs"][i]))
        if int(t["status"][i]) != int(replayed_status):
            verdict = "status_mismatch"
        elif claimed < cert.r_cs * (1 - tolerance):
            verdict = "understated"
        elif claimed > cert.r_cs * (1 + tolerance) + 1e-12:
            verdict = "overstated"
        else:
            verdict = "confirmed"
        rows.append(
            AuditRow(
                sample_id,
                int(t["status"][i]),
                int(replayed_status),
                claimed,
                float(cert.r_cs),
                distance,
                verdict,
            )
        )
    return rows
