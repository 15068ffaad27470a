"""Verification of individual fairness per sample (paper Sec. 4.3, "Certifying fairness").

Decision: a sample is certified individually fair iff center smoothing did not abstain,
randomized smoothing of C_L around z_CS did not abstain, and r_CS < R. Then every similar
individual gets the same prediction, with probability ≥ 1 − α_c − α_s over the draws. The loop
over samples is resumable (:mod:`lassi.spec.runtime.per_sample`); the report's side files are written by
:mod:`lassi.consumer.report`.

The sample's prediction is PREDICT (Cohen et al., 2019) on the n0 selection draws, the same
whether CERTIFY (n draws) or the sequential test decides R > r_CS: so accuracy and the
classifier's abstentions do not depend on ``--sequential``. A sample whose PREDICT abstains is
``abstain_classifier``; one with a prediction is certified when the certificate of that class
gives R > r_CS, and otherwise ``not_certified`` with its prediction kept (CERTIFY's p_A < 1/2, a
sequential futility stop or n draws without a decision, or R ≤ r_CS; the per-sample ``cause``).

When little certifies (:data:`LITTLE_CERTIFIED`), :func:`outcome_warnings` says why in numbers:
the σ_cls that the data's r_CS needs at this n and α, r_CS against the distance between classes,
the causes counted, and accuracy against the majority class; they go to the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lassi.consumer import sequential_test
from lassi.consumer.classifier import TOOL, load_classifier
from lassi.consumer.endpoints import (
    empirically_fair,
    endpoint_check,
    endpoint_predictions,
    endpoint_warning,
)
from lassi.consumer.randomized_smoothing import ABSTAIN, Smooth, SmoothCertificate
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
from lassi.spec.contract.binding import certificate_scope, check_binding, read_spec_header
from lassi.spec.contract.models import ReportCause, RepresentationScale
from lassi.spec.contract.torch_state import run_key
from lassi.spec.runtime.per_sample import Executor, PerSampleLoop

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


def majority_class(labels: np.ndarray | None, classes: list[str]) -> tuple[str, float] | None:
    """The most frequent label (its class name) and its rate, or None without labels."""
    if labels is None or len(labels) == 0:
        return None
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    top = int(np.argmax(counts))
    index = int(values[top])
    name = classes[index] if 0 <= index < len(classes) else str(index)
    return class_label(index, name), float(counts[top]) / len(labels)


def class_label(index: int, name: str) -> str:
    """A class as the reports show it: its name with the index, e.g. ``1 (Smiling)``."""
    return str(index) if name == str(index) else f"{index} ({name})"


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


# Below this certified fraction, verify explains the outcome (outcome_warnings).
LITTLE_CERTIFIED = 0.5


def best_bound(n: int, alpha: float, sequential: bool = False) -> float:
    """The best p_A lower bound reachable with n estimation draws: all n on one class. CERTIFY's
    one-sided Clopper–Pearson bound is then α^(1/n); the sequential test's is its confidence
    sequence's lower end L_n at s = t = n."""
    if sequential:
        return float(sequential_test.lower_bound(n, n, alpha))
    return alpha ** (1.0 / n)


def _probit(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p) if 0.0 < p < 1.0 else (float("inf") if p >= 1.0 else -float("inf"))


def largest_radius(sigma: float, n: int, alpha: float, sequential: bool = False) -> float:
    """The largest radius CERTIFY can return with n estimation draws (Cohen et al. 2019): all n
    draws on one class give the one-sided Clopper–Pearson bound p_A = α^(1/n), so
    R_max = σ_cls Φ⁻¹(α^(1/n)) (≤ 0 when α^(1/n) ≤ 1/2: nothing can be certified)."""
    return sigma * _probit(best_bound(n, alpha, sequential))


def needed_sigma(r_cs: float, n: int, alpha: float, sequential: bool = False) -> float | None:
    """The smallest σ_cls whose largest certifiable radius exceeds r_CS at n and α:
    r_CS / Φ⁻¹(best reachable bound); None when that bound is ≤ 1/2 (no σ_cls helps, only n)."""
    z = _probit(best_bound(n, alpha, sequential))
    return None if not z > 0 else float(r_cs) / z


def _sigma_advice(r_cs: float, sigma: float, n: int, alpha: float, sequential: bool) -> str:
    needed = needed_sigma(r_cs, n, alpha, sequential)
    if needed is None:
        least = int(np.ceil(np.log(alpha) / np.log(0.5))) + 1
        return f"no sigma_cls can certify at --n {n}: raise --n to at least {least}"
    return (
        f"certifying r_CS = {r_cs:.4g} needs sigma_cls >= r_CS / Phi^-1(best p_A bound) = "
        f"{needed:.4g} even if every draw agreed (this classifier has sigma_cls = {sigma:g})"
    )


def unreachable_warning(
    sigma: float, n: int, alpha: float, r_cs: np.ndarray, sequential: bool = False
) -> str | None:
    """A warning when R_max = σ_cls Φ⁻¹(α^(1/n)) cannot exceed any r_CS (certified samples),
    i.e. no sample can be certified fair whatever the classifier does."""
    r_cs = np.asarray(r_cs, dtype=np.float64)
    if r_cs.size == 0:
        return None
    r_max = largest_radius(sigma, n, alpha, sequential)
    if r_max > float(r_cs.min()):
        return None
    bound = "the confidence sequence's L_n at s = n" if sequential else "alpha^(1/n)"
    return (
        f"warning: with --n {n} and --alpha {alpha}, the largest radius randomized smoothing can "
        f"certify is sigma_cls * Phi^-1({bound}) = {r_max:.4f}, not above the smallest r_CS "
        f"of the bundle ({float(r_cs.min()):.4f}): no sample can be certified fair; "
        + _sigma_advice(float(r_cs.min()), sigma, n, alpha, sequential)
    )


CAUSE_TEXT = {
    ReportCause.R_NOT_ABOVE_R_CS: "R <= r_CS",
    ReportCause.P_A_BELOW_HALF: "CERTIFY's p_A bound below 1/2",
    ReportCause.FUTILE: "sequential test: R > r_CS out of reach (futility stop)",
    ReportCause.UNDECIDED: "sequential test undecided after --n draws",
    ReportCause.PREDICT_ABSTAINED: "PREDICT abstained (top two classes not told apart)",
    ReportCause.CENTER_ABSTAINED_DELTA: "center smoothing abstained (delta test)",
    ReportCause.CENTER_ABSTAINED_Q: "center smoothing abstained (quantile q)",
}

CAUSE_ADVICE = {
    ReportCause.R_NOT_ABOVE_R_CS: "a larger sigma_cls or --n, or an encoder with smaller r_CS",
    ReportCause.P_A_BELOW_HALF: "a smaller sigma_cls or a classifier trained longer",
    ReportCause.FUTILE: "a larger sigma_cls or an encoder with smaller r_CS",
    ReportCause.UNDECIDED: "raise --n",
    ReportCause.PREDICT_ABSTAINED: "raise --n0 (PREDICT uses the n0 selection draws)",
    ReportCause.CENTER_ABSTAINED_DELTA: "the producer's encode --certify settings (--n0, --delta)",
    ReportCause.CENTER_ABSTAINED_Q: "the producer's encode --certify settings (--n, --delta)",
}


def cause_of(center_status: int, cert: SmoothCertificate | None, r_cs: float) -> ReportCause:
    """The :class:`ReportCause` of one sample (``cert`` None: center smoothing abstained)."""
    if cert is None:
        if center_status == CenterStatus.ABSTAIN_Q:
            return ReportCause.CENTER_ABSTAINED_Q
        return ReportCause.CENTER_ABSTAINED_DELTA
    if cert.predicted == ABSTAIN:
        return ReportCause.PREDICT_ABSTAINED
    if cert.prediction != ABSTAIN and r_cs < cert.radius:
        return ReportCause.CERTIFIED
    if cert.outcome == "futile":
        return ReportCause.FUTILE
    if cert.outcome == "undecided":
        return ReportCause.UNDECIDED
    if cert.prediction == ABSTAIN:
        return ReportCause.P_A_BELOW_HALF
    return ReportCause.R_NOT_ABOVE_R_CS


STATUS_OF_CAUSE = {
    ReportCause.CERTIFIED: ReportStatus.CERTIFIED,
    ReportCause.PREDICT_ABSTAINED: ReportStatus.ABSTAIN_CLASSIFIER,
    ReportCause.CENTER_ABSTAINED_DELTA: ReportStatus.ABSTAIN_CENTER,
    ReportCause.CENTER_ABSTAINED_Q: ReportStatus.ABSTAIN_CENTER,
}


def outcome_warnings(
    causes: np.ndarray,
    r_cs: np.ndarray,
    scale: RepresentationScale,
    sigma: float,
    n: int,
    alpha: float,
    sequential: bool = False,
    accuracy: float | None = None,
    majority: tuple[str, float] | None = None,
) -> list[str]:
    """Why little (< LITTLE_CERTIFIED) or nothing certified, in numbers, and what to change:
    the σ_cls the median r_CS needs at this n and α, the median r_CS against the median distance
    to the nearest sample of another class, the causes counted; and accuracy at or below the
    majority-class rate (``majority``: the class name and its rate among the labels)."""
    causes = np.asarray(causes)
    total = len(causes)
    warnings: list[str] = []
    if accuracy is not None and majority is not None and accuracy <= majority[1]:
        warnings.append(
            f"accuracy {100 * accuracy:.1f} % is at or below the majority-class rate "
            f"{100 * majority[1]:.1f} % (always predicting {majority[0]}): the classifier has "
            "learned nothing useful at this sigma_cls; train to convergence (lassi-consumer "
            "train without --epochs) or use a smaller sigma_cls"
        )
    certified = int((causes == ReportCause.CERTIFIED).sum())
    if total == 0 or certified >= LITTLE_CERTIFIED * total:
        return warnings
    warnings.append(f"only {certified} of {total} samples ({100 * certified / total:.1f} %) are certified fair")
    centered = np.asarray(r_cs, dtype=np.float64)[
        ~np.isin(causes, [ReportCause.CENTER_ABSTAINED_DELTA, ReportCause.CENTER_ABSTAINED_Q])
    ]
    if centered.size:
        median = float(np.median(centered))
        r_max = largest_radius(sigma, n, alpha, sequential)
        warnings.append(
            f"median r_CS {median:.4g} against the largest radius sigma_cls * Phi^-1(best p_A "
            f"bound at --n {n}, --alpha {alpha:g}) = {r_max:.4g}: "
            + _sigma_advice(median, sigma, n, alpha, sequential)
        )
        if scale.nearest_other_class is not None and median >= scale.nearest_other_class:
            warnings.append(
                f"median r_CS {median:.4g} is not below the median distance "
                f"{scale.nearest_other_class:.4g} from a sample to the nearest sample of another "
                "class: the encoder is not invariant along the similarity set (similar "
                "individuals spread wider than the classes lie apart), so a classifier with "
                "R > r_CS cannot stay accurate; train the encoder with the adversarial and "
                "contrastive losses (lassi-producer train --lambda-adv, --lambda-contr)"
            )
    counted = [
        (cause, int((causes == cause).sum()))
        for cause in ReportCause
        if cause != ReportCause.CERTIFIED and (causes == cause).any()
    ]
    if counted:
        warnings.append(
            "not certified: "
            + "; ".join(
                f"{count} {CAUSE_TEXT[cause]} (change: {CAUSE_ADVICE[cause]})"
                for cause, count in counted
            )
        )
    return warnings


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
    epsilon, attributes and policy (:func:`lassi.spec.contract.binding.check_binding`), and the report
    records its hash, vectors and coverage as the certificates' scope; without it the scope is
    the producer's word.

    ``sequential``: estimation by ``Smooth.certify_sequential`` with at most n draws.
    ``executor``: where the samples are computed (default: in this process); the result does not
    depend on it (per-sample seeds). ``device``: where C_L classifies and counts the draws.
    ``warn``: receives the warning of :func:`unreachable_warning` once the inputs are checked,
    before any draw, and those of :func:`outcome_warnings` at the end (all recorded in the
    report)."""
    model, classifier = load_classifier(classifier_path)
    model.to(device)
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    check_pairing(classifier, bundle)
    card, meta, tensors = classifier.meta, bundle.meta, bundle.tensors
    spec, spec_sha = read_spec_header(spec_path) if spec_path is not None else (None, None)
    if spec is not None and spec_sha is not None:
        check_binding(spec, spec_sha, meta, bundle_path)
    scope = certificate_scope(spec, spec_sha, meta)
    if card.task in scope.attributes:  # before any draw: no report for such a classifier
        raise UsageError(
            classifier_path,
            f"predicts {card.task!r}, a sensitive attribute of the similarity set "
            f"({', '.join(scope.attributes)}); individual fairness about an attribute cannot "
            "be certified for a classifier of that attribute",
        )
    labels = tensors.get(f"labels.{card.task}")
    centered = tensors["status"] == CenterStatus.CERTIFIED
    warning = unreachable_warning(card.sigma_cls, n, alpha, tensors["r_cs"][centered], sequential)
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
        "cause": np.zeros(count, np.uint8),
    }
    if meta.endpoints:  # lassi.consumer.endpoints: predictions at the segment ends as well
        result["endpoint_prediction"] = np.full((count, meta.endpoints), ABSTAIN, np.int64)
        result["empirically_fair"] = np.zeros(count, np.uint8)
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
        count_label="fair",
    )

    def verify_one(i: int) -> dict[str, object]:
        center = int(tensors["status"][i])
        if center != CenterStatus.CERTIFIED:
            cause = cause_of(center, None, 0.0)
            return {"status": STATUS_OF_CAUSE[cause], "cause": cause}
        z_cs, r_cs, sample_id = tensors["z_cs"][i], float(tensors["r_cs"][i]), int(tensors["ids"][i])
        if sequential:
            cert = smooth.certify_sequential(z_cs, n0, r_cs, alpha, seed, sample_id, n_max=n)
        else:
            cert = smooth.certify(z_cs, n0, n, alpha, seed, sample_id)
        cause = cause_of(center, cert, r_cs)
        row = {
            "prediction": cert.predicted,  # PREDICT: the same whichever test decided R > r_CS
            "radius": cert.radius,
            "status": STATUS_OF_CAUSE.get(cause, ReportStatus.NOT_CERTIFIED),
            "draws": cert.draws,
            "cause": cause,
        }
        if meta.endpoints:
            ends = endpoint_predictions(
                smooth, tensors["endpoint_z_cs"][i], tensors["endpoint_status"][i], n0, alpha,
                seed, sample_id,
            )  # fmt: skip
            row["endpoint_prediction"] = ends
            row["empirically_fair"] = empirically_fair(cert.predicted, ends)
        return row

    loop.run(verify_one, executor)

    certificate = meta.certificate
    assert certificate is not None
    guarantee = 1.0 - (certificate.alpha1 + certificate.alpha2) - alpha
    summary = summarise(result["status"], result["prediction"], labels, guarantee)
    scale = representation_scale(
        tensors["z"][:2048],  # pairwise distances: at most the first 2048 samples
        None if labels is None else labels[:2048],
        tensors["r_cs"],
        tensors["status"] == CenterStatus.CERTIFIED,
        result["radius"],
        result["prediction"] != ABSTAIN,
    )
    warnings = [warning.removeprefix("warning: ")] if warning else []
    warnings += outcome_warnings(
        result["cause"], tensors["r_cs"], scale, card.sigma_cls, n, alpha, sequential,
        summary.accuracy, majority_class(labels, card.classes),
    )  # fmt: skip
    ends = None
    if meta.endpoints:
        ends = endpoint_check(result["status"], result["empirically_fair"], meta.endpoints)
        unfair = endpoint_warning(ends, int((result["status"] == ReportStatus.CERTIFIED).sum()))
        warnings += [unfair] if unfair else []
    if warn is not None:
        for text in warnings[1 if warning else 0 :]:
            warn(f"warning: {text}")
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
        scale=scale,
        warnings=warnings,
        endpoint_check=ends,
    )
    report_tensors = {"ids": tensors["ids"], "r_cs": tensors["r_cs"], **result}
    if labels is not None:
        report_tensors["labels"] = labels
    artifact = write_report(out, report, report_tensors)
    loop.finish()
    return artifact
