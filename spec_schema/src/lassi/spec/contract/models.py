"""The artifact kinds exchanged between regulator, producer and consumer (pydantic v2).

Every artifact is one ``.safetensors`` file: the metadata model below, validated and stored
as JSON under ``__metadata__["lassi"]``, plus the tensors its ``tensor_specs`` declare.
Every artifact records the tool that wrote it, when, and the SHA-256 of each artifact it was
made from (``parents``), so a verification report traces back to the exact similarity spec.

Why one long module: it is the whole artifact schema in one place, the file a reader in
another language (or ``inspect --schema``) follows; splitting it would scatter the contract.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from lassi.spec.contract.architecture import check_classifier, check_encoder, check_glow

SCHEMA_VERSION = 1

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]

# Upper bounds on sizes read from another party's metadata, checked before anything is built.
MAX_CLASSES = 10_000
MAX_HIDDEN_WIDTH = 65_536
MAX_HIDDEN_LAYERS = 32
MAX_SMOOTHING_SAMPLES = 10_000_000
# Attribute vectors of one spec (and of a producer's attack extension): each is a row of
# latent_dim float32 in the spec file and one dimension of center smoothing's t-noise. 4096 rows
# of a 64x64x3 Glow latent are 200 MB, far above any real spec (3D Shapes pairs: 49; with every
# --condition-on group a few hundred) and still a bounded allocation.
MAX_VECTORS = 4096

# The dtypes artifacts may contain (safetensors names).
FLOAT_DTYPES = ("F64", "F32", "F16")
INT_DTYPES = ("I64", "I32", "I16", "I8", "U8", "BOOL")


class Model(BaseModel):
    """Strict base: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(Model):
    """A tensor an artifact must (or may) contain; shape entries are sizes or None (free)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    required: bool = True


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class ArtifactBase(Model):
    """Fields shared by every artifact kind."""

    schema_version: int = SCHEMA_VERSION
    kind: str
    tool: str = Field(description="name and version of the tool that wrote the file")
    created: datetime = Field(default_factory=now_utc)
    parents: dict[str, Sha256] = Field(
        default_factory=dict,
        description="SHA-256 of each artifact this one was made from, by kind (with ancestors)",
    )

    # Free-form float weight groups (a module's state dict under a prefix).
    weight_prefixes: ClassVar[tuple[str, ...]] = ()

    def tensor_specs(self) -> list[TensorSpec]:
        """The named tensors this artifact declares (besides the weight groups)."""
        return []

    def check_values(self, tensors: dict[str, Any]) -> str | None:
        """Kind-specific checks of tensor values; returns a problem description or None."""
        return None

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        """The declared architecture against the header's tensor shapes, before anything is
        loaded or built (``lassi.spec.contract.architecture``); a problem description or None."""
        return None


# --------------------------------------------------------------------------- regulator


class GlowConfig(Model):
    """Architecture of the multi-scale Glow (Kingma & Dhariwal 2018)."""

    image_size: int = Field(64, ge=4, le=1024)
    channels: Literal[3] = 3
    n_levels: int = Field(3, ge=1, le=8)
    n_steps: int = Field(8, ge=1, le=64)
    hidden: int = Field(128, ge=1, le=2048)
    coupling: Literal["additive", "affine"] = "additive"
    n_bits: int = Field(5, ge=1, le=8)

    @model_validator(mode="after")
    def _divisible(self) -> GlowConfig:
        if self.image_size % (2**self.n_levels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**n_levels = {2**self.n_levels}"
            )
        return self

    @property
    def latent_dim(self) -> int:
        return self.channels * self.image_size * self.image_size


class Preprocessing(Model):
    """How images become Glow inputs: center crop, resize, quantise, x / 2**n_bits - 0.5."""

    image_size: int = Field(64, ge=4, le=1024)
    crop: Literal["center"] = "center"
    n_bits: int = Field(5, ge=1, le=8)
    scale: Literal["x/2**n_bits-0.5"] = "x/2**n_bits-0.5"

    @classmethod
    def for_flow(cls, flow: GlowConfig) -> Preprocessing:
        """The preprocessing a Glow of this architecture expects (its image size and n_bits)."""
        return cls(image_size=flow.image_size, n_bits=flow.n_bits)


def _check_preprocessing(flow: GlowConfig, preprocessing: Preprocessing) -> None:
    """image_size and n_bits are recorded twice (flow and preprocessing): they must agree."""
    for name in ("image_size", "n_bits"):
        if getattr(flow, name) != getattr(preprocessing, name):
            raise ValueError(
                f"preprocessing.{name} = {getattr(preprocessing, name)} differs from "
                f"flow.{name} = {getattr(flow, name)}"
            )


class DataProvenance(Model):
    """Which data an artifact was computed from, relocatably: the data source kind, its options
    and relative names and hashes only, never a local path (the artifact goes to another
    organisation, whose copy of the data lives elsewhere; readers pass their ``--data-root``).
    A folder source's ``options`` hold ``csv``, its CSV's name relative to the data root, or
    ``csv_sha256``, the SHA-256 of a CSV kept outside it."""

    dataset: Literal["shapes3d", "shapes3d-h5", "celeba", "folder", "fairface"]
    root: str | None = Field(
        None,
        exclude=True,
        description="written by older versions only: the local data folder; read, ignored (a "
        "reader uses its own --data-root) and never written again",
    )
    split: str = "train"
    n_samples: int = Field(ge=0)
    seed: int = Field(0, ge=0)
    options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    content_sha256: Sha256 | None = Field(
        None,
        description="files on disk (celeba, folder): the samples' data identity "
        "(lassi.spec.contract.data_identity); absent for the rendered 3D Shapes (its renderer and "
        "factors are the content) and in bundles written before it",
    )
    content_hash: Literal["per-file", "stream"] = Field(
        "stream",
        description="how content_sha256 is computed: 'per-file', SHA-256 over each sample's "
        "length-prefixed relative file name and the SHA-256 of its file, in id order (a bundle "
        "carries the per-file hashes as tensor 'file_sha256'); 'stream' (files written before "
        "per-file hashes), over the names and the files' bytes",
    )


class GlowTraining(Model):
    steps: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: PositiveFloat
    warmup_steps: int = Field(ge=0)
    seed: int = Field(ge=0)
    train_bits_per_dim: FiniteFloat | None = None
    val_bits_per_dim: FiniteFloat | None = None
    seconds: float = Field(ge=0, allow_inf_nan=False)


class GlowImport(Model):
    """Where an imported Glow came from (``lassi-regulator import-glow``): a checkpoint of another
    implementation, converted to this one (e.g. the LASSI authors' rosinality/glow-pytorch Glows)."""

    format: Literal["rosinality/glow-pytorch"]
    file: Name = Field(description="the checkpoint's file name")
    sha256: Sha256 = Field(description="SHA-256 of the checkpoint file")
    plain_convs: int = Field(
        0, ge=0, description="1x1 convolutions stored as plain weights, LU-decomposed on import"
    )


class GlowArtifact(ArtifactBase):
    """A Glow flow: trained here (``train-glow``: ``data`` and ``training``) or imported
    (``import-glow``: ``imported``, the data and training are the checkpoint's, not recorded)."""

    kind: Literal["glow"] = "glow"
    flow: GlowConfig
    preprocessing: Preprocessing
    data: DataProvenance | None = None
    training: GlowTraining | None = None
    imported: GlowImport | None = None
    weight_prefixes: ClassVar[tuple[str, ...]] = ("glow.",)

    @model_validator(mode="after")
    def _consistent_preprocessing(self) -> GlowArtifact:
        _check_preprocessing(self.flow, self.preprocessing)
        trained = self.data is not None and self.training is not None
        if trained == (self.imported is not None) or (self.data is None) != (self.training is None):
            raise ValueError("a Glow records either its data and training or where it was imported from")
        return self

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        return check_glow(self.flow, shapes)


def conditional_names(attribute: str, given: str, groups: int) -> list[str]:
    """Names of an attribute's vectors conditioned on ``given`` (one per value of ``given``)."""
    return [f"{attribute}_given_{given}_{g}" for g in range(groups)]


class AttributeInfo(Model):
    """One sensitive attribute and how its vectors were computed (average_diff, paper Sec. 4.1).

    ``vectors = "halves"``: one vector, mean latent of the high half of the values minus that of
    the low half (a binary attribute: label 1 minus label 0). ``vectors = "pairs"`` (a
    multi-valued attribute, as in the authors' code for 3D Shapes): one vector per pair (b, e)
    of values with b below and e above the middle value, a_{b,e} = mean E_G(x | v = e) − mean
    E_G(x | v = b); 3D Shapes orientation gives 7 × 7 = 49. Files written before pairs existed
    have no ``vector_names``: they hold one vector named after the attribute.

    ``given`` (``define --condition-on``): after those vectors, one more halves vector per value
    g of the attribute ``given``, computed over the train images with ``given = g`` only (on 3D
    Shapes, orientation given scale: the orientation move of each object size), named
    ``<name>_given_<given>_<g>`` (:func:`conditional_names`); ``given_counts`` holds the train
    images of each group.
    """

    name: Name
    num_values: int = Field(ge=2)
    positive: str = Field(description="which samples count as having the attribute")
    negative: str = Field(description="which samples count as not having it")
    n_positive: int = Field(ge=1)
    n_negative: int = Field(ge=1)
    vector_norm: PositiveFloat = Field(description="norm of the vector (pairs: their mean norm)")
    vectors: Literal["halves", "pairs"] = "halves"
    vector_names: list[Name] = Field(
        default_factory=list,
        max_length=MAX_VECTORS,
        description="one name per vector, e.g. orientation_3_11",
    )
    value_counts: list[int] = Field(
        default_factory=list, description="train images per value 0..num_values-1"
    )
    given: Name | None = Field(
        None, description="attribute whose every value adds one halves vector of this attribute"
    )
    given_counts: list[int] = Field(
        default_factory=list, description="train images per value of ``given``"
    )

    @model_validator(mode="after")
    def _names(self) -> AttributeInfo:
        if self.vectors == "pairs" and not self.vector_names:
            raise ValueError(f"attribute {self.name}: pair vectors need their vector_names")
        if len(set(self.vector_names)) != len(self.vector_names):
            raise ValueError(f"attribute {self.name}: vector names repeat")
        if self.value_counts and len(self.value_counts) != self.num_values:
            raise ValueError(f"attribute {self.name}: value_counts needs one entry per value")
        if (self.given is None) != (not self.given_counts):
            raise ValueError(f"attribute {self.name}: given and given_counts come together")
        if self.given is not None:
            if self.given == self.name:
                raise ValueError(f"attribute {self.name}: cannot be conditioned on itself")
            if len(self.given_counts) < 2 or min(self.given_counts) < 2:
                raise ValueError(
                    f"attribute {self.name}: given_counts needs >= 2 groups of >= 2 images"
                )
            groups = conditional_names(self.name, self.given, len(self.given_counts))
            base = self.vector_names[: len(self.vector_names) - len(groups)]
            if self.vector_names[len(base) :] != groups or (
                self.vectors == "halves" and base != [self.name]
            ) or not base:
                raise ValueError(
                    f"attribute {self.name}: vector_names must be its own vectors, then "
                    f"{groups[0]} .. {groups[-1]}"
                )
        return self

    @property
    def given_values(self) -> int:
        """How many conditional vectors follow the attribute's own (0 without ``given``)."""
        return len(self.given_counts)

    @property
    def names(self) -> list[str]:
        """The names of this attribute's vectors, in the order of the spec's tensor."""
        return list(self.vector_names) or [self.name]


class Fidelity(Model):
    """How well the attribute vector follows the ground truth (3D Shapes only, 1.0 = useless).

    Measured on the single high-minus-low-half orientation vector, whatever vectors the spec
    holds (for a pairs spec that vector is derived from the same per-value means)."""

    overall: FiniteFloat
    per_shape: dict[str, FiniteFloat]
    n_images: int = Field(ge=1)
    min_angle_deg: float = 20.0
    t_range: FiniteFloat


class CertificationPolicy(Model):
    """The regulator's minimum standard for center-smoothing certificates (paper Sec. 4.3).

    Recorded in the similarity spec (``lassi-regulator define --max-alpha/--sigma-enc-min/
    --sigma-enc-max/--min-n``) and enforced by ``lassi.spec.contract.binding.check_binding``.
    """

    max_alpha: Probability | None = Field(
        None, description="largest allowed total failure probability alpha1 + alpha2"
    )
    sigma_enc_min: PositiveFloat | None = None
    sigma_enc_max: PositiveFloat | None = None
    min_n: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> CertificationPolicy:
        low, high = self.sigma_enc_min, self.sigma_enc_max
        if low is not None and high is not None and low > high:
            raise ValueError("sigma_enc_min must not exceed sigma_enc_max")
        return self

    def violation(self, c: CertificateParams) -> str | None:
        """What the certificate breaks, or None."""
        if self.max_alpha is not None and c.alpha1 + c.alpha2 > self.max_alpha:
            return f"alpha1 + alpha2 = {c.alpha1 + c.alpha2:g} exceeds {self.max_alpha:g}"
        if self.sigma_enc_min is not None and c.sigma_enc < self.sigma_enc_min:
            return f"sigma_enc = {c.sigma_enc:g} is below {self.sigma_enc_min:g}"
        if self.sigma_enc_max is not None and c.sigma_enc > self.sigma_enc_max:
            return f"sigma_enc = {c.sigma_enc:g} exceeds {self.sigma_enc_max:g}"
        if self.min_n is not None and c.n < self.min_n:
            return f"n = {c.n} is below {self.min_n}"
        return None
class Coverage(Model):
    """How much of the real orientation siblings the similarity set contains (3D Shapes only).

    For a test image x (latent z) and each ground-truth sibling x_j at least ``min_angle_deg``
    away (latent z_j, d = z_j − z), t* = argmin ||d − t A|| over ||t||_2 ≤ ε, A the spec's m
    vectors. ``latent_residual``: mean of ||d − t* A|| / ||d||; ``latent_residual_span``: the
    same without the ball (t free: how much the vectors' span holds); ``pixel_ratio``: summed
    mean absolute pixel error |D_G(z + t* A) − x_j| over summed |D_G(z) − x_j| (1 = useless,
    0 = perfect), overall and per shape; ``on_boundary``: share of siblings whose t* lies on
    the sphere ||t|| = ε (the ball, not the span, is what limits them).
    """

    vectors: str = Field(description="the spec's vector choice, e.g. 'pairs' or 'halves'")
    m: int = Field(ge=1)
    epsilon: PositiveFloat
    latent_residual: FiniteFloat
    latent_residual_span: FiniteFloat
    pixel_ratio: FiniteFloat
    per_shape: dict[str, FiniteFloat]
    on_boundary: float = Field(ge=0, le=1)
    n_images: int = Field(ge=1)
    n_siblings: int = Field(ge=1)
    min_angle_deg: float = 20.0


AttributeMethodName = Literal["average_diff", "perpendicular", "ramaswamy", "discover"]


class LinearBoundary(Model):
    """A linear classifier Linear(D, 1) of one binary label on the flattened Glow latent (BCE
    with logits, Adam), the epoch with the lowest validation loss kept (``perpendicular``,
    ``ramaswamy``, and the task's known normal of ``discover``). A multi-valued attribute is
    labelled high half (1) against low half (0) of its values, its middle value left out."""

    attribute: Name
    val_accuracy: float = Field(ge=0, le=1)
    val_loss: float = Field(ge=0, allow_inf_nan=False)
    best_epoch: int = Field(ge=0)
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)


class DiscoverSettings(Model):
    """Li & Xu's discovery of a biased classifier's unknown attributes (``method = discover``):
    hyperplanes (w, b) in the Glow latent whose unit normal, walked by ``steps`` from each
    point's projection onto the plane, changes the classifier's probability of
    ``class_index`` most (total-variation loss), with ``lambda_orth`` times the mean squared
    cosine to the known normals as a penalty (the task's linear normal, then each direction
    found). ``final_tv_loss`` and ``max_known_cosine`` (|cos| to the known normals) are each
    direction's at its last iteration."""

    classifier: Sha256 = Field(description="SHA-256 of the biased classifier's artifact")
    classifier_kind: Literal["encoder"] = "encoder"
    classifier_task: Name
    class_index: int = Field(ge=0, lt=MAX_CLASSES)
    directions: int = Field(ge=1, le=16)
    iterations: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: PositiveFloat
    lambda_orth: float = Field(ge=0, allow_inf_nan=False)
    steps: list[FiniteFloat] = Field(min_length=2, max_length=64)
    final_tv_loss: list[FiniteFloat] = Field(max_length=16)
    max_known_cosine: list[Annotated[float, Field(ge=0, le=1)]] = Field(max_length=16)

    @model_validator(mode="after")
    def _one_per_direction(self) -> DiscoverSettings:
        if not len(self.final_tv_loss) == len(self.max_known_cosine) == self.directions:
            raise ValueError("final_tv_loss and max_known_cosine need one entry per direction")
        return self


class AttributeMethod(Model):
    """How the attribute vectors were computed when not by average difference (paper Sec. 4.1
    uses the average difference; the authors' code also offers these): ``perpendicular``
    (Denton et al.: the weight of a linear classifier of each sensitive attribute),
    ``ramaswamy`` (Ramaswamy et al.: that normal made orthogonal to the task's and scaled by the
    mean distance of the train latents to their mirror image across the sensitive boundary),
    ``discover`` (Li & Xu: directions that change a biased classifier's output most, see
    :class:`DiscoverSettings`). ``boundaries``: the linear classifiers trained (the sensitive
    attributes, then the task)."""

    name: Literal["perpendicular", "ramaswamy", "discover"]
    normalized: bool
    task: Name | None = None
    epochs: int = Field(ge=1)
    lr: PositiveFloat
    batch_size: int = Field(ge=1)
    seed: int = Field(ge=0)
    boundaries: list[LinearBoundary] = Field(min_length=1, max_length=17)
    discover: DiscoverSettings | None = None

    @model_validator(mode="after")
    def _settings(self) -> AttributeMethod:
        if self.name in ("ramaswamy", "discover") and self.task is None:
            raise ValueError(f"method {self.name} needs the task it was computed against")
        if self.task is not None and self.boundaries[-1].attribute != self.task:
            raise ValueError("the task's boundary must come last")
        if (self.name == "discover") != (self.discover is not None):
            raise ValueError("discover settings come with method discover only")
        return self


class SimilaritySpec(ArtifactBase):
    """Who counts as similar: S(x) = {D_G(E_G(x) + sum_i t_i a_i) : ||t||_2 <= epsilon}."""

    kind: Literal["similarity_spec"] = "similarity_spec"
    flow: GlowConfig
    preprocessing: Preprocessing
    data: DataProvenance
    attributes: list[AttributeInfo] = Field(min_length=1, max_length=16)
    attribute_method: AttributeMethodName = "average_diff"
    # absent (not even null) for average_diff, so those specs' metadata is what it always was
    method: AttributeMethod | None = Field(None, exclude_if=lambda v: v is None)
    epsilon: PositiveFloat
    norm: Literal["l2"] = "l2"
    fidelity: Fidelity | None = None
    policy: CertificationPolicy | None = None
    coverage: Coverage | None = None
    weight_prefixes: ClassVar[tuple[str, ...]] = ("glow.",)

    @field_validator("attributes")
    @classmethod
    def _unique(cls, attributes: list[AttributeInfo]) -> list[AttributeInfo]:
        names = [a.name for a in attributes]
        if len(set(names)) != len(names):
            raise ValueError(f"attribute names repeat: {names}")
        for a in attributes:
            if a.given in names:
                raise ValueError(f"attribute {a.name} is conditioned on {a.given}, itself sensitive")
        return attributes

    @model_validator(mode="after")
    def _consistent_preprocessing(self) -> SimilaritySpec:
        _check_preprocessing(self.flow, self.preprocessing)
        return self

    @model_validator(mode="after")
    def _method_recorded(self) -> SimilaritySpec:
        recorded = "average_diff" if self.method is None else self.method.name
        if recorded != self.attribute_method:
            raise ValueError(
                f"attribute_method {self.attribute_method} but the method record says {recorded}"
            )
        return self

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        return check_glow(self.flow, shapes)

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def vector_names(self) -> list[str]:
        """One name per row of ``attribute_vectors`` (all attributes, in order)."""
        return [name for a in self.attributes for name in a.names]

    def tensor_specs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                name="attribute_vectors",
                dtype="F32",
                shape=(len(self.vector_names), self.flow.latent_dim),
            )
        ]


# --------------------------------------------------------------------------- producer


class LossWeights(Model):
    """lambda_adv, lambda_contr, lambda_rec and the margins; all zero gives the baseline."""

    adv: float = Field(0.0, ge=0, allow_inf_nan=False)
    contr: float = Field(0.0, ge=0, allow_inf_nan=False)
    rec: float = Field(0.0, ge=0, allow_inf_nan=False)
    delta_contr: PositiveFloat = 10.0
    delta_adv: float = Field(0.0, ge=0, allow_inf_nan=False)
    attack_points: int = Field(100, ge=1)
    # where the random attack draws t: "ball" = the certified ε-ball; "cube" = each t_i uniform on
    # [−ε, ε] (a superset of the ball: the authors' sampler for one attribute with several vectors,
    # eth-sri/lassi src/sampler.py UniformNoiseAdder). The certified set is the ε-ball either way.
    attack_region: Literal["ball", "cube"] = "ball"


class AttackSet(Model):
    """The random attack's set when the producer trained against a larger one than its spec's
    (``lassi-producer train --attack-spec``): a second spec of the same regulator, Glow and ε
    whose vectors begin with the spec's and add ``extra_vectors``. Only training sees it: the
    encoder's certificates stay those of the spec it names as its parent."""

    spec: Sha256
    extra_vectors: list[Name] = Field(min_length=1, max_length=MAX_VECTORS)


class EncoderTraining(Model):
    epochs: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: PositiveFloat
    seed: int = Field(ge=0)
    best_epoch: int = Field(ge=0)  # 0-based index of the epoch whose weights were written
    keep: Literal["best", "last"] = "best"  # that epoch: best validation accuracy, or the last
    train_accuracy: float = Field(ge=0, le=1)
    val_accuracy: float = Field(ge=0, le=1)
    n_train: int = Field(ge=1)
    seconds: float = Field(ge=0, allow_inf_nan=False)
    attack_set: AttackSet | None = None  # None: the attack drew t over the spec's own set
    # the data-augmentation baseline (the authors' method rows): N uniform draws of the set
    # (loss.attack_region) per sample as extra training samples, task loss only; absent when 0
    augment: int = Field(0, ge=0, le=10_000, exclude_if=lambda v: v == 0)

    @model_validator(mode="after")
    def _written_epoch_exists(self) -> EncoderTraining:
        last = self.epochs - 1
        if self.epochs and self.best_epoch > last:
            raise ValueError(f"best_epoch {self.best_epoch} is past the last epoch {last}")
        if self.keep == "last" and self.epochs and self.best_epoch != last:
            raise ValueError(
                f"keep 'last' names epoch {self.best_epoch}, not the last epoch {last}"
            )
        return self


class EncoderCard(ArtifactBase):
    """The producer's fair encoder E_L (and its auxiliary head)."""

    kind: Literal["encoder"] = "encoder"
    architecture: Literal["latent_mlp", "image_resnet18"]
    input_dim: int = Field(ge=1, le=3 * 1024 * 1024)
    hidden: list[Annotated[int, Field(ge=1, le=MAX_HIDDEN_WIDTH)]] = Field(
        default_factory=list, max_length=MAX_HIDDEN_LAYERS
    )
    width: int = Field(64, ge=1, le=MAX_HIDDEN_WIDTH)
    k: int = Field(ge=1, le=65536)
    task: Name
    num_classes: int = Field(ge=2, le=MAX_CLASSES)
    loss: LossWeights
    training: EncoderTraining
    data: DataProvenance
    weight_prefixes: ClassVar[tuple[str, ...]] = ("encoder.", "aux.", "decoder.")

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        return check_encoder(self, shapes)


class CenterStatus(IntEnum):
    """Outcome of center smoothing for one sample (stored as U8)."""

    CERTIFIED = 0
    ABSTAIN_DELTA = 1
    ABSTAIN_Q = 2


Bounds = Literal["hoeffding", "exact"]
AbstainTest = Literal["fixed", "sequential"]


class CertificateParams(Model):
    """Parameters of center smoothing (Kumar & Goldstein 2021; paper Sec. 4.3).

    bounds: the confidence bounds of steps 2 and 4 (``lassi.spec.runtime.center_smoothing``); files
    written before the field existed used Hoeffding's, hence the default.
    """

    sigma_enc: PositiveFloat
    epsilon: PositiveFloat
    n0: int = Field(ge=1)
    n: int = Field(ge=1)
    alpha1: Probability
    alpha2: Probability
    delta: Probability
    beta: PositiveFloat = 2.0
    seed: int = Field(ge=0)
    bounds: Bounds = "hoeffding"
    abstain_test: AbstainTest = "fixed"  # step 2: n0 draws, or anytime-valid and at most n0
    m: int | None = Field(
        None,
        ge=1,
        le=MAX_VECTORS,
        description="dimension of the t-noise: the spec's number of attribute vectors",
    )  # absent in files written before it was recorded; check_binding refuses those

    @model_validator(mode="after")
    def _replayable(self) -> CertificateParams:
        """The ranges center smoothing itself needs (Kumar & Goldstein 2021, Alg. 1 and Thm. 1),
        so every certificate the schema accepts can be replayed by an auditor."""
        if not self.delta < 0.5:
            raise ValueError("delta must be < 1/2 (center smoothing's Delta)")
        if not self.alpha1 + self.alpha2 < 1:
            raise ValueError("alpha1 + alpha2 must be < 1")
        if self.beta < 1:
            raise ValueError("beta must be >= 1")
        if self.n0 < 2 or max(self.n0, self.n) > MAX_SMOOTHING_SAMPLES:
            raise ValueError(f"need 2 <= n0 and n0, n <= {MAX_SMOOTHING_SAMPLES}")
        # the replay builds these parameters; settings it refuses (exact bounds with which no
        # sample can ever certify) are refused here, not as an internal error of the audit
        from lassi.spec.runtime.center_smoothing import (
            CenterSmoothingParams,  # (imports this module)
        )

        try:
            CenterSmoothingParams.from_certificate(self)
        except ValueError as error:
            raise ValueError(f"the certificate cannot be replayed: {error}") from None
        return self


class RepresentationBundle(ArtifactBase):
    """Representations z = E_L(E_G(x)) of one data split; certified bundles add z_CS and r_CS."""

    kind: Literal["representations"] = "representations"
    split: Name
    n_samples: int = Field(ge=0)
    k: int = Field(ge=1, le=65536)
    label_names: list[Name] = Field(default_factory=list)
    label_classes: dict[str, int] = Field(default_factory=dict)
    certified: bool = False
    certificate: CertificateParams | None = None
    attributes: list[Name] = Field(default_factory=list)
    data: DataProvenance | None = None
    sensitive_labels: list[Name] = Field(
        default_factory=list,
        description="labels of sensitive attributes (the spec's) exported on explicit request; "
        "a consumer must not train on them",
    )
    file_names: list[str] | None = Field(
        None, description="image file name (or CSV key) of each sample, in the order of ids"
    )
    # The authors' endpoints analysis (``encode --certify --endpoints``): center smoothing again at
    # each segment end z_G ± ε·a_i, in the order a_1−, a_1+, a_2−, ...; tensors endpoint_z_cs
    # [n, endpoints, k] and endpoint_status [n, endpoints]. Absent (0) in other bundles.
    endpoints: int = Field(0, ge=0, le=8192, exclude_if=lambda v: v == 0)

    @model_validator(mode="after")
    def _consistent(self) -> RepresentationBundle:
        if self.endpoints and (not self.certified or self.endpoints % 2):
            raise ValueError("endpoints come in pairs, in certified bundles only")
        m = None if self.certificate is None else self.certificate.m
        if self.endpoints and m is not None and self.endpoints != 2 * m:
            raise ValueError(f"endpoints must be 2 per attribute vector ({2 * m}), not {self.endpoints}")
        if not set(self.sensitive_labels) <= set(self.label_names):
            raise ValueError("sensitive_labels must be among label_names")
        if self.file_names is not None and len(self.file_names) != self.n_samples:
            raise ValueError("file_names must have one entry per sample")
        if self.per_file_hashes and self.file_names is None:
            raise ValueError("per-file content hashes need file_names")
        if self.certified != (self.certificate is not None):
            raise ValueError("certified bundles need certificate parameters, plain ones none")
        if set(self.label_names) != set(self.label_classes):
            raise ValueError("label_names and label_classes name different labels")
        if any(c < 1 for c in self.label_classes.values()):
            raise ValueError("label_classes must be positive")
        return self

    @property
    def per_file_hashes(self) -> bool:
        """Whether the bundle carries each sample's file SHA-256 (tensor ``file_sha256``)."""
        return (
            self.data is not None
            and self.data.content_sha256 is not None
            and self.data.content_hash == "per-file"
        )

    def tensor_specs(self) -> list[TensorSpec]:
        n, k = self.n_samples, self.k
        specs = [
            TensorSpec(name="z", dtype="F32", shape=(n, k)),
            TensorSpec(name="ids", dtype="I64", shape=(n,)),
        ]
        specs += [
            TensorSpec(name=f"labels.{name}", dtype="I64", shape=(n,)) for name in self.label_names
        ]
        if self.per_file_hashes:
            specs.append(TensorSpec(name="file_sha256", dtype="U8", shape=(n, 32)))
        if self.certified:
            specs += [
                TensorSpec(name="z_cs", dtype="F32", shape=(n, k)),
                TensorSpec(name="r_cs", dtype="F32", shape=(n,)),
                TensorSpec(name="status", dtype="U8", shape=(n,)),
                TensorSpec(name="center_shift", dtype="F32", shape=(n,)),
                TensorSpec(name="seconds", dtype="F32", shape=(n,)),
            ]
        if self.endpoints:
            e = self.endpoints
            specs += [
                TensorSpec(name="endpoint_z_cs", dtype="F32", shape=(n, e, k)),
                TensorSpec(name="endpoint_status", dtype="U8", shape=(n, e)),
            ]
        return specs

    def check_values(self, tensors: dict[str, Any]) -> str | None:
        ids = tensors["ids"]
        if (ids < 0).any():
            return "tensor 'ids' has negative sample ids"
        if len(set(ids.tolist())) != len(ids):
            return "tensor 'ids' has repeated sample ids"
        for name, classes in self.label_classes.items():
            y = tensors[f"labels.{name}"]
            if ((y < 0) | (y >= classes)).any():
                return f"tensor 'labels.{name}' has labels outside [0, {classes})"
        if self.per_file_hashes and self.data is not None and self.file_names is not None:
            from lassi.spec.contract.data_identity import file_list_sha256

            found = file_list_sha256(ids.tolist(), self.file_names, tensors["file_sha256"])
            if found != self.data.content_sha256:
                return "tensor 'file_sha256' does not hash to the recorded data content_sha256"
        if self.certified:
            if (tensors["r_cs"] < 0).any():
                return "tensor 'r_cs' has negative radii"
            if (tensors["status"] > max(CenterStatus)).any():
                return "tensor 'status' has unknown status codes"
            if (tensors["seconds"] < 0).any() or (tensors["center_shift"] < 0).any():
                return "tensors 'seconds'/'center_shift' have negative values"
        if self.endpoints and (tensors["endpoint_status"] > max(CenterStatus)).any():
            return "tensor 'endpoint_status' has unknown status codes"
        return None


# --------------------------------------------------------------------------- consumer


class ClassifierTraining(Model):
    """``epochs``: epochs trained; ``max_epochs``: the cap (the automatic one when training to
    convergence); ``best_epoch``: the epoch whose weights were kept after early stopping (None:
    the last); ``majority_rate``: the accuracy of always predicting the most frequent class on
    the held-out validation labels (absent in older cards)."""

    epochs: int = Field(ge=1)
    max_epochs: int | None = Field(None, ge=1)
    best_epoch: int | None = Field(None, ge=1)
    majority_rate: float | None = Field(None, ge=0, le=1)
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
    (``lassi.consumer.randomized_smoothing``), stopping at most at n draws; False (the default,
    and what older files mean) is CERTIFY with exactly n estimation draws.
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
    certificate: CertificateParams
    summary: ReportSummary
    file_names: list[str] | None = Field(
        None, description="image file name (or CSV key) of each sample, from the bundle"
    )
    scale: RepresentationScale | None = None
    scope: CertificateScope | None = Field(None, description="absent in older reports")
    warnings: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="why little or nothing certified, in numbers, and what to change",
    )
    endpoint_check: EndpointCheck | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _endpoint_counts(self) -> VerificationReport:
        check = self.endpoint_check
        if check is not None and max(check.empirically_fair, check.certified_empirically_unfair) > self.n_samples:
            raise ValueError("endpoint counts exceed the samples")
        return self

    def tensor_specs(self) -> list[TensorSpec]:
        """``draws`` (optional, absent in older files): classifier draws per sample, n0 + the
        estimation draws actually used (0 where center smoothing abstained). ``cause``
        (optional): the :class:`ReportCause` of each sample."""
        n = self.n_samples
        specs = [
            TensorSpec(name="ids", dtype="I64", shape=(n,)),
            TensorSpec(name="prediction", dtype="I64", shape=(n,)),
            TensorSpec(name="radius", dtype="F32", shape=(n,)),
            TensorSpec(name="r_cs", dtype="F32", shape=(n,)),
            TensorSpec(name="status", dtype="U8", shape=(n,)),
            TensorSpec(name="draws", dtype="I64", shape=(n,), required=False),
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
        if "draws" in tensors and (tensors["draws"] < 0).any():
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


# --------------------------------------------------------------------------- training state


class Checkpoint(ArtifactBase):
    """Resumable state of a long-running step (model, optimiser, progress); local, not shared."""

    kind: Literal["checkpoint"] = "checkpoint"
    stage: Name
    run_key: str = Field(description="hash of the arguments; a resume needs the same run_key")
    step: int = Field(ge=0)
    state: dict[str, Any] = Field(default_factory=dict)
    weight_prefixes: ClassVar[tuple[str, ...]] = ("model.", "optim.", "rng.", "extra.")


# --------------------------------------------------------------------------- ONNX model cards


class OnnxCard(BaseModel):
    """The provenance card an exported ONNX graph carries (``metadata_props["lassi"]``).

    Typed and bounded so that a hostile card cannot steer allocations (a class count of 10**9)
    or smuggle non-hash parents; fields this version does not know are ignored, not trusted.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Name | None = None
    parents: dict[Name, Sha256] = Field(default_factory=dict, max_length=16)
    k: int | None = Field(None, ge=1, le=65536)
    latent_dim: int | None = Field(None, ge=1, le=3 * 1024 * 1024)
    m: int | None = Field(None, ge=1, le=MAX_VECTORS)
    num_classes: int | None = Field(None, ge=2, le=MAX_CLASSES)
    sigma_cls: PositiveFloat | None = None
    task: Name | None = None
    architecture: Name | None = None


ARTIFACT_KINDS: dict[str, type[ArtifactBase]] = {
    model.model_fields["kind"].default: model
    for model in (
        GlowArtifact,
        SimilaritySpec,
        EncoderCard,
        RepresentationBundle,
        ClassifierCard,
        VerificationReport,
        Checkpoint,
    )
}
