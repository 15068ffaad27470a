"""What every artifact kind shares: the strict base model, the bounded field types, the limits on
sizes read from another party's metadata, the schema version and the tensors a kind declares.

Every artifact is one ``.safetensors`` file: its kind's metadata model, validated and stored as
JSON under ``__metadata__["lassi"]``, plus the tensors its ``tensor_specs`` declare. Every
artifact records the tool that wrote it, when, and the SHA-256 of each artifact it was made from
(``parents``), so a verification report traces back to the exact similarity spec.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# 2: center smoothing's parameters are one model (``CenterSmoothingParams``: ``sigma``, formerly
# ``sigma_enc``; ``m`` and ``seed`` required in certified files).
# 3: ``DataProvenance.content_hash`` is "per-file" exactly when ``content_sha256`` is recorded
# (null otherwise; "stream" refused); a similarity spec of images on disk records their
# ``content_sha256`` (a learned method's record, ``validation``, that of its val images); every
# ``AttributeInfo`` names each of its vectors (``vector_names``); 3dshapes.h5 data records its
# ``content_sha256`` over the samples' stored rows (``content_hash = "rows"``).
SCHEMA_VERSION = 3

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


class Checkpoint(ArtifactBase):
    """Resumable state of a long-running step (model, optimiser, progress); local, not shared."""

    kind: Literal["checkpoint"] = "checkpoint"
    stage: Name
    run_key: str = Field(description="hash of the arguments; a resume needs the same run_key")
    step: int = Field(ge=0)
    state: dict[str, Any] = Field(default_factory=dict)
    weight_prefixes: ClassVar[tuple[str, ...]] = ("model.", "optim.", "rng.", "extra.")


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
