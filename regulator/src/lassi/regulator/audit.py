"""The auditor's re-check of a producer's certificates, without the producer's code.

Given the regulator's own similarity spec, the producer's exported ONNX base function
(z_G, t) → E_L(z_G + t A) and a certified bundle, the auditor re-renders the samples from the
bundle's recorded data provenance, encodes them with the spec's Glow, and replays center
smoothing (paper Sec. 4.3; Kumar & Goldstein 2021, Algorithms 1-2) in onnxruntime with the
bundle's recorded parameters and per-sample seeds. A claimed r_CS is confirmed when it agrees
with the replay within a relative float tolerance (the producer's torch evaluation and
onnxruntime differ only in rounding); a claim smaller than the replay is the dangerous direction
(it makes certification easier) and is reported as understated.

What the audit proves, against a producer that signs its own files: the certificate is bound
to the regulator's spec (``lassi.spec.contract.binding``: same spec hash, epsilon, attributes, policy),
the base function was exported for this spec and the bundle's encoder, and for each re-checked
sample the claimed status, r_CS and center z_CS agree with an independent replay of the very
data the producer encoded (:mod:`lassi.regulator.audit_data`: the samples re-created under the
auditor's own root and checked against the bundle's hashes).

The replay is a per-sample loop (:class:`lassi.spec.runtime.per_sample.PerSampleLoop`: tqdm bar,
checkpoint, resume, in-order commits) on any executor (local or Ray); with per-sample seeds the
findings do not depend on it.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lassi.regulator.audit_data import DataMismatch, checked_images, open_source
from lassi.regulator.similarity import SimilaritySet
from lassi.regulator.tool import TOOL
from lassi.spec import (
    IntegrityError,
    InvalidArtifactError,
    RepresentationBundle,
    UsageError,
    read_artifact,
)
from lassi.spec.contract.binding import check_binding
from lassi.spec.contract.data_identity import id_ranges
from lassi.spec.contract.models import CenterSmoothingParams, CenterStatus
from lassi.spec.contract.onnx_check import load_checked_onnx, onnx_bytes, onnx_card
from lassi.spec.contract.torch_state import run_key
from lassi.spec.runtime.center_smoothing import BATCH_SIZE, CenterSmoothing, progress_hooks
from lassi.spec.runtime.per_sample import Executor, PerSampleLoop

if TYPE_CHECKING:
    import torch

DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class AuditRow:
    """One audited sample. A sample whose data does not match (verdict ``data_…``, see
    :data:`DATA_VERDICTS`) is not auditable: it has no replayed values (None)."""

    sample_id: int
    claimed_status: int
    replayed_status: int | None
    claimed_r_cs: float
    replayed_r_cs: float | None
    center_distance: float | None
    verdict: str  # confirmed | understated | overstated | status_mismatch | center_mismatch | data_…
    file: str | None = None  # the image file (or CSV key) of the sample, when the bundle names it
    detail: str | None = None  # why a sample is not auditable

    def as_dict(self) -> dict[str, Any]:
        """JSON row: id first, then the file name when known (as ``verify``'s report rows)."""
        row: dict[str, Any] = {"sample_id": self.sample_id}
        if self.file is not None:
            row["file"] = self.file
        row.update(  # statuses by name, as every JSON lassi writes (not the stored U8 codes)
            claimed_status=CenterStatus(self.claimed_status).name.lower(),
            replayed_status=None
            if self.replayed_status is None
            else CenterStatus(self.replayed_status).name.lower(),
            claimed_r_cs=self.claimed_r_cs,
            replayed_r_cs=self.replayed_r_cs,
            center_distance=self.center_distance,
            verdict=self.verdict,
        )
        if self.detail is not None:
            row["detail"] = self.detail
        return row


@dataclass
class AuditResult:
    """The per-sample findings, notes on what could not be checked, and every sample of the
    bundle whose data under the auditor's root differs (audited or not)."""

    rows: list[AuditRow]
    notes: list[str] = field(default_factory=list)
    data_mismatches: list[DataMismatch] = field(default_factory=list)
    images: dict[int, np.ndarray] = field(default_factory=dict)  # replayed id -> uint8 image
    latents: dict[int, np.ndarray] = field(default_factory=dict)  # replayed id -> E_G(x)


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


def onnx_base(session, z_g: np.ndarray):
    """The base function t [B, m] → representations [B, k] of one sample via onnxruntime."""
    z_row = np.ascontiguousarray(z_g, dtype=np.float32)[None]

    def base(t: np.ndarray) -> np.ndarray:
        z = np.repeat(z_row, len(t), axis=0)
        return session.run(None, {"z_g": z, "t": t.astype(np.float32)})[0]

    return base


def onnx_session(graph: bytes, threads: int = 0, where: Path | None = None):
    """An onnxruntime CPU session of ``graph`` (``threads`` intra-op threads; 0: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own classes; the graph passed onnx.checker
        raise InvalidArtifactError(where, f"onnxruntime cannot load it ({type(error).__name__})") from None


class ReplayOne:
    """The sample function of the audit: replay center smoothing of audited sample ``i``.

    Picklable (for Ray actors): it holds the graph's bytes and opens its onnxruntime session on
    first use in whichever process runs it."""

    def __init__(
        self,
        graph: bytes,
        where: Path,
        z_g: np.ndarray,
        sample_ids: list[int],
        m: int,
        params: CenterSmoothingParams,
        seed: int,
        threads: int = 0,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.graph, self.where, self.z_g, self.sample_ids = graph, where, z_g, sample_ids
        self.m, self.params, self.seed, self.threads = m, params, seed, threads
        self.batch_size = batch_size
        self._session = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_session"} | {"_session": None}

    def __call__(self, i: int) -> dict[str, object]:
        if self._session is None:
            self._session = onnx_session(self.graph, self.threads, self.where)
        try:
            base = onnx_base(self._session, self.z_g[i])
            smoothing = CenterSmoothing(base, self.m, self.params, batch_size=self.batch_size)
            cert = smoothing.certify(self.seed, self.sample_ids[i])
        except Exception as error:
            if type(error).__module__.startswith("onnxruntime"):
                message = " ".join(str(error).split())[:160]
                raise InvalidArtifactError(self.where, f"onnxruntime fails on it ({message})") from None
            raise
        return {"status": int(cert.status), "r_cs": float(cert.r_cs), "center": cert.center}


def audit_bundle(
    spec_path: Path,
    onnx_path: Path,
    bundle_path: Path,
    ids: list[int] | None = None,
    count: int = 5,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = BATCH_SIZE,
    data_root: Path | None = None,
    allow_symlinks_outside_root: bool = False,
    executor: Executor | None = None,
    device: str | torch.device = "cpu",
    checkpoint: Path | None = None,
    progress: bool = False,
    threads: int = 0,
) -> AuditResult:
    """Replay center smoothing for chosen samples and compare with the bundle's claims.

    ``allow_symlinks_outside_root``: read links that leave ``data_root`` (a link farm);
    ``executor``: where the replays run (default: in this process); ``device``: where the
    spec's Glow encodes the images (the replay itself runs in onnxruntime on the CPU);
    ``checkpoint``: the file the replay resumes from (None: a temporary one, no resume);
    ``threads``: onnxruntime threads per replay (0: its default)."""
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
    rows_of = {sample_id: row for row, sample_id in enumerate(all_ids)}
    missing = [i for i in ids if i not in rows_of]
    if missing:
        raise UsageError(
            bundle_path, f"has no sample with id {missing[0]} (ids are {id_ranges(all_ids)})"
        )
    ids = list(dict.fromkeys(ids))
    source = open_source(meta.data, data_root, bundle_path, allow_symlinks_outside_root)
    checked = checked_images(meta, t, source, ids, data_root, bundle_path)
    graph_bytes = onnx_bytes(onnx_path)
    onnx_session(graph_bytes, 1, onnx_path)  # refuse a graph onnxruntime cannot load, up front
    c = meta.certificate
    findings = None
    if checked.ids:
        sim.glow.to(device)
        z_g = sim.encode_images(checked.images).numpy()
        replay = ReplayOne(
            graph_bytes, onnx_path, z_g, checked.ids, sim.m, c, c.seed, threads, batch_size
        )
        findings = replay_all(
            replay, meta.k, bundle.sha256, graph_bytes, sim.sha256, checkpoint, progress, executor
        )
    replayed = {sample_id: j for j, sample_id in enumerate(checked.ids)}
    unusable = {m.sample_id: m for m in checked.mismatches}
    rows = []
    for sample_id in ids:
        i = rows_of[sample_id]
        file = None if meta.file_names is None else meta.file_names[i]
        claimed, claimed_status = float(t["r_cs"][i]), int(t["status"][i])
        if sample_id in unusable:
            m = unusable[sample_id]
            rows.append(
                AuditRow(sample_id, claimed_status, None, claimed, None, None, m.verdict, file, m.detail)
            )
            continue
        j = replayed[sample_id]
        replayed_r_cs = float(findings["r_cs"][j])
        center = findings["center"][j].astype(np.float64)
        distance = float(np.linalg.norm(center - t["z_cs"][i]))
        verdict = verdict_of(
            claimed_status,
            int(findings["status"][j]),
            claimed,
            replayed_r_cs,
            distance,
            center_tolerance(replayed_r_cs, center, tolerance),
            tolerance,
        )
        rows.append(
            AuditRow(
                sample_id,
                claimed_status,
                int(findings["status"][j]),
                claimed,
                replayed_r_cs,
                distance,
                verdict,
                file,
            )
        )
    notes = list(checked.notes)
    others = [m for m in checked.mismatches if m.sample_id not in set(ids)]
    if others:
        shown = others[:MAX_NAMED]
        more = f" (and {len(others) - len(shown)} more)" if len(others) > len(shown) else ""
        notes.append(
            f"note: {len(others)} sample(s) of {bundle_path.name} not audited here have other data "
            f"under {data_root}: " + "; ".join(m.line() for m in shown) + more
        )
    result = AuditResult(rows, notes, checked.mismatches)
    if checked.ids:  # for the audit's page (lassi.regulator.audit_page)
        result.images = dict(zip(checked.ids, checked.images, strict=True))
        result.latents = dict(zip(checked.ids, z_g, strict=True))
    return result


MAX_NAMED = 20
"""The most files a note names (the JSON findings hold every audited row)."""


def replay_all(
    replay: ReplayOne,
    k: int,
    bundle_sha: str,
    graph: bytes,
    spec_sha: str,
    checkpoint: Path | None,
    progress: bool,
    executor: Executor | None,
) -> dict[str, np.ndarray]:
    """Run ``replay`` over every audited sample on the shared per-sample loop; the checkpoint
    resumes only a run with the same spec, graph, bundle, samples and encoded latents."""
    n = len(replay.sample_ids)
    result = {
        "status": np.zeros(n, np.uint8),
        "r_cs": np.zeros(n, np.float64),
        "center": np.zeros((n, k), np.float32),
    }
    key = run_key(
        spec=spec_sha,
        graph=hashlib.sha256(graph).hexdigest(),
        bundle=bundle_sha,
        ids=replay.sample_ids,
        latents=hashlib.sha256(np.ascontiguousarray(replay.z_g).tobytes()).hexdigest(),
    )
    with tempfile.TemporaryDirectory(prefix="lassi-audit-") as scratch:
        path = checkpoint if checkpoint is not None else Path(scratch) / "audit.ckpt"
        loop = PerSampleLoop(
            result,
            path,
            tool=TOOL,
            stage="audit",
            key=key,
            desc="audit (replay)",
            what="the audit",
            progress=progress,
            **progress_hooks(),
        )
        loop.run(replay, executor)
        loop.finish()
    return result
