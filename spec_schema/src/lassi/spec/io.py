"""Reading and writing artifacts: one ``.safetensors`` file each, validated on the way in.

Format: safetensors (8-byte little-endian header length, a JSON header, the raw tensor bytes).
The artifact metadata lives as JSON under ``__metadata__["lassi"]``. Files come from other
organisations, so ``read_artifact`` trusts nothing: the header is parsed and bounded before any
tensor is touched, offsets must tile the data section exactly, dtypes and shapes must be those
the kind declares, float tensors must be finite, and parent hashes must match when given.
Writes are atomic: a temporary file in the destination folder, fsync, rename.

Why one long module: every check a received artifact goes through happens here, in the
order it is applied, so that no reader can skip one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from pydantic import ValidationError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from lassi.spec.errors import IntegrityError, InvalidArtifactError, printable, validation_message
from lassi.spec.files import forget, read_file
from lassi.spec.models import (
    ARTIFACT_KINDS,
    FLOAT_DTYPES,
    INT_DTYPES,
    SCHEMA_VERSION,
    ArtifactBase,
)

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ARTIFACT_BYTES = int(os.environ.get("LASSI_MAX_ARTIFACT_BYTES", 8 * 1024**3))
METADATA_KEY = "lassi"
CHECKSUM_KEY = "lassi.content_sha256"
_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_NUMPY_DTYPE = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}

M = TypeVar("M", bound=ArtifactBase)


@dataclass(frozen=True)
class Artifact(Generic[M]):
    """A validated artifact: its metadata model, its tensors, where it came from."""

    meta: M
    tensors: dict[str, np.ndarray]
    sha256: str
    path: Path

    def weights(self, prefix: str) -> dict[str, np.ndarray]:
        """The tensors of one weight group, with the prefix removed (a module state dict)."""
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------- hashing / atomic


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, limit: int | None = None) -> str:
    """SHA-256 of a regular file, read once (the same bytes a later parse sees, see files.py)."""
    return sha256_bytes(read_file(path, MAX_ARTIFACT_BYTES if limit is None else limit))


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _DuplicateKey(f"{name} is not a JSON number")


def strict_json(text: str | bytes, where: str | Path, what: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, duplicate keys and runaway nesting (exit 3)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InvalidArtifactError(where, f"{what} is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise InvalidArtifactError(where, f"{what} is not valid JSON ({error.msg})") from None
    except _DuplicateKey as error:
        raise InvalidArtifactError(where, f"{what} is not strict JSON ({error})") from None
    except RecursionError:
        raise InvalidArtifactError(where, f"{what} is nested too deeply") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    If the body raises (or the process dies), nothing appears at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)  # mkstemp makes 0600 files; an artifact gets the usual 0666 & ~umask
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        forget(path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def content_digest(metadata_json: str, tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the metadata JSON and every tensor (name, dtype, shape, bytes), by name.

    Stored beside the metadata, it makes any modified byte of a file detectable, including
    ones that would leave a perfectly plausible float behind.
    """
    digest = hashlib.sha256(metadata_json.encode("utf-8"))
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        array = array if array.flags.c_contiguous else array.copy(order="C")
        digest.update(f"\0{name}\0{_dtype_name(array)}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- validation


def _dtype_name(array: np.ndarray) -> str:
    try:
        return _NUMPY_DTYPE[array.dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {array.dtype}") from None


def _check_tensors(
    meta: ArtifactBase, tensors: Mapping[str, np.ndarray], where: str | Path
) -> None:
    """Required tensors present with declared dtype/shape, no strangers, floats finite."""
    declared = {spec.name: spec for spec in meta.tensor_specs()}
    for spec in declared.values():
        if spec.name not in tensors:
            if spec.required:
                raise InvalidArtifactError(where, f"required tensor '{spec.name}' is missing")
            continue
        array = tensors[spec.name]
        dtype = _dtype_name(array)
        if dtype != spec.dtype:
            raise InvalidArtifactError(
                where, f"tensor '{spec.name}' has dtype {dtype}, expected {spec.dtype}"
            )
        shape = tuple(array.shape)
        if len(shape) != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, shape, strict=False)
        ):
            want_s = tuple("*" if s is None else s for s in spec.shape)
            raise InvalidArtifactError(
                where, f"tensor '{spec.name}' has shape {list(shape)}, expected {list(want_s)}"
            )
    for name, array in tensors.items():
        if name not in declared:
            if not any(name.startswith(p) for p in meta.weight_prefixes):
                raise InvalidArtifactError(
                    where, f"unexpected tensor '{name}' for kind {meta.kind}"
                )
            if array.dtype.kind == "f" and _dtype_name(array) not in FLOAT_DTYPES:
                raise InvalidArtifactError(where, f"tensor '{name}' has an unsupported dtype")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidArtifactError(where, f"tensor '{name}' contains NaN or Inf")
    problem = meta.check_values(dict(tensors))
    if problem:
        raise InvalidArtifactError(where, problem)


def parse_metadata(raw: Any, where: str | Path, expect: type[M] | None = None) -> M:
    """Validate the ``lassi`` metadata JSON object into its kind's model."""
    if not isinstance(raw, dict):
        raise InvalidArtifactError(where, "lassi metadata is not a JSON object")
    kind = raw.get("kind")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidArtifactError(where, f"schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise InvalidArtifactError(
            where, f"schema_version {version} is newer than this tool supports ({SCHEMA_VERSION})"
        )
    if kind not in ARTIFACT_KINDS:
        raise InvalidArtifactError(where, f"unknown artifact kind {kind!r}")
    model = ARTIFACT_KINDS[kind]
    if expect is not None and model is not expect:
        want = expect.model_fields["kind"].default
        raise InvalidArtifactError(where, f"is a {kind} artifact, expected {want}")
    try:
        # strict: a JSON string is no bool or number ("yes" is not true), datetimes stay ISO text
        return model.model_validate_json(json.dumps(raw), strict=True)  # type: ignore[return-value]
    except ValidationError as error:
        raise InvalidArtifactError(where, validation_message(error, "metadata field")) from None


def parse_header(data: bytes, where: str | Path) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and bound-check a safetensors header; return (tensor entries, metadata, data start).

    The tensors' byte ranges must be well-formed, in range, non-overlapping and must tile the
    data section exactly; sizes must agree with dtype and shape.
    """
    if len(data) < 8:
        raise InvalidArtifactError(where, f"file is truncated ({len(data)} bytes, no header)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES:
        raise InvalidArtifactError(where, f"header length {header_len} exceeds the limit")
    if 8 + header_len > len(data):
        raise InvalidArtifactError(
            where, f"header claims {header_len} bytes but the file has only {len(data) - 8}"
        )
    try:
        text = data[8 : 8 + header_len].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArtifactError(where, "header is not valid UTF-8") from None
    header = strict_json(text, where, "header")
    if not isinstance(header, dict):
        raise InvalidArtifactError(where, "header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        raise InvalidArtifactError(where, "not a lassi artifact (no __metadata__ in the header)")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidArtifactError(where, "__metadata__ must map strings to strings")
    data_len = len(data) - 8 - header_len
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise InvalidArtifactError(where, f"tensor '{name}' has a malformed header entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ITEMSIZE:
            allowed = ", ".join(FLOAT_DTYPES + INT_DTYPES)
            raise InvalidArtifactError(
                where, f"tensor '{name}' has dtype {dtype!r} (allowed: {allowed})"
            )
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise InvalidArtifactError(where, f"tensor '{name}' has a malformed shape {shape!r}")
        if len(shape) > 8:
            raise InvalidArtifactError(where, f"tensor '{name}' has {len(shape)} dimensions")
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        if nbytes > data_len:
            raise InvalidArtifactError(
                where,
                f"tensor '{name}' with shape {shape} needs {nbytes} bytes, file has {data_len}",
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise InvalidArtifactError(where, f"tensor '{name}' has malformed data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise InvalidArtifactError(
                where,
                f"tensor '{name}' offsets [{begin}, {end}] are outside the data ({data_len} bytes)",
            )
        if end - begin != nbytes:
            raise InvalidArtifactError(
                where, f"tensor '{name}' occupies {end - begin} bytes but dtype/shape need {nbytes}"
            )
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            problem = "overlaps another tensor" if begin < position else "leaves a gap before it"
            raise InvalidArtifactError(where, f"tensor '{name}' {problem}")
        position = end
    if position != data_len:
        raise InvalidArtifactError(
            where, f"data section has {data_len} bytes but the tensors cover {position}"
        )
    return header, metadata, 8 + header_len


# --------------------------------------------------------------------------- public API


def write_artifact(path: str | Path, meta: ArtifactBase, tensors: Mapping[str, Any]) -> str:
    """Validate ``meta`` against ``tensors`` and write them atomically; return the SHA-256."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if hasattr(value, "detach"):  # a torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        array = np.asarray(value)  # (np.ascontiguousarray would turn 0-d arrays into 1-d)
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
    meta = type(meta).model_validate(meta.model_dump())  # re-validate (catches post-hoc edits)
    _check_tensors(meta, arrays, path)
    meta_json = meta.model_dump_json()
    checksum = content_digest(meta_json, arrays)
    blob = st_save(arrays, metadata={METADATA_KEY: meta_json, CHECKSUM_KEY: checksum})
    atomic_write_bytes(path, blob)
    return sha256_bytes(blob)


def _resolve_parent(value: str | Path | Artifact) -> tuple[str, str]:
    """A parent given as a hash, a file path or a read artifact -> (sha256, description)."""
    if isinstance(value, Artifact):
        return value.sha256, str(value.path)
    text = str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text, "the given hash"
    return sha256_file(text), text


def check_parents(artifact: Artifact, parents: Mapping[str, str | Path | Artifact]) -> None:
    """Raise IntegrityError unless the artifact records each given parent's hash."""
    for kind, value in parents.items():
        expected, description = _resolve_parent(value)
        recorded = artifact.meta.parents.get(kind)
        if recorded is None:
            raise IntegrityError(
                artifact.path, f"records no {kind} parent, cannot check {description}"
            )
        if recorded != expected:
            raise IntegrityError(
                artifact.path,
                f"was made from {kind} sha256 {recorded[:12]}…, not from {description} "
                f"(sha256 {expected[:12]}…)",
            )


def read_artifact(
    path: str | Path,
    expect: type[M] | None = None,
    parents: Mapping[str, str | Path | Artifact] | None = None,
) -> Artifact[M]:
    """Read and fully validate an artifact (see the module docstring for what is checked)."""
    path = Path(path)
    data = read_file(path, MAX_ARTIFACT_BYTES, "an artifact file")
    header, metadata, _ = parse_header(data, path)
    if METADATA_KEY not in metadata:
        raise InvalidArtifactError(path, "not a lassi artifact (no 'lassi' metadata entry)")
    raw = strict_json(metadata[METADATA_KEY], path, "lassi metadata")
    meta = parse_metadata(raw, path, expect)
    problem = meta.check_architecture({name: entry["shape"] for name, entry in header.items()})
    if problem:  # before any tensor is loaded or model built (lassi.spec.architecture)
        raise InvalidArtifactError(path, problem)
    try:
        tensors = st_load(data)
    except Exception as error:  # safetensors re-validates; any complaint means a bad file
        raise InvalidArtifactError(path, f"safetensors rejects the file ({error})") from None
    if metadata.get(CHECKSUM_KEY) != content_digest(metadata[METADATA_KEY], tensors):
        raise IntegrityError(path, "content does not match its checksum (modified or corrupted)")
    _check_tensors(meta, tensors, path)
    artifact = Artifact(meta=meta, tensors=tensors, sha256=sha256_bytes(data), path=path)
    if parents:
        check_parents(artifact, parents)
    return artifact


def describe(artifact: Artifact) -> str:
    """Human-readable summary: kind, metadata, and a table of tensors (``inspect``)."""
    meta = artifact.meta
    lines = [
        f"file:    {printable(artifact.path)}",
        f"kind:    {meta.kind} (schema_version {meta.schema_version})",
        f"sha256:  {artifact.sha256}",
        f"tool:    {printable(meta.tool)}",
        f"created: {meta.created.isoformat()}",
    ]
    for kind, digest in meta.parents.items():
        lines.append(f"parent:  {printable(kind)} {digest}")
    body = meta.model_dump(
        mode="json", exclude={"kind", "schema_version", "tool", "created", "parents"}
    )
    lines.append("metadata:")
    lines += ["  " + line for line in json.dumps(body, indent=2).splitlines()]
    lines.append(f"tensors ({len(artifact.tensors)}):")
    width = max((len(n) for n in artifact.tensors), default=4)
    for name in sorted(artifact.tensors):
        array = artifact.tensors[name]
        lines.append(f"  {printable(name):<{width}}  {_dtype_name(array):<4}  {list(array.shape)}")
    return "\n".join(lines)
