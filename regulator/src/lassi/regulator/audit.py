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
to the regulator's spec (``lassi.spec.binding``: same spec hash, epsilon, attributes, policy),
the base function was exported for this spec and the bundle's encoder, and for each re-checked
sample the claimed status, r_CS and center z_CS agree with an independent replay. The bundle's
recorded data *paths* are never used: data on disk is read from the auditor's ``data_root`` and
must hash as the bundle records (``DataProvenance.content_sha256``, see
:mod:`lassi.regulator.content_hash`; exit 4 otherwise); the images replayed are decoded from the
very bytes hashed. 3D Shapes is rendered from its recorded seed and split sizes. A bundle written
before content hashes were recorded still audits, with a note that its data was not checked.

The replay is a per-sample loop (:class:`lassi.spec.per_sample.PerSampleLoop`: tqdm bar,
checkpoint, resume, in-order commits) on any executor (local or Ray); with per-sample seeds the
findings do not depend on it.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lassi.regulator import TOOL
from lassi.regulator.content_hash import has_files, read_samples
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.datasets import DataError, OutsideRootError, decode_image
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import (
    IntegrityError,
    InvalidArtifactError,
    RepresentationBundle,
    UsageError,
    read_artifact,
)
from lassi.spec.binding import check_binding
from lassi.spec.center_smoothing import CenterSmoothing, CenterSmoothingParams, progress_hooks
from lassi.spec.models import CenterStatus, DataProvenance
from lassi.spec.onnx_check import load_checked_onnx, onnx_bytes, onnx_card
from lassi.spec.per_sample import Executor, PerSampleLoop
from lassi.spec.torch_state import run_key

if TYPE_CHECKING:
    import torch

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
    file: str | None = None  # the image file (or CSV key) of the sample, when the bundle names it

    def as_dict(self) -> dict[str, Any]:
        """JSON row: id first, then the file name when known (as ``verify``'s report rows)."""
        row: dict[str, Any] = {"sample_id": self.sample_id}
        if self.file is not None:
            row["file"] = self.file
        row.update(
            claimed_status=self.claimed_status,
            replayed_status=self.replayed_status,
            claimed_r_cs=self.claimed_r_cs,
            replayed_r_cs=self.replayed_r_cs,
            center_distance=self.center_distance,
            verdict=self.verdict,
        )
        return row


@dataclass
class AuditResult:
    """The per-sample findings and notes on what could not be checked."""

    rows: list[AuditRow]
    notes: list[str] = field(default_factory=list)


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
    return DatasetConfig.from_provenance(data, where=where, root=data_root)  # names confined


def checked_images(
    data: DataProvenance,
    source: Any,
    all_ids: list[int],
    ids: list[int],
    data_root: Path | None,
    where: Path,
) -> tuple[np.ndarray, list[str]]:
    """uint8 images [len(ids), H, W, 3] of the audited samples and notes.

    Files on disk are hashed over all the bundle's samples and must match its recorded
    ``content_sha256`` (exit 4, naming the data root, never echoing contents); the audited
    images are decoded from the bytes that were hashed. A missing or unreadable file of a
    recorded sample is data that does not match (exit 4) too."""
    if not has_files(source):
        return source.images(np.array(ids, dtype=np.int64)), []
    try:
        found, kept = read_samples(source, all_ids, keep=ids)
    except OutsideRootError:
        raise  # a read outside --data-root is refused (exit 2), not data that differs
    except DataError as error:
        raise IntegrityError(
            error.path, f"{error.problem}: the data under --data-root does not match {where.name}"
        ) from None
    notes = []
    if data.content_sha256 is None:
        notes.append(
            f"note: {where.name} records no content hash of its images (written before lassi "
            f"recorded one): the images under {data_root} could not be checked against those "
            "the producer encoded"
        )
    elif found != data.content_sha256:
        raise IntegrityError(
            data_root,
            f"the images of {where.name}'s {len(all_ids)} samples found here hash to sha256 "
            f"{found[:12]}…, the bundle records {data.content_sha256[:12]}… (changed, renamed or "
            "other files)",
        )
    images = np.stack(
        [
            decode_image(
                io.BytesIO(kept[i]),
                source.image_size,
                source.crop,
                source.resample,
                where=Path(source.image_dir) / source.files[i],
            )
            for i in ids
        ]
    )
    return images, notes


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
    ) -> None:
        self.graph, self.where, self.z_g, self.sample_ids = graph, where, z_g, sample_ids
        self.m, self.params, self.seed, self.threads = m, params, seed, threads
        self._session = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_session"} | {"_session": None}

    def __call__(self, i: int) -> dict[str, object]:
        if self._session is None:
            self._session = onnx_session(self.graph, self.threads, self.where)
        try:
            smoothing = CenterSmoothing(onnx_base(self._session, self.z_g[i]), self.m, self.params)
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
    batch_size: int = 2_000,
    data_root: Path | None = None,
    executor: Executor | None = None,
    device: str | torch.device = "cpu",
    checkpoint: Path | None = None,
    progress: bool = False,
    threads: int = 0,
) -> AuditResult:
    """Replay center smoothing for chosen samples and compare with the bundle's claims.

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
    missing = [i for i in ids if i not in all_ids]
    if missing:
        raise UsageError(bundle_path, f"has no sample with id {missing[0]}")
    rows_of = {sample_id: row for row, sample_id in enumerate(all_ids)}
    source = make_source(auditor_data_config(meta.data, data_root, bundle_path))
    images, notes = checked_images(meta.data, source, all_ids, ids, data_root, bundle_path)
    graph_bytes = onnx_bytes(onnx_path)
    onnx_session(graph_bytes, 1, onnx_path)  # refuse a graph onnxruntime cannot load, up front
    sim.glow.to(device)
    z_g = sim.encode_images(images).numpy()
    c = meta.certificate
    params = CenterSmoothingParams.from_certificate(c, batch_size=batch_size)
    replay = ReplayOne(graph_bytes, onnx_path, z_g, list(ids), sim.m, params, c.seed, threads)
    findings = replay_all(replay, meta.k, bundle.sha256, graph_bytes, sim.sha256, checkpoint, progress, executor)
    rows = []
    for j, sample_id in enumerate(ids):
        i = rows_of[sample_id]
        claimed, replayed = float(t["r_cs"][i]), float(findings["r_cs"][j])
        center = findings["center"][j].astype(np.float64)
        distance = float(np.linalg.norm(center - t["z_cs"][i]))
        verdict = verdict_of(
            int(t["status"][i]),
            int(findings["status"][j]),
            claimed,
            replayed,
            distance,
            center_tolerance(replayed, center, tolerance),
            tolerance,
        )
        rows.append(
            AuditRow(
                sample_id,
                int(t["status"][i]),
                int(findings["status"][j]),
                claimed,
                replayed,
                distance,
                verdict,
                None if meta.file_names is None else meta.file_names[i],
            )
        )
    return AuditResult(rows, notes)


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
