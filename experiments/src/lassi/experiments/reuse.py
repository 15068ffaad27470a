"""The reuse of finished runs: an artifact already in an experiments folder is reused only when
what its metadata records is what this invocation would make; otherwise a one-line usage error
(exit 2) names the file and the first setting that differs, recorded and requested. A run of
other settings is never mixed into the results, nor overwritten.

Each ``*_settings`` function lists (setting, recorded, requested) for one artifact kind: the
artifacts it was made from first (by SHA-256), then the settings of the step that made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lassi.spec import (
    ClassifierCard,
    DataProvenance,
    EncoderCard,
    LossWeights,
    RepresentationBundle,
    SimilaritySpec,
    UsageError,
    VerificationReport,
)
from lassi.spec.contract.models import CenterSmoothingParams, SmoothingParams
from lassi.spec.contract.models.producer import EncoderArchitecture

Setting = tuple[str, Any, Any]  # (what, recorded, requested)

_SHA256_HEX = frozenset("0123456789abcdef")


def first_difference(settings: Iterable[Setting]) -> Setting | None:
    """The first setting whose recorded value is not the requested one (None: all agree)."""
    return next((s for s in settings if s[1] != s[2]), None)


def shown(value: Any, width: int = 60) -> str:
    """A value in a one-line message: a SHA-256 by its first 12 digits, long values cut."""
    if isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_HEX:
        return f"SHA-256 {value[:12]}…"
    text = "none" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def refuse_other_settings(path: Path, settings: Iterable[Setting]) -> None:
    """Raise a usage error naming ``path`` and its first setting other than the requested."""
    difference = first_difference(settings)
    if difference is not None:
        what, recorded, requested = difference
        raise UsageError(
            path, f"was made with {what} {shown(recorded)}, this run asks for {shown(requested)}; "
            "remove its run folder or choose another --out",
        )  # fmt: skip


def data_settings(recorded: DataProvenance | None, wanted: DataProvenance) -> Iterator[Setting]:
    """The data an artifact records against the data asked for: source, split, seed, each
    option and the number of samples (how the content was hashed is not a setting)."""
    if recorded is None:
        yield "data", None, wanted.dataset
        return
    for name in ("dataset", "split", "seed"):
        yield f"data {name}", getattr(recorded, name), getattr(wanted, name)
    for key in sorted(set(recorded.options) | set(wanted.options)):
        yield f"data option {key}", recorded.options.get(key), wanted.options.get(key)
    yield "data samples", recorded.n_samples, wanted.n_samples


def spec_settings(
    meta: SimilaritySpec, attributes: list[str], vectors: str, given: str | None, epsilon: float,
    data: DataProvenance,
) -> Iterator[Setting]:  # fmt: skip
    """A similarity spec (average-difference vectors, paper Sec. 4.1) against ``define``'s
    request: the set itself (its fidelity and coverage figures are measurements of it)."""
    yield "attributes", [a.name for a in meta.attributes], list(attributes)
    yield "attribute method", meta.attribute_method, "average_diff"
    multi = [a for a in meta.attributes if a.num_values > 2]  # a binary attribute has one vector either way
    yield "vectors", [a.vectors for a in multi], [vectors] * len(multi)
    yield "condition-on", [a.given for a in meta.attributes], [given] * len(meta.attributes)
    yield "epsilon", meta.epsilon, epsilon
    yield from data_settings(meta.data, data)


def encoder_settings(
    card: EncoderCard, config: Any, spec_sha: str, attack_sha: str | None, n_train: int
) -> Iterator[Setting]:
    """An encoder's card against an EncoderTrainConfig (``lassi.producer.training``) on the spec
    ``spec_sha`` (and attack set ``attack_sha``): architecture, sizes, task, losses (Sec. 4.2),
    schedule, seed, kept epoch, augmentation and data (``n_train`` images)."""
    t = card.training
    yield "similarity spec", card.parents.get("similarity_spec"), spec_sha
    yield "attack set", None if t.attack_set is None else t.attack_set.spec, attack_sha
    for name in EncoderArchitecture.model_fields:
        yield name, getattr(card, name), getattr(config, name)
    yield "task", card.task, config.task
    for name in LossWeights.model_fields:
        yield f"loss {name}", getattr(card.loss, name), getattr(config.loss, name)
    for name in ("epochs", "batch_size", "lr", "seed", "keep", "augment"):
        yield name, getattr(t, name), getattr(config, name)
    yield from data_settings(card.data, config.data.provenance("train", n_train))


def bundle_settings(
    meta: RepresentationBundle, ids: list[int], *, encoder_sha: str, spec_sha: str,
    data: DataProvenance, wanted_ids: list[int], labels: list[str],
    cert: CenterSmoothingParams | None, seed: int, endpoints: bool,
) -> Iterator[Setting]:  # fmt: skip
    """A representation bundle against ``encode_split``'s request: its encoder and spec, split,
    data, samples (limit/every), labels, the center smoothing parameters (Sec. 4.3) with their
    seed, and the end points."""
    yield "encoder", meta.parents.get("encoder"), encoder_sha
    yield "similarity spec", meta.parents.get("similarity_spec"), spec_sha
    yield "split", meta.split, data.split
    yield from data_settings(meta.data, data)
    yield "sample ids (limit/every)", ids, wanted_ids
    yield "labels", meta.label_names, labels
    yield "certified", meta.certified, cert is not None
    if cert is not None and meta.certificate is not None:
        wanted = cert.issued(seed, meta.certificate.m)  # m is the spec's, checked by its hash
        for name in CenterSmoothingParams.model_fields:
            yield f"center smoothing {name}", getattr(meta.certificate, name), getattr(wanted, name)
    yield "endpoints", bool(meta.endpoints), endpoints


def classifier_settings(
    card: ClassifierCard, train_sha: str, task: str, sigma: float, epochs: int | None, seed: int
) -> Iterator[Setting]:
    """A consumer classifier's card against ``train_consumer_classifier``'s request (``epochs``
    None: trained to convergence, recorded by its kept epoch)."""
    from lassi.consumer.classifier import auto_epochs

    t = card.training
    auto = t.best_epoch is not None or (epochs is None and t.epochs == auto_epochs(t.n_train, t.batch_size))
    yield "train bundle", card.parents.get("representations"), train_sha
    yield "task", card.task, task
    yield "sigma_cls", card.sigma_cls, sigma
    yield "epochs", "auto" if auto else t.epochs, "auto" if epochs is None else epochs
    yield "seed", t.seed, seed


def report_settings(
    report: VerificationReport, classifier_sha: str, test_sha: str, spec_sha: str, verify: dict,
    seed: int,
) -> Iterator[Setting]:  # fmt: skip
    """A verification report against ``verify``'s request: its classifier, test bundle and
    spec, and the randomized smoothing parameters (CERTIFY, Algorithm 1) with their seed."""
    yield "classifier", report.parents.get("classifier"), classifier_sha
    yield "test bundle", report.parents.get("representations"), test_sha
    yield "similarity spec", report.scope.spec_sha256, spec_sha
    s = report.smoothing
    wanted = {"sequential": False} | verify
    for name in ("n0", "n", "alpha", "sequential"):
        if name in wanted and name in SmoothingParams.model_fields:
            yield f"randomized smoothing {name}", getattr(s, name), wanted[name]
    yield "seed", s.seed, seed
