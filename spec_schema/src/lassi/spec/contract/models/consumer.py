"""The consumer's artifacts: the noise-augmented classifier's card and the verification report of
certified individual fairness (paper Sec. 4.4: certified iff r_CS < R)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lassi.spec.contract.architecture import check_classifier
from lassi.spec.contract.models.base import (
    MAX_CLASSES,
    MAX_HIDDEN_WIDTH,
    MAX_VECTORS,
    ArtifactBase,
    Model,
    Name,
    PositiveFloat,
    Probability,
    Sha256,
    TensorSpec,
)
from lassi.spec.contract.models.certificate import CenterSmoothingParams
from lassi.spec.contract.models.regulator import Coverage


class ClassifierTraining(Model):
    """``epochs``: epochs trained; ``max_epochs``: the cap (the automatic one when training to
    convergence); ``best_epoch``: the epoch whose weights were kept after early stopping (None:
    the last); ``majority_rate``: the accuracy of always predicting the most frequent class on
    the held-out validation labels."""

    epochs: int = Field(ge=1)
    max_epochs: int | None = Field(None, ge=1)
    best_epoch: int | None = Field(None, ge=1)
    majority_rate: float = Field(ge=0, le=1)
    batch_size: int = Field(ge=1)
    lr: PositiveFloat
    seed: int = Field(ge=0)
    n_train: int = Field(ge=1)
    val_accuracy_noisy: float | None = Field(None, ge=0, le=1)
    val_accuracy_clean: float | None = Field(None, ge=0, le=1)
    seconds: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _epochs_in_order(self) -> ClassifierTraining:
        if self.best_epoch is not None and self.best_epoch > self.epochs:
            raise ValueError("best_epoch must not exceed epochs")
        if self.max_epochs is not None and self.epochs > self.max_epochs:
            raise ValueError("epochs must not exceed max_epochs")
        return self


class SigmaSweepRow(Model):
    """One sigma_cls of a ``--sigma auto`` sweep: validation accuracy and, with a certified
    validation bundle, certified fairness."""

    sigma: PositiveFloat
    accuracy: float = Field(ge=0, le=1)
    certified_fairness: float | None = Field(None, ge=0, le=1)


class SigmaSelection(Model):
    """How ``--sigma auto`` chose sigma_cls (paper Sec. 5: the sigma_cls that maximises certified
    fairness without major sacrifice in accuracy). ``method``: "certified" (highest certified
    fairness among those within ``max_accuracy_loss`` of the best accuracy, on a certified
    validation bundle), "accuracy" (no such bundle: the largest sigma within that loss) or
    "nothing_certified" (a validation bundle on which no sigma certified any sample: chosen as
    "accuracy" does)."""

    method: Literal["certified", "accuracy", "nothing_certified"]
    max_accuracy_loss: float = Field(ge=0, le=1)
    val_bundle: Sha256 | None = None
    rows: list[SigmaSweepRow] = Field(min_length=1)


class ClassifierCard(ArtifactBase):
    """The consumer's noise-augmented classifier C_L on representations."""

    kind: Literal["classifier"] = "classifier"
    architecture: Literal["linear", "mlp"] = "linear"
    k: int = Field(ge=1, le=65536)
    hidden: int = Field(0, ge=0, le=MAX_HIDDEN_WIDTH)
    sigma_cls: PositiveFloat
    task: Name
    classes: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    training: ClassifierTraining
    sigma_selection: SigmaSelection | None = None
    weight_prefixes: ClassVar[tuple[str, ...]] = ("classifier.",)

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        return check_classifier(self, shapes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class SmoothingParams(Model):
    """Parameters of randomized smoothing (Cohen et al. 2019, CERTIFY).

    sequential: the estimation stage was the anytime-valid sequential test of R > r_CS
    (``lassi.consumer.randomized_smoothing``), stopping at most at n draws; False (the default)
    is CERTIFY with exactly n estimation draws.
    """

    sigma_cls: PositiveFloat
    n0: int = Field(ge=1)
    n: int = Field(ge=1)
    alpha: Probability
    seed: int = Field(ge=0)
    sequential: bool = False


class ReportStatus(IntEnum):
    """Per-sample outcome of verification (stored as U8)."""

    CERTIFIED = 0
    NOT_CERTIFIED = 1
    ABSTAIN_CENTER = 2
    ABSTAIN_CLASSIFIER = 3


class ReportCause(IntEnum):
    """Why a sample is or is not certified (optional U8 tensor ``cause`` of a report): R > r_CS;
    R <= r_CS; CERTIFY's p_A bound below 1/2; the sequential test found R > r_CS out of reach
    (futile) or used all n draws undecided; PREDICT abstained; center smoothing abstained
    (delta, q)."""

    CERTIFIED = 0
    R_NOT_ABOVE_R_CS = 1
    P_A_BELOW_HALF = 2
    FUTILE = 3
    UNDECIDED = 4
    PREDICT_ABSTAINED = 5
    CENTER_ABSTAINED_DELTA = 6
    CENTER_ABSTAINED_Q = 7


class ReportSummary(Model):
    """Fractions in [0, 1]; abstentions count as errors for accuracy."""

    n: int = Field(ge=0)
    accuracy: float | None = Field(None, ge=0, le=1)
    certified_fairness: float = Field(ge=0, le=1)
    certified_fair_and_accurate: float | None = Field(None, ge=0, le=1)
    abstain_center: float = Field(ge=0, le=1)
    abstain_classifier: float = Field(ge=0, le=1)
    not_certified: float = Field(ge=0, le=1)
    guarantee_probability: float = Field(ge=0, le=1)


class RepresentationScale(Model):
    """Scale of a bundle's representations next to the radii (medians; None where undefined):
    ||z|| the typical norm, nearest_other_class the distance from a sample to the nearest sample
    of another class (task labels), r_cs over certified centers, radius R over certified
    classifications."""

    z_norm: float | None = None
    nearest_other_class: float | None = None
    r_cs: float | None = None
    radius: float | None = None


class CertificateScope(Model):
    """What a report's certificates speak for: the similarity set S(x) of paper Eq. 4.

    ``spec_sha256`` is the regulator's spec the consumer bound the bundle to (``verify --spec``);
    without it, attributes and epsilon are the producer's word and ``m``, ``vectors``, ``given``
    and ``coverage`` are unknown. ``coverage`` is the regulator's measurement of how much of real
    similar individuals the set contains (3D Shapes), copied from the spec.
    """

    spec_sha256: Sha256 | None = None
    attributes: list[Name] = Field(min_length=1, max_length=16)
    epsilon: PositiveFloat
    m: int | None = Field(None, ge=1, le=MAX_VECTORS)
    vectors: dict[Name, Literal["halves", "pairs"]] = Field(default_factory=dict, max_length=16)
    given: dict[Name, Name] = Field(
        default_factory=dict,
        max_length=16,
        description="attribute -> the attribute each of whose values adds one more vector",
    )
    coverage: Coverage | None = None

    @model_validator(mode="after")
    def _bound(self) -> CertificateScope:
        known = self.m is not None or self.vectors or self.given or self.coverage is not None
        if self.spec_sha256 is None and known:
            raise ValueError("m, vectors, given and coverage come from a spec: they need spec_sha256")
        if self.vectors and set(self.vectors) != set(self.attributes):
            raise ValueError("vectors must name exactly the scope's attributes")
        if not set(self.given) <= set(self.attributes):
            raise ValueError("given must name only the scope's attributes")
        return self


class EndpointCheck(Model):
    """The authors' endpoints analysis in a report: each sample's smoothed prediction (PREDICT
    on n0 fresh draws, as the center's) at the bundle's end points z_G ± ε·a_i. A sample is
    *empirically fair* when its center has a prediction and every end point the same one (an
    end point whose center smoothing abstained counts as another prediction); a certified
    sample that is not is *certified but empirically unfair*. Tensors endpoint_prediction
    [n, endpoints] (−1: abstained) and empirically_fair [n]."""

    endpoints: int = Field(ge=2, le=8192)
    empirically_fair: int = Field(ge=0)
    certified_empirically_unfair: int = Field(ge=0)


class VerificationReport(ArtifactBase):
    """Per-sample certified fairness: certified iff both smoothings succeed and r_CS < R."""

    kind: Literal["verification_report"] = "verification_report"
    n_samples: int = Field(ge=0)
    task: Name
    classes: list[str] = Field(min_length=2)
    has_labels: bool
    smoothing: SmoothingParams
    certificate: CenterSmoothingParams
    summary: ReportSummary
    file_names: list[str] | None = Field(
        None, description="image file name (or CSV key) of each sample, from the bundle"
    )
    scale: RepresentationScale | None = None
    scope: CertificateScope
    warnings: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="why little or nothing certified, in numbers, and what to change",
    )
    endpoint_check: EndpointCheck | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _endpoint_counts(self) -> VerificationReport:
        if not self.certificate.is_issued:
            raise ValueError("a certificate records its seed and the dimension m of its t-noise")
        check = self.endpoint_check
        if check is not None and max(check.empirically_fair, check.certified_empirically_unfair) > self.n_samples:
            raise ValueError("endpoint counts exceed the samples")
        return self

    def tensor_specs(self) -> list[TensorSpec]:
        """``draws``: classifier draws per sample, n0 + the estimation draws actually used (0
        where center smoothing abstained). ``cause`` (optional): the :class:`ReportCause` of
        each sample."""
        n = self.n_samples
        specs = [
            TensorSpec(name="ids", dtype="I64", shape=(n,)),
            TensorSpec(name="prediction", dtype="I64", shape=(n,)),
            TensorSpec(name="radius", dtype="F32", shape=(n,)),
            TensorSpec(name="r_cs", dtype="F32", shape=(n,)),
            TensorSpec(name="status", dtype="U8", shape=(n,)),
            TensorSpec(name="draws", dtype="I64", shape=(n,)),
            TensorSpec(name="cause", dtype="U8", shape=(n,), required=False),
        ]
        if self.has_labels:
            specs.append(TensorSpec(name="labels", dtype="I64", shape=(n,)))
        if self.endpoint_check is not None:
            e = self.endpoint_check.endpoints
            specs += [
                TensorSpec(name="endpoint_prediction", dtype="I64", shape=(n, e)),
                TensorSpec(name="empirically_fair", dtype="U8", shape=(n,)),
            ]
        return specs

    def check_values(self, tensors: dict[str, Any]) -> str | None:
        if (tensors["radius"] < 0).any() or (tensors["r_cs"] < 0).any():
            return "radii must be non-negative"
        if (tensors["status"] > max(ReportStatus)).any():
            return "tensor 'status' has unknown status codes"
        if "cause" in tensors and (tensors["cause"] > max(ReportCause)).any():
            return "tensor 'cause' has unknown cause codes"
        if (tensors["draws"] < 0).any():
            return "tensor 'draws' has negative counts"
        if ((tensors["prediction"] < -1) | (tensors["prediction"] >= len(self.classes))).any():
            return "tensor 'prediction' has classes out of range"
        if self.endpoint_check is not None:
            ends = tensors["endpoint_prediction"]
            if ((ends < -1) | (ends >= len(self.classes))).any():
                return "tensor 'endpoint_prediction' has classes out of range"
            if int((tensors["empirically_fair"] > 0).sum()) != self.endpoint_check.empirically_fair:
                return "tensor 'empirically_fair' does not match the endpoint counts"
        return self._summary_problem(tensors)

    def _summary_problem(self, tensors: dict[str, Any]) -> str | None:
        """The summary must be the per-sample statuses' own fractions (a report that says 100 %
        certified while every sample is not certified is invalid): n, each status fraction,
        and with labels accuracy and certified-and-accurate (abstentions count as errors)."""
        s = self.summary
        status, prediction = tensors["status"], tensors["prediction"]
        n = len(status)

        def frac(mask: Any) -> float:
            return float(mask.sum()) / n if n else 0.0

        certified = status == ReportStatus.CERTIFIED
        expected: dict[str, float | None] = {
            "certified_fairness": frac(certified),
            "abstain_center": frac(status == ReportStatus.ABSTAIN_CENTER),
            "abstain_classifier": frac(status == ReportStatus.ABSTAIN_CLASSIFIER),
            "not_certified": frac(status == ReportStatus.NOT_CERTIFIED),
        }
        if "labels" in tensors:
            correct = (prediction == tensors["labels"]) & (prediction != -1)
            expected["accuracy"] = frac(correct)
            expected["certified_fair_and_accurate"] = frac(certified & correct)
        else:
            expected["accuracy"] = expected["certified_fair_and_accurate"] = None
        if s.n != n:
            return f"summary counts n = {s.n} samples, the report holds {n}"
        for field, want in expected.items():
            got = getattr(s, field)
            if (got is None) != (want is None) or (
                got is not None and want is not None and abs(got - want) > 1e-9
            ):
                shown = "none" if want is None else f"{want:.6g}"
                return (
                    f"summary {field} = {got} disagrees with the per-sample statuses ({shown})"
                )
        return None


