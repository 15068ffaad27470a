"""lassi.spec: what the regulator, the producer and the consumer share.

Two subpackages: ``lassi.spec.contract``, the files the roles hand each other (artifact models,
reading and writing, signatures, the binding of a certificate to its spec), and
``lassi.spec.runtime``, the code more than one role must run identically (center smoothing, which
the producer certifies with and the auditor replays; the per-sample loop, seeds, executors,
devices; the CLI frame). The names below are the public API of both.
"""

from typing import TYPE_CHECKING

from lassi.spec.contract.errors import (
    EXIT_CODES,
    IntegrityError,
    InvalidArtifactError,
    LassiError,
    SignatureError,
    UsageError,
)
from lassi.spec.contract.io import (
    Artifact,
    atomic_path,
    atomic_write_bytes,
    check_parents,
    describe,
    read_artifact,
    sha256_file,
    write_artifact,
)
from lassi.spec.contract.models import (
    ARTIFACT_KINDS,
    SCHEMA_VERSION,
    ArtifactBase,
    AttackSet,
    AttributeInfo,
    CenterSmoothingParams,
    CenterStatus,
    CertificateScope,
    Checkpoint,
    ClassifierCard,
    ClassifierTraining,
    Coverage,
    DataProvenance,
    EncoderArchitecture,
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
from lassi.spec.runtime.lazy import lazy_exports

__version__ = "0.1.0"

# More of the public API, imported on first use (signatures need cryptography, which a reader of
# artifacts does not): read a spec's header without its tensors, sign and check a file.
_LAZY = {
    "read_spec_header": "lassi.spec.contract.binding",
    "generate_keypair": "lassi.spec.contract.signing",
    "sign_file": "lassi.spec.contract.signing",
    "verify_file": "lassi.spec.contract.signing",
}

if TYPE_CHECKING:
    from lassi.spec.contract.binding import read_spec_header
    from lassi.spec.contract.signing import generate_keypair, sign_file, verify_file

__all__ = [
    "ARTIFACT_KINDS",
    "EXIT_CODES",
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactBase",
    "AttackSet",
    "AttributeInfo",
    "CenterSmoothingParams",
    "CenterStatus",
    "CertificateScope",
    "Checkpoint",
    "ClassifierCard",
    "ClassifierTraining",
    "DataProvenance",
    "EncoderArchitecture",
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
    "generate_keypair",
    "sign_file",
    "verify_file",
]


__getattr__ = lazy_exports(__name__, _LAZY)
