"""The producer's artifacts: the fair encoder's card (paper Sec. 4.2) and the representation
bundles it encodes, center-smoothed in a certified bundle (Sec. 4.3)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from lassi.spec.contract.architecture import check_encoder
from lassi.spec.contract.models.base import (
    MAX_CLASSES,
    MAX_HIDDEN_LAYERS,
    MAX_HIDDEN_WIDTH,
    MAX_VECTORS,
    ArtifactBase,
    Model,
    Name,
    PositiveFloat,
    Sha256,
    TensorSpec,
)
from lassi.spec.contract.models.certificate import CenterSmoothingParams, CenterStatus
from lassi.spec.contract.models.regulator import RecordedData


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


class EncoderArchitecture(Model):
    """The architecture of the producer's encoder E_L, as trained and as its card records it:
    ``latent_mlp`` (an MLP on the flattened Glow latent, ``hidden`` widths, then k) or
    ``image_resnet18`` (a ResNet-18 of base ``width`` on the decoded image, then k)."""

    architecture: Literal["latent_mlp", "image_resnet18"] = "latent_mlp"
    hidden: list[Annotated[int, Field(ge=1, le=MAX_HIDDEN_WIDTH)]] = Field(
        default_factory=lambda: [2048, 1024], max_length=MAX_HIDDEN_LAYERS
    )
    width: int = Field(64, ge=1, le=MAX_HIDDEN_WIDTH)
    k: int = Field(512, ge=1, le=65536)

    def encoder_architecture(self) -> EncoderArchitecture:
        """The architecture fields alone (of a card or a training configuration)."""
        return EncoderArchitecture(**{name: getattr(self, name) for name in EncoderArchitecture.model_fields})


class EncoderCard(EncoderArchitecture, ArtifactBase):
    """The producer's fair encoder E_L (and its auxiliary head)."""

    kind: Literal["encoder"] = "encoder"
    input_dim: int = Field(ge=1, le=3 * 1024 * 1024)
    task: Name
    num_classes: int = Field(ge=2, le=MAX_CLASSES)
    loss: LossWeights
    training: EncoderTraining
    data: RecordedData
    weight_prefixes: ClassVar[tuple[str, ...]] = ("encoder.", "aux.", "decoder.")

    def check_architecture(self, shapes: dict[str, list[int]]) -> str | None:
        return check_encoder(self, shapes)


class RepresentationBundle(ArtifactBase):
    """Representations z = E_L(E_G(x)) of one data split; certified bundles add z_CS and r_CS."""

    kind: Literal["representations"] = "representations"
    split: Name
    n_samples: int = Field(ge=0)
    k: int = Field(ge=1, le=65536)
    label_names: list[Name] = Field(default_factory=list)
    label_classes: dict[str, int] = Field(default_factory=dict)
    certified: bool = False
    certificate: CenterSmoothingParams | None = None
    attributes: list[Name] = Field(default_factory=list)
    data: RecordedData | None = None
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
        if self.certificate is not None and not self.certificate.is_issued:
            raise ValueError("a certificate records its seed and the dimension m of its t-noise")
        if set(self.label_names) != set(self.label_classes):
            raise ValueError("label_names and label_classes name different labels")
        if any(c < 1 for c in self.label_classes.values()):
            raise ValueError("label_classes must be positive")
        return self

    @property
    def per_file_hashes(self) -> bool:
        """Whether the bundle carries each sample's file SHA-256 (tensor ``file_sha256``)."""
        return self.data is not None and self.data.content_hash == "per-file"

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


