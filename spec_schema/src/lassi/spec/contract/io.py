"""Reading and writing artifacts: one ``.safetensors`` file each, validated on the way in.

Format: safetensors (8-byte little-endian header length, a JSON header, the raw tensor bytes).
The artifact metadata lives as JSON under ``__metadata__["lassi"]``. Files come from other
organisations, so ``read_artifact`` trusts nothing and reads header first: the header alone is
read (bounded) and checked against the file's size, offsets must tile the data section exactly,
dtypes and shapes must be those the kind declares, the declared architecture must be the one
the weights' shapes back, all before any tensor byte is read. Only then are the tensors read,
each straight into its own array (memory: the declared tensors, once; the file's SHA-256 is
computed chunk by chunk on the way, see ``lassi.spec.contract.files``). A data section over
``PREPASS_BYTES`` is first checked against its content checksum and for NaN/Inf in chunks, so
a large forged or corrupted file is refused before anything is allocated. Float tensors must be
finite and parent hashes must match when given. Writes are atomic: a temporary file in the
destination folder, fsync, rename.

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
from safetensors.numpy import save as st_save

from lassi.spec.contract.errors import (
    IntegrityError,
    InvalidArtifactError,
    TrainingDiverged,
    UsageError,
    printable,
    validation_message,
)
from lassi.spec.contract.files import CHUNK, StreamedFile, forget, stream_sha256
from lassi.spec.contract.models import (
    ARTIFACT_KINDS,
    FLOAT_DTYPES,
    INT_DTYPES,
    SCHEMA_VERSION,
    ArtifactBase,
    Checkpoint,
)

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ARTIFACT_BYTES = int(os.environ.get("LASSI_MAX_ARTIFACT_BYTES", 8 * 1024**3))
PREPASS_BYTES = 64 * 1024**2  # data sections above this are checked in chunks before allocating
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
_FILE_DTYPE = {  # safetensors stores little-endian
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
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
    """SHA-256 of a regular file, streamed in chunks (a later parse must see the same content,
    see files.py)."""
    return stream_sha256(path, MAX_ARTIFACT_BYTES if limit is None else limit)


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


def _write_error(error: OSError, path: Path) -> Exception:
    """A failed write (disk full, quota, read-only, file too large) as one line naming the file
    being written, not the temporary beside it nor "a file"."""
    name = error.filename
    temporary = name is not None and Path(os.fsdecode(name)).name.startswith(f".{path.name}.")
    if error.errno is None or (name is not None and not temporary):
        return error  # names its own file (e.g. an input the body read): keep it
    reason = error.strerror or os.strerror(error.errno)
    return UsageError(path, f"cannot write ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    If the body raises (or the process dies), nothing appears at ``path``; a file-system error
    while writing names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(error, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)  # mkstemp makes 0600 files; an artifact gets the usual 0666 & ~umask
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except OSError as error:
            raise _write_error(error, path) from None
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
        digest.update(array.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return digest.hexdigest()


# --------------------------------------------------------------------------- validation


def _dtype_name(array: np.ndarray) -> str:
    try:
        return _NUMPY_DTYPE[array.dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {array.dtype}") from None


def _check_declared(
    meta: ArtifactBase, entries: Mapping[str, tuple[str, tuple[int, ...]]], where: str | Path
) -> None:
    """Required tensors present with the declared dtype/shape, no strangers, the declared
    architecture backed by the weights: on (dtype, shape) alone, i.e. on the header before any
    tensor byte is read (and on the arrays before a write)."""
    declared = {spec.name: spec for spec in meta.tensor_specs()}
    for spec in declared.values():
        if spec.name not in entries:
            if spec.required:
                raise InvalidArtifactError(where, f"required tensor '{spec.name}' is missing")
            continue
        dtype, shape = entries[spec.name]
        if dtype != spec.dtype:
            raise InvalidArtifactError(
                where, f"tensor '{spec.name}' has dtype {dtype}, expected {spec.dtype}"
            )
        if len(shape) != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, shape, strict=False)
        ):
            want_s = tuple("*" if s is None else s for s in spec.shape)
            raise InvalidArtifactError(
                where, f"tensor '{spec.name}' has shape {list(shape)}, expected {list(want_s)}"
            )
    for name, (dtype, _) in entries.items():
        if name not in declared:
            if not any(name.startswith(p) for p in meta.weight_prefixes):
                raise InvalidArtifactError(
                    where, f"unexpected tensor '{name}' for kind {meta.kind}"
                )
            if dtype.startswith("F") and dtype not in FLOAT_DTYPES:
                raise InvalidArtifactError(where, f"tensor '{name}' has an unsupported dtype")
    problem = meta.check_architecture({name: list(shape) for name, (_, shape) in entries.items()})
    if problem:  # before any tensor is loaded or model built (lassi.spec.contract.architecture)
        raise InvalidArtifactError(where, problem)


def _finite(array: np.ndarray) -> bool:
    """All of a float array finite, checked in chunks (no temporary the size of the array)."""
    flat = array.reshape(-1)
    step = CHUNK // max(array.itemsize, 1)
    return all(np.isfinite(flat[i : i + step]).all() for i in range(0, flat.size, step))


def _check_values(meta: ArtifactBase, tensors: Mapping[str, np.ndarray], where: str | Path) -> None:
    """Floats finite, booleans 0 or 1, then the kind's own value checks."""
    for name, array in tensors.items():
        if array.dtype.kind == "f" and not _finite(array):
            raise InvalidArtifactError(where, f"tensor '{name}' contains NaN or Inf")
        if array.dtype.kind == "b" and array.size and array.reshape(-1).view(np.uint8).max() > 1:
            raise InvalidArtifactError(where, f"tensor '{name}' has booleans other than 0 and 1")
    problem = meta.check_values(dict(tensors))
    if problem:
        raise InvalidArtifactError(where, problem)


def _check_tensors(
    meta: ArtifactBase, tensors: Mapping[str, np.ndarray], where: str | Path
) -> None:
    """Everything ``read_artifact`` checks of a kind's tensors, on arrays (before a write)."""
    entries = {name: (_dtype_name(a), tuple(a.shape)) for name, a in tensors.items()}
    _check_declared(meta, entries, where)
    _check_values(meta, tensors, where)


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


def _header_length(prefix: bytes, size: int, where: str | Path) -> int:
    """The header length the first 8 bytes declare, checked against the limit and file size."""
    if size < 8:
        raise InvalidArtifactError(where, f"file is truncated ({size} bytes, no header)")
    (header_len,) = struct.unpack("<Q", prefix[:8])
    if header_len > MAX_HEADER_BYTES:
        raise InvalidArtifactError(where, f"header length {header_len} exceeds the limit")
    if 8 + header_len > size:
        raise InvalidArtifactError(
            where, f"header claims {header_len} bytes but the file has only {size - 8}"
        )
    return header_len


def parse_header(
    data: bytes, where: str | Path, size: int | None = None
) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and bound-check a safetensors header; return (tensor entries, metadata, data start).

    ``data`` holds at least the length prefix and the header (``size``: the whole file's size,
    default ``len(data)``). The tensors' byte ranges must be well-formed, in range,
    non-overlapping and must tile the data section exactly; sizes must agree with dtype and shape.
    """
    size = len(data) if size is None else size
    header_len = _header_length(data, size, where)
    if 8 + header_len > len(data):
        raise InvalidArtifactError(where, "file is truncated inside its header")
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
    data_len = size - 8 - header_len
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


def _refuse_diverged(meta: ArtifactBase, arrays: Mapping[str, np.ndarray], path: Path | str) -> None:
    """NaN or Inf about to be written into a checkpoint or a model's weights means the training
    that made them diverged: say so (exit 2), rather than blame the file being written as if it
    were an invalid artifact. (NaN in other tensors stays the writer's refusal, exit 3.)"""
    for name in sorted(arrays):
        array = arrays[name]
        if array.dtype.kind != "f" or _finite(array):
            continue
        if isinstance(meta, Checkpoint):
            raise TrainingDiverged(
                None,
                f"training diverged ({meta.stage}: the weights are NaN or Inf at step "
                f"{meta.step}); lower --lr and run again (nothing was written to {Path(path).name})",
            )
        if any(name.startswith(prefix) for prefix in meta.weight_prefixes):
            raise TrainingDiverged(
                None,
                f"training diverged (weight '{name}' of the {meta.kind} is NaN or Inf); lower "
                f"--lr and run again (nothing was written to {Path(path).name})",
            )


def write_artifact(path: str | Path, meta: ArtifactBase, tensors: Mapping[str, Any]) -> str:
    """Validate ``meta`` against ``tensors`` and write them atomically; return the SHA-256."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if hasattr(value, "detach"):  # a torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        array = np.asarray(value)  # (np.ascontiguousarray would turn 0-d arrays into 1-d)
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
    meta = type(meta).model_validate(meta.model_dump())  # re-validate (catches post-hoc edits)
    _refuse_diverged(meta, arrays, path)
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


def _read_head(
    f: StreamedFile, expect: type[M] | None
) -> tuple[dict[str, Any], dict[str, str], M, dict[str, tuple[str, tuple[int, ...]]]]:
    """Read (only) the length prefix and header; validate them against the file's size and the
    metadata's declared tensors and architecture. Nothing after the header is read here."""
    path = f.path
    if f.size < 8:
        raise InvalidArtifactError(path, f"file is truncated ({f.size} bytes, no header)")
    prefix = f.read(8)
    header_len = _header_length(prefix, f.size, path)
    header, metadata, _ = parse_header(prefix + f.read(header_len), path, f.size)
    if METADATA_KEY not in metadata:
        raise InvalidArtifactError(path, "not a lassi artifact (no 'lassi' metadata entry)")
    raw = strict_json(metadata[METADATA_KEY], path, "lassi metadata")
    meta = parse_metadata(raw, path, expect)
    entries = {name: (e["dtype"], tuple(e["shape"])) for name, e in header.items()}
    _check_declared(meta, entries, path)
    return header, metadata, meta, entries


def _prepass(f: StreamedFile, header: dict[str, Any], metadata: dict[str, str]) -> None:
    """A large data section: its content checksum and float finiteness, checked in chunks
    through look-ahead reads before any array is allocated (a forged or corrupted multi-GB
    file costs no memory). The arrays read afterwards are checked again: this is a filter."""
    start = f.position
    digest = hashlib.sha256(metadata[METADATA_KEY].encode("utf-8"))
    for name in sorted(header):
        entry = header[name]
        dtype = _FILE_DTYPE[entry["dtype"]]
        digest.update(f"\0{name}\0{entry['dtype']}\0{list(entry['shape'])}\0".encode())
        begin, end = entry["data_offsets"]
        for offset in range(begin, end, CHUNK):  # CHUNK is a multiple of every item size
            piece = f.pread(min(CHUNK, end - offset), start + offset)
            digest.update(piece)
            if dtype.kind == "f" and not np.isfinite(np.frombuffer(piece, dtype)).all():
                raise InvalidArtifactError(f.path, f"tensor '{name}' contains NaN or Inf")
    if metadata.get(CHECKSUM_KEY) != digest.hexdigest():
        raise IntegrityError(f.path, "content does not match its checksum (modified or corrupted)")


def _read_tensors(f: StreamedFile, header: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every tensor read straight into its own array, in file order (they tile the data)."""
    tensors: dict[str, np.ndarray] = {}
    for name in sorted(header, key=lambda n: header[n]["data_offsets"][0]):
        entry = header[name]
        array = np.empty(entry["shape"], dtype=_FILE_DTYPE[entry["dtype"]])
        if array.size:
            f.readinto(memoryview(array.reshape(-1).view(np.uint8)))
        tensors[name] = array
    return tensors


def read_artifact(
    path: str | Path,
    expect: type[M] | None = None,
    parents: Mapping[str, str | Path | Artifact] | None = None,
) -> Artifact[M]:
    """Read and fully validate an artifact, header first (see the module docstring)."""
    path = Path(path)
    with StreamedFile(path, MAX_ARTIFACT_BYTES, "an artifact file") as f:
        header, metadata, meta, _ = _read_head(f, expect)
        if f.size - f.position > PREPASS_BYTES:
            _prepass(f, header, metadata)
        tensors = _read_tensors(f, header)
        sha256 = f.finish()
    if metadata.get(CHECKSUM_KEY) != content_digest(metadata[METADATA_KEY], tensors):
        raise IntegrityError(path, "content does not match its checksum (modified or corrupted)")
    _check_values(meta, tensors, path)
    artifact = Artifact(meta=meta, tensors=tensors, sha256=sha256, path=path)
    if parents:
        check_parents(artifact, parents)
    return artifact


def read_header(
    path: str | Path, expect: type[M] | None = None
) -> tuple[M, dict[str, tuple[str, tuple[int, ...]]], str]:
    """(validated metadata, each tensor's (dtype, shape), SHA-256 of the whole file) without
    reading any tensor into memory: the header is checked as in ``read_artifact`` and the rest
    of the file is streamed through the hash only. Imports no torch."""
    with StreamedFile(Path(path), MAX_ARTIFACT_BYTES, "an artifact file") as f:
        _, _, meta, entries = _read_head(f, expect)
        f.skip()
        return meta, entries, f.finish()


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
