"""Verification of individual fairness per sample (paper Sec. 4.3, "Certifying fairness").

Decision: a sample is certified individually fair iff center smoothing did not abstain,
randomized smoothing of C_L around z_CS did not abstain, and r_CS < R. Then every similar
individual gets the same prediction, with probability ≥ 1 − α_c − α_s over the draws. The loop
over samples is resumable (:mod:`lassi.spec.per_sample`); the report's side files are written by
:mod:`lassi.consumer.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lassi.consumer.classifier import TOOL, load_classifier
from lassi.consumer.randomized_smoothing import ABSTAIN, Smooth
from lassi.consumer.report import summarise, write_report
from lassi.spec import (
    Artifact,
    CenterStatus,
    ClassifierCard,
    IntegrityError,
    ReportStatus,
    RepresentationBundle,
    SmoothingParams,
    UsageError,
    VerificationReport,
    read_artifact,
)
from lassi.spec.binding import certificate_scope, check_binding, read_spec_header
from lassi.spec.models import RepresentationScale
from lassi.spec.per_sample import Executor, PerSampleLoop
from lassi.spec.torch_state import run_key

if TYPE_CHECKING:
    import torch


def check_pairing(
    classifier: Artifact[ClassifierCard], bundle: Artifact[RepresentationBundle]
) -> None:
    """Refuse a plain bundle, another representation size, spec or encoder."""
    if not bundle.meta.certified:
        raise UsageError(
            bundle.path,
            "is a plain bundle; verify needs a certified one (lassi-producer encode --certify)",
        )
    if bundle.meta.k != classifier.meta.k:
        raise IntegrityError(
            bundle.path,
            f"has representations of size {bundle.meta.k}, the classifier takes {classifier.meta.k}",
        )
    for kind in ("similarity_spec", "encoder"):
        mine, theirs = classifier.meta.parents.get(kind), bundle.meta.parents.get(kind)
        if mine is None or theirs is None or mine != theirs:
            raise IntegrityError(
                bundle.path,
                f"was made with {kind} {str(theirs)[:12]}…, the classifier was trained on {str(mine)[:12]}…",
            )


def representation_scale(
    z: np.ndarray, labels: np.ndarray | None, r_cs: np.ndarray, centered: np.ndarray,
    radius: np.ndarray, classified: np.ndarray,
) -> RepresentationScale:
    """Medians of ||z||, of the distance to the nearest sample of another class, of r_CS (over
    ``centered``) and of R (over ``classified``), to judge r_CS and R against the data."""

    def median(values: np.ndarray) -> float | None:
        return float(np.median(values)) if values.size else None

    z = np.asarray(z, dtype=np.float64)
    nearest = np.empty(0)
    if labels is not None and len(z) > 1:
        squared = np.maximum(
            (z**2).sum(1)[:, None] + (z**2).sum(1)[None, :] - 2.0 * z @ z.T, 0.0
        )
        other = labels[:, None] != labels[None, :]
        has_other = other.any(1)
        nearest = np.sqrt(np.where(other, squared, np.inf).min(1))[has_other]
    return RepresentationScale(
        z_norm=median(np.linalg.norm(z, axis=1)),
        nearest_other_class=median(nearest),
        r_cs=median(np.asarray(r_cs, dtype=np.float64)[centered]),
        radius=median(np.asarray(radius, dtype=np.float64)[classified]),
    )


def largest_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with n estimation draws (Cohen et al. 2019): all n
    draws on one class give the one-sided Clopper–Pearson bound p_A = α^(1/n), so
    R_max = σ_cls Φ⁻¹(α^(1/n)) (≤ 0 when α^(1/n) ≤ 1/2: nothing can be certified)."""
    from statistics import NormalDist

    p_max = alpha ** (1.0 / n)
    return sigma * NormalDist().inv_cdf(p_max) if p_max < 1.0 else float("inf")


def unreachable_warning(sigma: float, n: int, alpha: float, r_cs: np.ndarray) -> str | None:
    """A warning when R_max = σ_cls Φ⁻¹(α^(1/n)) cannot exceed any r_CS (certified samples),
    i.e. no sample can be certified fair whatever the classifier does."""
    r_cs = np.asarray(r_cs, dtype=np.float64)
    if r_cs.size == 0:
        return None
    r_max = largest_radius(sigma, n, alpha)
    if r_max > float(r_cs.min()):
        return None
    return (
        f"warning: with --n {n} and --alpha {alpha}, the largest radius randomized smoothing can "
        f"certify is sigma_cls * Phi^-1(alpha^(1/n)) = {r_max:.4f}, not above the smallest r_CS "
        f"of the bundle ({float(r_cs.min()):.4f}): no sample can be certified fair; raise --n "
        "or use a classifier with a larger sigma_cls"
    )


def verify(
    classifier_path: Path,
    bundle_path: Path,
    out: Path,
    n0: int = 2_000,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    batch_size: int = 10_000,
    progress: bool = True,
    sequential: bool = False,
    executor: Executor | None = None,
    device: str | torch.device = "cpu",
    warn: Callable[[str], None] | None = None,
    spec_path: Path | None = None,
) -> Artifact[VerificationReport]:
    """Randomized smoothing around every z_CS; certified iff r_CS < R. Writes the report files.

    ``spec_path``: the regulator's similarity spec. The bundle must belong to it and obey its
    epsilon, attributes and policy (:func:`lassi.spec.binding.check_binding`), and the report
    records its hash, vectors and coverage as the certificates' scope; without it the scope is
    the producer's word.

    ``sequential``: estimation by ``Smooth.certify_sequential`` with at most n draws.
    ``executor``: where the samples are computed (default: in this process); the result does not
    depend on it (per-sample seeds). ``device``: where C_L classifies and counts the draws.
    ``warn``: receives the warning of :func:`unreachable_warning` once the inputs are checked,
    before any draw."""
    model, classifier = load_classifier(classifier_path)
    model.to(device)
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    check_pairing(classifier, bundle)
    card, meta, tensors = classifier.meta, bundle.meta, bundle.tensors
    spec, spec_sha = read_spec_header(spec_path) if spec_path is not None else (None, None)
    if spec is not None and spec_sha is not None:
        check_binding(spec, spec_sha, meta, bundle_path)
    scope = certificate_scope(spec, spec_sha, meta)
    labels = tensors.get(f"labels.{card.task}")
    centered = tensors["status"] == CenterStatus.CERTIFIED
    warning = unreachable_warning(card.sigma_cls, n, alpha, tensors["r_cs"][centered])
    if warning and warn is not None:
        warn(warning)
    if card.architecture == "linear":
        smooth = Smooth.for_linear_head(
            model, card.sigma_cls, batch_size=batch_size, device=device
        )
    else:
        smooth = Smooth(
            model, card.num_classes, card.sigma_cls, batch_size=batch_size, device=device
        )
    count = meta.n_samples
    result = {
        "prediction": np.full(count, ABSTAIN, np.int64),
        "radius": np.zeros(count, np.float32),
        "status": np.zeros(count, np.uint8),
        "draws": np.zeros(count, np.int64),
    }
    checkpoint = out.with_name(out.name + ".ckpt")
    key = run_key(
        classifier=classifier.sha256, bundle=bundle.sha256, n0=n0, n=n, alpha=alpha, seed=seed,
        **({"sequential": True} if sequential else {}),
    )
    loop = PerSampleLoop(
        result,
        checkpoint,
        tool=TOOL,
        stage="verify",
        key=key,
        desc="randomized smoothing",
        what="verification",
        progress=progress,
        certified=lambda row: row["status"] == ReportStatus.CERTIFIED,
    )

    def verify_one(i: int) -> dict[str, object]:
        if tensors["status"][i] != CenterStatus.CERTIFIED:
            return {"status": ReportStatus.ABSTAIN_CENTER}
        z_cs, r_cs, sample_id = tensors["z_cs"][i], float(tensors["r_cs"][i]), int(tensors["ids"][i])
        if sequential:
            cert = smooth.certify_sequential(z_cs, n0, r_cs, alpha, seed, sample_id, n_max=n)
        else:
            cert = smooth.certify(z_cs, n0, n, alpha, seed, sample_id)
        if cert.prediction == ABSTAIN:
            status = ReportStatus.ABSTAIN_CLASSIFIER
        elif r_cs < cert.radius:
            status = ReportStatus.CERTIFIED
        else:
            status = ReportStatus.NOT_CERTIFIED
        return {
            "prediction": cert.prediction,
            "radius": cert.radius,
            "status": status,
            "draws": cert.draws,
        }

    loop.run(verify_one, executor)

    certificate = meta.certificate
    assert certificate is not None
    guarantee = 1.0 - (certificate.alpha1 + certificate.alpha2) - alpha
    summary = summarise(result["status"], result["prediction"], labels, guarantee)
    parents = {"classifier": classifier.sha256, "representations": bundle.sha256}
    parents.update({k: v for k, v in meta.parents.items() if k in ("encoder", "similarity_spec")})
    report = VerificationReport(
        tool=TOOL,
        n_samples=count,
        task=card.task,
        classes=card.classes,
        has_labels=labels is not None,
        smoothing=SmoothingParams(
            sigma_cls=card.sigma_cls, n0=n0, n=n, alpha=alpha, seed=seed, sequential=sequential
        ),
        certificate=certificate,
        summary=summary,
        parents=parents,
        file_names=meta.file_names,
        scope=scope,
        scale=representation_scale(
            tensors["z"][:2048],  # pairwise distances: at most the first 2048 samples
            None if labels is None else labels[:2048],
            tensors["r_cs"],
            tensors["status"] == CenterStatus.CERTIFIED,
            result["radius"],
            result["prediction"] != ABSTAIN,
        ),
    )
    report_tensors = {"ids": tensors["ids"], "r_cs": tensors["r_cs"], **result}
    if labels is not None:
        report_tensors["labels"] = labels
    artifact = write_report(out, report, report_tensors)
    loop.finish()
    return artifact
