"""The auditor's re-check of a producer's certificates, without the producer's code.

Given the regulator's own similarity spec, the producer's exported ONNX base function
(z_G, t) → E_L(z_G + t A) and a certified bundle, the auditor re-renders the samples from the
bundle's recorded data provenance, encodes them with the spec's Glow, and replays center
smoothing in onnxruntime with the bundle's recorded parameters and per-sample seeds. A claimed
r_CS is confirmed when it agrees with the replay within a relative float tolerance (the
producer's torch evaluation and onnxruntime differ only in rounding); a claim smaller than the
replay is the dangerous direction (it makes certification easier) and is reported as understated.

What the audit proves, against a producer that signs its own files: the certificate is bound
to the regulator's spec (``lassi.spec.binding``: same spec hash, epsilon, attributes, policy),
the base function was exported for this spec and the bundle's encoder, and for each re-checked
sample the claimed status, r_CS and center z_CS agree with an independent replay. The bundle's
recorded data *paths* are never used: data on disk is read from the auditor's ``data_root``
(3D Shapes is rendered from its recorded seed and split sizes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import (
    IntegrityError,
    InvalidArtifactError,
    RepresentationBundle,
    UsageError,
    read_artifact,
)
from lassi.spec.binding import check_binding
from lassi.spec.center_smoothing import CenterSmoothing, CenterSmoothingParams
from lassi.spec.models import CenterStatus, DataProvenance
from lassi.spec.onnx_check import load_checked_onnx, onnx_bytes, onnx_card

DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class AuditRow:
    sample_id: int
    claimed_status: int
    replayed_status: int
    claimed_r_cs: float
    replayed_r_cs: float
    center_distance: float
    verdict: str  # confirmed | understated | overstated | status_mismatch | center_mismatch


def center_tolerance(replayed_r_cs: float, center: np.ndarray, tolerance: float) -> float:
    """How far the claimed z_CS may lie from the replayed center and still count as the same.

    The replay uses the same per-sample seeds, so the centers differ only by float rounding
    between torch and onnxruntime: a relative ``tolerance`` of r_CS (the certificate's own
    scale) plus a float32 rounding allowance on the center's norm.
    """
    return tolerance * replayed_r_cs + 1e-4 * (1.0 + float(np.linalg.norm(center)))


def verdict_of(
    claimed_status: int,
    replayed_status: int,
    claimed: float,
    replayed: float,
    distance: float,
    allowed_distance: float,
    tolerance: float,
) -> str:
    """Compare one claim with its replay (see the module docstring)."""
    if claimed_status != replayed_status:
        return "status_mismatch"
    if claimed < replayed * (1 - tolerance):
        return "understated"
    if claimed > replayed * (1 + tolerance) + 1e-12:
        return "overstated"
    if replayed_status == CenterStatus.CERTIFIED and not distance <= allowed_distance:
        return "center_mismatch"
    return "confirmed"


def auditor_data_config(data: DataProvenance, data_root: Path | None, where: Path) -> DatasetConfig:
    """The bundle's data identity with the auditor's own root; recorded paths are ignored."""
    if data.dataset != "shapes3d" and data_root is None:
        raise UsageError(
            None, f"{where.name} was encoded from {data.dataset} data: pass --data-root"
        )
    safe = data.model_copy(
        update={
            "root": None if data_root is None else str(data_root),
            "options": {k: v for k, v in data.options.items() if k != "csv"},
        }
    )
    return DatasetConfig.from_provenance(safe, where=where)


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
    data_root: Path | None = None,
) -> list[AuditRow]:
    """Replay center smoothing for chosen samples and compare with the bundle's claims."""
    import onnxruntime as ort

    sim = SimilaritySet.load(spec_path)
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    meta, t = bundle.meta, bundle.tensors
    if not meta.certified or meta.certificate is None:
        raise UsageError(bundle_path, "is a plain bundle; the audit needs a certified one")
    check_binding(sim.meta, sim.sha256, meta, bundle_path)
    if meta.data is None:
        raise IntegrityError(
            bundle_path, "records no data provenance; its samples cannot be re-created"
        )
    graph = load_checked_onnx(onnx_path, inputs={"z_g": 2, "t": 2}, outputs={"z": 2})
    parents = onnx_card(graph, onnx_path).get("parents", {})
    if parents.get("similarity_spec") != sim.sha256:
        raise IntegrityError(onnx_path, "was not exported for this similarity spec")
    if parents.get("encoder") != meta.parents.get("encoder"):
        raise IntegrityError(onnx_path, "was exported from another encoder than the bundle's")
    all_ids = [int(i) for i in t["ids"]]
    if ids is None:
        ids = all_ids[:count]
    if not ids:
        raise UsageError(bundle_path, "has no sample to audit (auditing nothing confirms nothing)")
    missing = [i for i in ids if i not in all_ids]
    if missing:
        raise UsageError(bundle_path, f"has no sample with id {missing[0]}")
    rows_of = {sample_id: row for row, sample_id in enumerate(all_ids)}
    source = make_source(auditor_data_config(meta.data, data_root, bundle_path))
    chosen = np.array(ids, dtype=np.int64)
    z_g = sim.encode_images(source.images(chosen)).numpy()
    try:
        session = ort.InferenceSession(onnx_bytes(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own classes; the graph passed onnx.checker
        raise InvalidArtifactError(onnx_path, f"onnxruntime cannot load it ({type(error).__name__})") from None
    c = meta.certificate
    params = CenterSmoothingParams.from_certificate(c, batch_size=batch_size)
    rows = []
    for j, sample_id in enumerate(ids):
        i = rows_of[sample_id]
        try:
            smoothing = CenterSmoothing(onnx_base(session, z_g[j]), sim.m, params)
            cert = smoothing.certify(c.seed, sample_id)
        except Exception as error:
            if type(error).__module__.startswith("onnxruntime"):
                message = " ".join(str(error).split())[:160]
                raise InvalidArtifactError(onnx_path, f"onnxruntime fails on it ({message})") from None
            raise
        replayed_status = cert.status
        claimed = float(t["r_cs"][i])
        center = cert.center.astype(np.float64)
        distance = float(np.linalg.norm(center - t["z_cs"][i]))
        verdict = verdict_of(
            int(t["status"][i]),
            int(replayed_status),
            claimed,
            float(cert.r_cs),
            distance,
            center_tolerance(float(cert.r_cs), center, tolerance),
            tolerance,
        )
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
