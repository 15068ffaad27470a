"""Ed25519 signatures: how organisations hand artifacts over.

The sender signs a file with its private key, producing a detached ``FILE.sig``; the receiver runs
every command with ``--trusted-key SENDER.pub``, and an unsigned file, a modified file or a file
signed by any other key is refused (exit status 5). What is signed is the file's SHA-256, under a
domain-separation prefix, so the signature covers every byte of the artifact or ONNX graph.

Key files: private keys are PKCS#8 PEM (written with mode 0600), public keys SubjectPublicKeyInfo
PEM. A signature file is a small JSON object: algorithm, the file's SHA-256, the signer's key id
(SHA-256 of the raw public key, first 16 hex digits) and the base64 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from lassi.spec.contract.errors import InvalidArtifactError, SignatureError, UsageError
from lassi.spec.contract.files import read_file, stream_sha256
from lassi.spec.contract.io import MAX_ARTIFACT_BYTES, atomic_path
from lassi.spec.contract.onnx_check import MAX_ONNX_BYTES

DOMAIN = b"lassi-artifact-signature-v1\n"
MAX_SIGNATURE_BYTES = 4096
MAX_SIGNED_BYTES = max(MAX_ARTIFACT_BYTES, MAX_ONNX_BYTES)


def _small(path: Path, what: str) -> bytes:
    """A key or signature file: one bounded read of a regular file (exit 5 when too large)."""
    try:
        return read_file(path, MAX_SIGNATURE_BYTES, what)
    except InvalidArtifactError:
        raise SignatureError(path, f"{what} is larger than {MAX_SIGNATURE_BYTES} bytes") from None


def signature_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sig")


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key) -> str:
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair; return its key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    for existing, what in ((private_path, "a private key"), (public_path, "a public key")):
        if os.path.lexists(existing):
            raise UsageError(existing, f"exists already; refusing to overwrite {what}")
    if private_path.resolve() == public_path.resolve():
        raise UsageError(public_path, "is the private key's own path")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with atomic_path(private_path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(private_pem)
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(public_pem)
    return key_id(key.public_key())


def load_private_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        key = serialization.load_pem_private_key(_small(path, "a key file"), password=None)
    except (ValueError, TypeError):
        raise SignatureError(path, "is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(path, "is not an Ed25519 private key")
    return key


def load_public_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    try:
        key = serialization.load_pem_public_key(_small(path, "a key file"))
    except (ValueError, TypeError):
        raise SignatureError(path, "is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(path, "is not an Ed25519 public key")
    return key


def sign_file(path: str | Path, private_key_path: str | Path) -> Path:
    """Write the detached signature ``FILE.sig`` of ``path``; return its path."""
    path = Path(path)
    key = load_private_key(private_key_path)
    digest = stream_sha256(path, MAX_SIGNED_BYTES, "a file to sign")
    signature = key.sign(DOMAIN + digest.encode())
    record = {
        "algorithm": "ed25519",
        "sha256": digest,
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(signature).decode(),
    }
    out = signature_path(path)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return out


def verify_file(
    path: str | Path, trusted_keys: Iterable[str | Path], signer: str = "a trusted key"
) -> str:
    """Check ``FILE.sig`` against the trusted public keys; return the signer's key id.

    ``signer`` names whose signature is required, in the refusals (e.g. the regulator's key).

    Raises SignatureError when the file is unsigned, the signature is malformed, the file was
    changed after signing, or no trusted key made the signature. The file is streamed through
    the hash (see ``lassi.spec.contract.files``): inside ``pinned_reads()`` a later read by the command
    that finds other bytes is refused.
    """
    from cryptography.exceptions import InvalidSignature

    path = Path(path)
    keys = [load_public_key(k) for k in trusted_keys]
    actual = stream_sha256(path, MAX_SIGNED_BYTES, "a signed file")
    sig_path = signature_path(path)
    if not os.path.lexists(sig_path):
        raise SignatureError(
            path, f"is not signed (no {sig_path.name}) but {signer} is required"
        )
    raw = _small(sig_path, "a signature file")
    try:
        record = json.loads(raw)
        algorithm, digest = record["algorithm"], record["sha256"]
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise SignatureError(sig_path, "signature file is malformed") from None
    if algorithm != "ed25519" or not isinstance(digest, str):
        raise SignatureError(sig_path, f"unsupported signature algorithm {algorithm!r}")
    if actual != digest:
        raise SignatureError(
            path, "was modified after it was signed (hash differs from the signature's)"
        )
    for key in keys:
        try:
            key.verify(signature, DOMAIN + digest.encode())
        except InvalidSignature:
            continue
        return key_id(key)
    if signer == "a trusted key":
        raise SignatureError(path, "signature was not made by any trusted key")
    raise SignatureError(path, f"signature was not made by {signer}")


REGULATOR_KEY_OPTION = "--regulator-key"
TRUSTED_KEYS_ENV, REGULATOR_KEYS_ENV = "LASSI_TRUSTED_KEYS", "LASSI_REGULATOR_KEYS"
REGULATOR_SIGNER = f"the regulator's key ({REGULATOR_KEY_OPTION}, or a --trusted-key)"


def keys_from(option: Iterable[str | Path], env: str) -> list[Path]:
    """Key paths given by an option (repeatable) and by an environment variable (``:``-separated)."""
    return [Path(k) for k in option] + [Path(k) for k in os.environ.get(env, "").split(":") if k]


def verify_inputs(
    producer_files: Iterable[str | Path | None],
    regulator_files: Iterable[str | Path | None],
    trusted_keys: Iterable[str | Path],
    regulator_keys: Iterable[str | Path] = (),
) -> None:
    """The signatures a command checks before it runs, whenever keys are given.

    ``producer_files`` (another party's files: a bundle, an ONNX graph) must be signed by one of
    ``trusted_keys``. ``regulator_files`` (the similarity spec: the regulator is accountable for
    it too) must be signed by one of ``regulator_keys``, or, when none is given, by one of
    ``trusted_keys``: so with any key given, an unsigned spec, or one the regulator's key did not
    sign, is refused (SignatureError, exit 5). Without keys nothing is checked.
    """
    trusted, regulator = list(trusted_keys), list(regulator_keys)
    for path in producer_files:
        if path is not None and trusted:
            verify_file(path, trusted)
    for path in regulator_files:
        if path is not None and (trusted or regulator):
            verify_file(path, regulator or trusted, REGULATOR_SIGNER)
