"""lassi.spec: the artifact contract shared by the regulator, the producer and the consumer."""

from typing import TYPE_CHECKING

from lassi.spec.errors import (
    EXIT_CODES,
    IntegrityError,
    InvalidArtifactError,
    LassiError,
    SignatureError,
    UsageError,
)
from lassi.spec.io import (
    Artifact,
    atomic_path,
    atomic_write_bytes,
    check_parents,
    describe,
    read_artifact,
    sha256_file,
    write_artifact,
)
from lassi.spec.lazy import lazy_exports
from lassi.spec.models import (
    ARTIFACT_KINDS,
    SCHEMA_VERSION,
    ArtifactBase,
    AttackSet,
    AttributeInfo,
    CenterStatus,
    CertificateParams,
    CertificateScope,
    Checkpoint,
    ClassifierCard,
    ClassifierTraining,
    Coverage,
    DataProvenance,
    EncoderCard,
    EncoderTraining,
    Fidelity,
    GlowArtifact,
    GlowConfig,
    GlowTraining,
    LossWeights,
    Preprocessing,
    ReportStatus,
    ReportSummary,
    RepresentationBundle,
    SimilaritySpec,
    SmoothingParams,
    VerificationReport,
)

__version__ = "0.1.0"

# More of the public API, imported on first use (center smoothing needs torch, signatures
# cryptography; a reader of artifacts needs neither): read a spec's header without its tensors,
# center smoothing's parameters, sign and check a file.
_LAZY = {
    "read_spec_header": "lassi.spec.binding",
    "CenterSmoothingParams": "lassi.spec.center_smoothing",
    "generate_keypair": "lassi.spec.signing",
    "sign_file": "lassi.spec.signing",
    "verify_file": "lassi.spec.signing",
}

if TYPE_CHECKING:
    from lassi.spec.binding import read_spec_header
    from lassi.spec.center_smoothing import CenterSmoothingParams
    from lassi.spec.signing import generate_keypair, sign_file, verify_file

__all__ = [
    "ARTIFACT_KINDS",
    "EXIT_CODES",
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactBase",
    "AttackSet",
    "AttributeInfo",
    "CenterStatus",
    "CertificateParams",
    "CertificateScope",
    "Checkpoint",
    "ClassifierCard",
    "ClassifierTraining",
    "DataProvenance",
    "EncoderCard",
    "EncoderTraining",
    "Coverage",
    "Fidelity",
    "GlowArtifact",
    "GlowConfig",
    "GlowTraining",
    "IntegrityError",
    "InvalidArtifactError",
    "LassiError",
    "LossWeights",
    "Preprocessing",
    "ReportStatus",
    "ReportSummary",
    "RepresentationBundle",
    "SignatureError",
    "SimilaritySpec",
    "SmoothingParams",
    "UsageError",
    "VerificationReport",
    "atomic_path",
    "atomic_write_bytes",
    "check_parents",
    "describe",
    "read_artifact",
    "sha256_file",
    "write_artifact",
    "read_spec_header",
    "CenterSmoothingParams",
    "generate_keypair",
    "sign_file",
    "verify_file",
]


__getattr__ = lazy_exports(__name__, _LAZY)
