"""The experiments' settings and Table 2's protocols, read from the TOML files beside this module
(settings.toml, protocols.toml) into validated models; nothing here is module state."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lassi.spec import LossWeights, UsageError
from lassi.spec.contract.errors import validation_message
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.runtime.cli_options import default_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _default(source: str | type, name: str):
    """The default of ``name`` where the roles write it (a model's field, a function's keyword;
    :func:`default_of`), read when a settings file leaves it out (the roles' modules need torch:
    imported only then)."""
    return lambda: default_of(source, name)


DEFINE = "lassi.regulator.similarity:define_spec"
VERIFY = "lassi.consumer.verification:verify"
TRAIN = "lassi.producer.training:EncoderTrainConfig"


class Regulator(Frozen):
    """The similarity spec's ε (``define --epsilon``'s default, CenterSmoothingParams's: the
    paper's 1.0) and define's test images for fidelity and coverage; a value left out is the
    default."""

    epsilon: float = Field(default_factory=_default(CenterSmoothingParams, "epsilon"), gt=0)
    fidelity_images: int = Field(default_factory=_default(DEFINE, "fidelity_images"), ge=1)


class Producer(Frozen):
    correlate: str


class Encoder(Frozen):
    hidden: list[int]
    k: int = Field(ge=1)
    task: str
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)


class Method(Frozen):
    """One row of the paper's ablation (Sec. 4.2 losses) and the consumer's sigma_cls for it."""

    sigma_cls: float = Field(gt=0)
    loss: LossWeights
    augment: int = Field(0, ge=0)  # lassi-producer train --augment N (the data-augmentation row)


class RandomizedSmoothing(Frozen):
    """The consumer's CERTIFY; a value left out is verify's default (the paper's)."""

    n0: int = Field(default_factory=_default(VERIFY, "n0"), ge=1)
    n: int = Field(default_factory=_default(VERIFY, "n"), ge=1)
    alpha: float = Field(default_factory=_default(VERIFY, "alpha"), gt=0, lt=1)


class Table2(Frozen):
    sibling_n0: int = Field(ge=2)


class Ablation(Frozen):
    sigmas: list[float]
    sensitive_sets: list[str]
    accuracy_slack: float = Field(ge=0)


class Transfer(Frozen):
    tasks: list[str]
    sigmas: list[float]
    lambda_adv: float
    lambda_contr: float
    lambda_rec: float
    delta_contr: float
    attack_points: int
    consumer_epochs: int


class SiblingProbe(Frozen):
    epochs: int
    keep: Literal["best", "last"]
    sigma_cls: float = Field(gt=0)


class Certification:
    """What a settings model with ``center_smoothing`` (a mapping, validated here as
    CenterSmoothingParams; a parameter left out is the model's default, the paper's) and
    ``randomized_smoothing`` fields certifies with."""

    def certificate(self, spec_epsilon: float) -> CenterSmoothingParams:
        """The certified test bundles' center smoothing parameters at ``spec_epsilon``, the ε of
        the specs the settings define (a certificate is bound to its spec's ε)."""
        given = dict(self.center_smoothing)
        if "epsilon" in given and given["epsilon"] != spec_epsilon:
            raise ValueError(
                f"epsilon = {given['epsilon']:g} differs from the spec's epsilon "
                f"{spec_epsilon:g}: a certificate's epsilon is its spec's (leave it out)"
            )
        return CenterSmoothingParams(**({"epsilon": spec_epsilon} | given))

    @property
    def verify(self) -> dict:
        """Keyword arguments of lassi.consumer.verification.verify (n0, n, alpha)."""
        return self.randomized_smoothing.model_dump()


class CelebAEncoder(Frozen):
    """E_L of the CelebA experiments: an MLP on the Glow latent; a value left out is
    ``lassi-producer train``'s default (EncoderTrainConfig's: the authors' CelebA encoder)."""

    hidden: list[int] = Field(default_factory=_default(TRAIN, "hidden"))
    k: int = Field(default_factory=_default(TRAIN, "k"), ge=1)
    epochs: int = Field(default_factory=_default(TRAIN, "epochs"), ge=1)
    batch_size: int = Field(default_factory=_default(TRAIN, "batch_size"), ge=2)
    lr: float = Field(default_factory=_default(TRAIN, "lr"), gt=0)
    keep: Literal["best", "last"]


class CelebAMethod(Frozen):
    """One method row of the CelebA tables: the encoder's losses (Sec. 4.2), the
    data-augmentation baseline's draws of the set per sample (0: none; task loss only) and the
    consumer's sigma_cls where no sweep is run."""

    sigma_cls: float = Field(gt=0)
    loss: LossWeights
    augment: int = Field(0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _augment_is_task_loss_only(self) -> CelebAMethod:
        if self.augment and (self.loss.adv > 0 or self.loss.contr > 0):
            raise ValueError("augment trains with the task loss only (adv = contr = 0)")
        return self


class CelebA(Frozen, Certification):
    """The paper's CelebA experiments (Sec. 5, Table 1)."""

    tasks: list[str] = Field(min_length=1)
    sensitive_sets: list[str] = Field(min_length=1)
    epsilon: float = Field(default_factory=_default(CenterSmoothingParams, "epsilon"), gt=0)
    sigmas: list[float] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    every: int = Field(ge=1)
    accuracy_slack: float = Field(ge=0)
    consumer_epochs: int = Field(ge=1)
    encoder: CelebAEncoder
    methods: dict[str, CelebAMethod] = Field(min_length=1)
    adv_overrides: dict[str, float] = Field(default_factory=dict)  # "TASK/SENSITIVE" -> lambda_adv
    center_smoothing: dict[str, float | int | str] = Field(default_factory=dict)
    randomized_smoothing: RandomizedSmoothing = Field(default_factory=RandomizedSmoothing)

    @property
    def cert(self) -> CenterSmoothingParams:
        return self.certificate(self.epsilon)


class Protocol(Frozen):
    """One of Table 2's protocols (protocols.toml)."""

    description: str
    vectors: Literal["halves", "pairs"]
    given: str | None = None
    correlate: str
    folder: str
    siblings: Literal["certify", "predict"]


class Settings(Frozen, Certification):
    regulator: Regulator = Field(default_factory=Regulator)
    producer: Producer
    encoder: Encoder
    methods: dict[str, Method]
    center_smoothing: dict[str, float | int | str] = Field(default_factory=dict)
    randomized_smoothing: RandomizedSmoothing = Field(default_factory=RandomizedSmoothing)
    table2: Table2
    ablation: Ablation
    transfer: Transfer
    sibling_probe: SiblingProbe
    celeba: CelebA
    protocols: dict[str, Protocol]

    @property
    def cert(self) -> CenterSmoothingParams:
        return self.certificate(self.regulator.epsilon)

    @property
    def pairs_protocols(self) -> list[str]:
        return [name for name, p in self.protocols.items() if p.vectors == "pairs"]


def _read(path: Path | None, name: str) -> dict:
    try:
        if path is None:
            return tomllib.loads(resources.files(__package__).joinpath(name).read_text())
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(path or name, f"cannot read the settings: {error}") from error


def load_settings(settings: Path | None = None, protocols: Path | None = None) -> Settings:
    """The settings (default: the packaged settings.toml and protocols.toml)."""
    data = _read(settings, "settings.toml") | {"protocols": _read(protocols, "protocols.toml")}
    where = settings or protocols or "settings.toml"
    try:
        out = Settings.model_validate(data)
    except ValidationError as error:
        raise UsageError(where, validation_message(error, "setting")) from error
    for name, certification in (("center_smoothing", out), ("celeba.center_smoothing", out.celeba)):
        try:
            certification.cert  # noqa: B018  (center smoothing's own checks, at the spec's epsilon)
        except ValidationError as error:
            raise UsageError(where, f"setting '{name}': {validation_message(error)}") from None
        except (TypeError, ValueError) as error:
            raise UsageError(where, f"setting '{name}': {error}") from None
    return out


def with_draws(params: CenterSmoothingParams, n0: int, n: int) -> CenterSmoothingParams:
    """``params`` with other draw counts (validated again)."""
    return params.replace(n0=n0, n=n)
