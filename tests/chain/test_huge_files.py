"""Multi-GB files (sparse, so they cost no disk): a valid artifact padded to 2 GB and a
consistent 2 GB header under a wrong checksum are refused by ``inspect`` and ``train`` (also
with ``--trusted-key``) within 1 GiB of memory, the file untouched and nothing written."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import raw, run_role_child, sparse_file
from lassi.consumer.cli import main as consumer
from lassi.spec import EXIT_CODES

INVALID, INTEGRITY = EXIT_CODES["invalid_artifact"], EXIT_CODES["integrity"]
pytestmark = pytest.mark.slow  # every test reads the session's chain
GIB = 1024**3


def _padded(base: Path, out: Path) -> Path:
    """A valid artifact with 2 GB of zeros appended (``truncate -s 2G``)."""
    return sparse_file(out, base.read_bytes(), 2 * GIB)


def _declared_big(base: Path, out: Path) -> Path:
    """A plain bundle whose metadata and header both declare ~2 GB of samples (consistent
    shapes that tile the file exactly), the checksum left as it was: a forger's or a corrupted
    multi-GB file. The reader must refuse it without allocating the tensors."""
    header, _ = raw(base)
    meta = json.loads(header.pop("__metadata__")["lassi"])
    k = meta["k"]
    per_sample = 4 * k + 8 + 8 * len(meta["label_names"])
    n = 2 * GIB // per_sample
    meta["n_samples"], meta["file_names"] = n, None
    entries, offset = {}, 0
    for name in sorted(header, key=lambda t: header[t]["data_offsets"][0]):
        shape = [n, k] if name == "z" else [n]
        nbytes = n * (4 * k if name == "z" else 8)
        entries[name] = {"dtype": header[name]["dtype"], "shape": shape,
                         "data_offsets": [offset, offset + nbytes]}  # fmt: skip
        offset += nbytes
    checksum = json.loads(json.dumps(raw(base)[0]["__metadata__"]))["lassi.content_sha256"]
    entries["__metadata__"] = {"lassi": json.dumps(meta), "lassi.content_sha256": checksum}
    blob = json.dumps(entries).encode()
    return sparse_file(out, struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + offset)


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [(_padded, INVALID, "data section has"), (_declared_big, INTEGRITY, "checksum")],
    ids=["valid_file_padded_to_2GB", "consistent_2GB_header_wrong_checksum"],
)
def test_a_2gb_sparse_artifact_is_refused_within_1gib(
    build, code: int, message: str, chain: dict[str, Path], tmp_path: Path
) -> None:
    """Memory stays bounded for every artifact, not only for small ones: the header is checked
    against the file's size before any tensor byte is read, a large data section is checked
    in chunks before anything is allocated, and the hash is streamed (also with --trusted-key)."""
    bad = build(chain["train"], tmp_path / "big.safetensors")
    assert bad.stat().st_size >= 2 * GIB - 1024 and bad.stat().st_blocks * 512 < 64 * 1024**2
    before = (bad.stat().st_size, bad.stat().st_mtime_ns)
    status, lines, peak = run_role_child("consumer", ["inspect", str(bad)])
    assert status == code and len(lines) == 1 and bad.name in lines[0] and message in lines[0], lines
    assert peak < GIB // 1024, f"inspect: peak {peak} KiB"
    out = tmp_path / "c.safetensors"
    key = tmp_path / "k.key"
    assert CliRunner().invoke(consumer, ["keygen", "--out", str(key)]).exit_code == 0
    args = ["train", "--bundle", str(bad), "--task", "object_hue", "--sigma", "0.5", "--quiet",
            "--trusted-key", f"{key}.pub", "--out", str(out)]  # fmt: skip
    status, lines, peak = run_role_child("consumer", args)  # unsigned: refused after streaming
    assert status == EXIT_CODES["signature"] and len(lines) == 1 and "not signed" in lines[0]
    assert peak < GIB // 1024, f"train --trusted-key: peak {peak} KiB"
    args.remove("--trusted-key"), args.remove(f"{key}.pub")
    status, lines, peak = run_role_child("consumer", args)
    assert status == code and len(lines) == 1 and message in lines[0], lines
    assert peak < GIB // 1024, f"train: peak {peak} KiB"
    assert not out.exists() and (bad.stat().st_size, bad.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors", "k.key", "k.key.pub"]
