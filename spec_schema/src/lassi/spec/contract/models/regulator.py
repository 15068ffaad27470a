"""The regulator's artifacts: the Glow flow and the similarity spec (paper Sec. 4.1), with the
provenance of the data they were computed from and the certification policy (Sec. 4.3)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from lassi.spec.contract.architecture import check_glow
from lassi.spec.contract.data_identity import RENDERER_OPTION
from lassi.spec.contract.models.base import (
    MAX_CLASSES,
    MAX_VECTORS,
    ArtifactBase,
    FiniteFloat,
    Model,
    Name,
    PositiveFloat,
    Probability,
    Sha256,
    TensorSpec,
)
from lassi.spec.contract.models.certificate import CenterSmoothingParams


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
    split: str = "train"
    n_samples: int = Field(ge=0)
    seed: int = Field(0, ge=0)
    options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    content_sha256: Sha256 | None = Field(
        None,
        description="files on disk (celeba, folder, fairface) and 3dshapes.h5: the samples' "
        "data identity (lassi.spec.contract.data_identity), taken from the bytes the artifact "
        "was computed from; absent for rendered 3D Shapes (its renderer and factors are the "
        "content)",
    )
    content_hash: Literal["per-file", "rows"] | None = Field(
        None,
        description="how content_sha256 is computed, present exactly when it is: 'per-file' "
        "(image files), SHA-256 over each sample's length-prefixed relative file name and the "
        "SHA-256 of its file, in id order (a bundle carries the per-file hashes as tensor "
        "'file_sha256'); 'rows' (shapes3d-h5), SHA-256 over the sample count (8 bytes, little "
        "endian) and the stored uint8 image rows of the samples, in id order",
    )

    @field_validator("content_hash", mode="before")
    @classmethod
    def _no_stream(cls, value: object) -> object:
        if value == "stream":
            raise ValueError(
                "'stream' (one hash over all files, written by lassi before per-file hashes) is "
                "no longer read: compute the file again with this lassi"
            )
        return value

    @model_validator(mode="after")
    def _hash_described(self) -> DataProvenance:
        if (self.content_sha256 is None) != (self.content_hash is None):
            raise ValueError(
                f"content_hash '{self.content_hash}' without a content_sha256"
                if self.content_sha256 is None
                else "content_sha256 without content_hash (how it was computed)"
            )
        expected = CONTENT_HASH_OF.get(self.dataset)
        if self.content_hash is not None and self.content_hash != expected:
            raise ValueError(
                f"content_hash '{self.content_hash}' does not identify {self.dataset} data"
                + (f" (its kind is '{expected}')" if expected else " (it records none)")
            )
        return self

    def with_content(self, content_sha256: str | None) -> DataProvenance:
        """This provenance with the samples' ``content_sha256`` of its data set's kind (None:
        rendered data, no hash), validated."""
        return DataProvenance.model_validate(
            {
                **self.model_dump(),
                "content_sha256": content_sha256,
                "content_hash": None if content_sha256 is None else CONTENT_HASH_OF.get(self.dataset),
            }
        )

    def describe(self) -> str:
        """One line: the data set, split, size and seed, and the content hash when recorded."""
        line = f"{self.dataset} {self.split} split, {self.n_samples} samples, seed {self.seed}"
        if self.content_sha256 is not None:
            return line + f", content sha256 {self.content_sha256} ({self.content_hash})"
        if self.dataset in IMAGE_FILE_DATASETS:
            return line + ", no content hash recorded (its images cannot be checked)"
        if self.dataset == "shapes3d-h5":
            return line + ", no content hash recorded (its images cannot be checked)"
        return line + " (3D Shapes rendered here: its renderer and factors are the content)"


IMAGE_FILE_DATASETS = ("celeba", "folder", "fairface")
"""Data sets whose samples are image files, identified by their per-file content hash."""

CONTENT_HASH_OF = {name: "per-file" for name in IMAGE_FILE_DATASETS} | {"shapes3d-h5": "rows"}
"""How each data set's ``content_sha256`` is computed (rendered 3D Shapes records none)."""


def _content_recorded(data: DataProvenance) -> DataProvenance:
    if data.dataset == "shapes3d":  # rendered: the renderer's identity is the content's
        renderer = data.options.get(RENDERER_OPTION)
        if not (isinstance(renderer, str) and len(renderer) == 64 and set(renderer) <= set("0123456789abcdef")):
            raise ValueError(
                f"records no {RENDERER_OPTION} (a SHA-256 in hex) of the renderer its 3D Shapes "
                "images were rendered with, so they cannot be checked: compute the file again "
                "with this lassi"
            )
    if data.content_sha256 is None and data.dataset in CONTENT_HASH_OF:
        raise ValueError(
            f"records no content_sha256 of its {data.dataset} images, so they cannot be checked "
            "(every artifact computed from stored images records one): compute the file again "
            "with this lassi"
        )
    return data


RecordedData = Annotated[DataProvenance, AfterValidator(_content_recorded)]
"""An artifact's data: stored images (files, a 3dshapes.h5) always with their content hash,
rendered 3D Shapes with its renderer's identity."""


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
    data: RecordedData | None = None
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


def own_vector_names(name: str, vectors: str, num_values: int) -> list[str]:
    """The names of an attribute's own vectors (before any conditional ones): ``name`` for its
    one halves vector; ``<name>_<b>_<e>`` for each pair (b, e) of a low value b < num_values // 2
    and a high value e >= num_values // 2 + num_values % 2 (the middle value of an odd count in
    neither), b outer, e inner."""
    if vectors == "halves":
        return [name]
    half = num_values // 2
    if half * half > MAX_VECTORS:
        raise ValueError(f"attribute {name}: {num_values} values give over {MAX_VECTORS} pair vectors")
    return [f"{name}_{b}_{e}" for b in range(half) for e in range(half + num_values % 2, num_values)]


class AttributeInfo(Model):
    """One sensitive attribute and how its vectors were computed (average_diff, paper Sec. 4.1).

    ``vectors = "halves"``: one vector, mean latent of the high half of the values minus that of
    the low half (a binary attribute: label 1 minus label 0). ``vectors = "pairs"`` (a
    multi-valued attribute, as in the authors' code for 3D Shapes): one vector per pair (b, e)
    of values with b below and e above the middle value, a_{b,e} = mean E_G(x | v = e) − mean
    E_G(x | v = b); 3D Shapes orientation gives 7 × 7 = 49, named ``orientation_<b>_<e>``.
    ``vector_names`` names every vector, one per row of the spec's tensor (a halves vector is
    named after the attribute).

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
        min_length=1,
        max_length=MAX_VECTORS,
        description="one name per vector, e.g. orientation_3_11 (a halves vector: the attribute's name)",
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
        if len(set(self.vector_names)) != len(self.vector_names):
            raise ValueError(f"attribute {self.name}: vector names repeat")
        if self.value_counts and len(self.value_counts) != self.num_values:
            raise ValueError(f"attribute {self.name}: value_counts needs one entry per value")
        if (self.given is None) != (not self.given_counts):
            raise ValueError(f"attribute {self.name}: given and given_counts come together")
        groups: list[str] = []
        if self.given is not None:
            if self.given == self.name:
                raise ValueError(f"attribute {self.name}: cannot be conditioned on itself")
            if len(self.given_counts) < 2 or min(self.given_counts) < 2:
                raise ValueError(
                    f"attribute {self.name}: given_counts needs >= 2 groups of >= 2 images"
                )
            groups = conditional_names(self.name, self.given, len(self.given_counts))
        own = self.vector_names[: len(self.vector_names) - len(groups)]
        if self.vector_names[len(own) :] != groups or not own:
            raise ValueError(
                f"attribute {self.name}: vector_names must be its own vectors, then "
                f"{groups[0]} .. {groups[-1]}"
            )
        expected = own_vector_names(self.name, self.vectors, self.num_values)
        if own != expected:
            raise ValueError(
                f"attribute {self.name}: its {self.vectors} vectors are named "
                + (expected[0] if len(expected) == 1 else f"{expected[0]} .. {expected[-1]}, in order")
            )
        return self

    @property
    def given_values(self) -> int:
        """How many conditional vectors follow the attribute's own (0 without ``given``)."""
        return len(self.given_counts)

    @property
    def names(self) -> list[str]:
        """The names of this attribute's vectors, in the order of the spec's tensor."""
        return list(self.vector_names)


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

    def violation(self, c: CenterSmoothingParams) -> str | None:
        """What the certificate breaks, or None."""
        if self.max_alpha is not None and c.alpha1 + c.alpha2 > self.max_alpha:
            return f"alpha1 + alpha2 = {c.alpha1 + c.alpha2:g} exceeds {self.max_alpha:g}"
        if self.sigma_enc_min is not None and c.sigma < self.sigma_enc_min:
            return f"sigma_enc = {c.sigma:g} is below {self.sigma_enc_min:g}"
        if self.sigma_enc_max is not None and c.sigma > self.sigma_enc_max:
            return f"sigma_enc = {c.sigma:g} exceeds {self.sigma_enc_max:g}"
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
    attributes, then the task); ``validation``: the images their epochs were chosen on (the val
    split of the spec's data, with their content hash for images on disk)."""

    name: Literal["perpendicular", "ramaswamy", "discover"]
    normalized: bool
    task: Name | None = None
    epochs: int = Field(ge=1)
    lr: PositiveFloat
    batch_size: int = Field(ge=1)
    seed: int = Field(ge=0)
    boundaries: list[LinearBoundary] = Field(min_length=1, max_length=17)
    discover: DiscoverSettings | None = None
    validation: RecordedData

    @model_validator(mode="after")
    def _settings(self) -> AttributeMethod:
        if self.name in ("ramaswamy", "discover") and self.task is None:
            raise ValueError(f"method {self.name} needs the task it was computed against")
        if self.task is not None and self.boundaries[-1].attribute != self.task:
            raise ValueError("the task's boundary must come last")
        if (self.name == "discover") != (self.discover is not None):
            raise ValueError("discover settings come with method discover only")
        if self.validation.split != "val":
            raise ValueError("the method's validation images are the val split")
        return self


class SimilaritySpec(ArtifactBase):
    """Who counts as similar: S(x) = {D_G(E_G(x) + sum_i t_i a_i) : ||t||_2 <= epsilon}."""

    kind: Literal["similarity_spec"] = "similarity_spec"
    flow: GlowConfig
    preprocessing: Preprocessing
    data: RecordedData
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
        if self.method is not None:
            val, data = self.method.validation, self.data
            if (val.dataset, val.seed, val.options) != (data.dataset, data.seed, data.options):
                raise ValueError("the method's validation images are not of the spec's data")
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


