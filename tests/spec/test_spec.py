"""The artifact contract: round trips, and each kind of damage rejected with a specific error."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factories import HASH_A, make, write_raw
from lassi.spec import (
    ARTIFACT_KINDS,
    IntegrityError,
    InvalidArtifactError,
    UsageError,
    read_artifact,
    sha256_file,
    write_artifact,
)
from lassi.spec.contract.io import atomic_path

KINDS = sorted(ARTIFACT_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips(tmp_path: Path, kind: str) -> None:
    meta, tensors = make(kind)
    path = tmp_path / f"{kind}.safetensors"
    digest = write_artifact(path, meta, tensors)
    assert digest == sha256_file(path)
    artifact = read_artifact(path, expect=type(meta))
    assert artifact.meta == meta
    assert artifact.sha256 == digest
    assert set(artifact.tensors) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(artifact.tensors[name], array)
        assert artifact.tensors[name].dtype == array.dtype


def _valid(tmp_path: Path, kind: str = "representations") -> Path:
    meta, tensors = make(kind)
    path = tmp_path / "valid.safetensors"
    write_artifact(path, meta, tensors)
    return path


def test_flipped_byte_in_a_tensor_is_rejected(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum"):
        read_artifact(path)


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InvalidArtifactError, match="data section|outside the data|needs"):
        read_artifact(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(InvalidArtifactError, match="truncated"):
        read_artifact(path)


def test_header_claiming_more_bytes_than_the_file_is_rejected(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])
    with pytest.raises(InvalidArtifactError, match="header claims"):
        read_artifact(path)


def _rewrite_meta(tmp_path: Path, artifact_kind: str, **changes: object) -> Path:
    meta, tensors = make(artifact_kind)
    raw = json.loads(meta.model_dump_json())
    raw.update(changes)
    path = tmp_path / "edited.safetensors"
    write_raw(path, json.dumps(raw), tensors)
    return path


def test_wrong_kind_is_rejected(tmp_path: Path) -> None:
    path = _rewrite_meta(tmp_path, "classifier", kind="pretty_picture")
    with pytest.raises(InvalidArtifactError, match="unknown artifact kind"):
        read_artifact(path)
    meta, tensors = make("classifier")
    good = tmp_path / "classifier.safetensors"
    write_artifact(good, meta, tensors)
    with pytest.raises(InvalidArtifactError, match="is a classifier artifact, expected encoder"):
        read_artifact(good, expect=ARTIFACT_KINDS["encoder"])


def test_newer_schema_version_is_rejected(tmp_path: Path) -> None:
    path = _rewrite_meta(tmp_path, "encoder", schema_version=99)
    with pytest.raises(InvalidArtifactError, match="newer than this tool supports"):
        read_artifact(path)


def test_nan_in_a_float_tensor_is_rejected(tmp_path: Path) -> None:
    meta, tensors = make("representations")
    tensors["z"][1, 2] = np.nan
    path = tmp_path / "nan.safetensors"
    with pytest.raises(InvalidArtifactError, match="NaN"):
        write_artifact(path, meta, tensors)  # the writer refuses, too
    assert not path.exists()
    write_raw(path, meta.model_dump_json(), tensors)
    with pytest.raises(InvalidArtifactError, match="'z' contains NaN or Inf"):
        read_artifact(path)


def test_parent_hash_mismatch_is_rejected(tmp_path: Path) -> None:
    spec_meta, spec_tensors = make("similarity_spec")
    spec = tmp_path / "spec.safetensors"
    write_artifact(spec, spec_meta, spec_tensors)
    path = _valid(tmp_path, "encoder")  # records HASH_A as its spec, not this file's hash
    with pytest.raises(IntegrityError, match="was made from similarity_spec"):
        read_artifact(path, parents={"similarity_spec": spec})
    assert read_artifact(path, parents={"similarity_spec": HASH_A}).meta.kind == "encoder"
    with pytest.raises(IntegrityError, match="records no classifier parent"):
        read_artifact(path, parents={"classifier": HASH_A})


def test_shape_and_dtype_must_match_the_declaration(tmp_path: Path) -> None:
    meta, tensors = make("representations")
    bad = dict(tensors, r_cs=tensors["r_cs"].astype(np.float64))
    with pytest.raises(InvalidArtifactError, match="'r_cs' has dtype F64, expected F32"):
        write_artifact(tmp_path / "x.safetensors", meta, bad)
    bad = dict(tensors, z=tensors["z"][:, :3].copy())
    with pytest.raises(InvalidArtifactError, match=r"'z' has shape \[5, 3\], expected \[5, 4\]"):
        write_artifact(tmp_path / "x.safetensors", meta, bad)
    bad = {k: v for k, v in tensors.items() if k != "r_cs"}
    with pytest.raises(InvalidArtifactError, match="'r_cs' is missing"):
        write_artifact(tmp_path / "x.safetensors", meta, bad)
    bad = dict(tensors, r_cs=-tensors["r_cs"])
    with pytest.raises(InvalidArtifactError, match="negative radii"):
        write_artifact(tmp_path / "x.safetensors", meta, bad)


def test_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.safetensors"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_killed_writer_process_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    code = (
        "import os, sys\n"
        "from lassi.spec.contract.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert not target.exists()


def test_missing_file_and_folder_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_artifact(tmp_path / "nope.safetensors")
    with pytest.raises(UsageError, match="is a folder"):
        read_artifact(tmp_path)


def test_invalid_metadata_values_are_rejected(tmp_path: Path) -> None:
    meta, tensors = make("similarity_spec")
    raw = json.loads(meta.model_dump_json())
    raw["epsilon"] = -1.0
    path = tmp_path / "eps.safetensors"
    write_raw(path, json.dumps(raw), tensors)
    with pytest.raises(InvalidArtifactError, match="epsilon"):
        read_artifact(path)


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    meta, tensors = make("classifier")
    path = tmp_path / "c.safetensors"
    write_artifact(path, meta, tensors)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
