"""The audit's data check and its per-sample output, through the CLIs, on an image folder.

A bundle encoded from files records a SHA-256 over the relative names and bytes of its samples'
images (``DataProvenance.content_sha256``); ``audit --data-root`` recomputes it over the
auditor's copy and refuses (exit 4, one line, no file contents) data that differs. Rows name
each sample by id and image file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import run, write_raw
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, RepresentationBundle, read_artifact

INTEGRITY = EXIT_CODES["integrity"]


def _image_folder(root: Path) -> Path:
    """Six random 20x20 PNGs, three test and three train, with an ``object_hue`` label."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir()
    rows = ["file,split,object_hue"]
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / f"img{i}.png")
        rows.append(f"img{i}.png,{'test' if i < 3 else 'train'},{i % 2}")
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def folder_audit(chain: dict[str, Path], tmp_path_factory) -> dict[str, Path]:
    """A certified bundle of two test images of a folder, and the base function's ONNX."""
    d = tmp_path_factory.mktemp("folder-audit")
    data = _image_folder(d / "faces")
    bundle = d / "b.safetensors"
    run(producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--dataset", "folder", "--data-root", str(data), "--split", "test", "--limit", "2",
                   "--certify", "--n0", "1500", "--n", "2000", "--delta", "0.1", "--quiet",
                   "--out", str(bundle)])  # fmt: skip
    run(producer, ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--out-dir", str(d / "onnx")])  # fmt: skip
    return {"data": data, "bundle": bundle, "onnx": d / "onnx" / "base_function.onnx"}


def _copy(data: Path, to: Path) -> Path:
    shutil.copytree(data, to)
    return to


def _audit(chain, folder_audit, root: Path, *extra: str, bundle: Path | None = None):
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(folder_audit["onnx"]),
            "--bundle", str(bundle or folder_audit["bundle"]), "--data-root", str(root), "--quiet",
            *extra]  # fmt: skip
    return CliRunner().invoke(regulator, args)


def _one_line_error(result, code: int, *words: str) -> str:
    __tracebackhide__ = True
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_encode_records_the_hash_of_names_and_bytes(folder_audit) -> None:
    """The recorded hash is the documented one: length-prefixed relative name and bytes of each
    encoded sample's file, in id order (computed here independently of lassi)."""
    meta = read_artifact(folder_audit["bundle"], expect=RepresentationBundle).meta
    digest = hashlib.sha256()
    for name in meta.file_names:
        data = (folder_audit["data"] / name).read_bytes()
        digest.update(len(name).to_bytes(8, "little") + name.encode())
        digest.update(len(data).to_bytes(8, "little") + data)
    assert meta.file_names == ["img0.png", "img1.png"]
    assert meta.data.content_sha256 == digest.hexdigest()


def test_audit_of_matching_data_passes_and_names_files(chain, folder_audit, tmp_path) -> None:
    copy = _copy(folder_audit["data"], tmp_path / "copy")
    # an image that is not among the bundle's samples may differ
    (copy / "img4.png").write_bytes(b"not the producer's image")
    table = _audit(chain, folder_audit, copy, "--count", "2")
    assert table.exit_code == 0, table.output
    assert "| id | file | claimed r_CS |" in table.output
    assert "| 0 | img0.png |" in table.output and "| 1 | img1.png |" in table.output
    out = tmp_path / "findings.json"
    as_json = _audit(chain, folder_audit, copy, "--count", "2", "--json", "--out", str(out))
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(out.read_text())
    assert [(r["sample_id"], r["file"]) for r in rows] == [(0, "img0.png"), (1, "img1.png")]
    printed = as_json.output[as_json.output.index("[") : as_json.output.rindex("]") + 1]
    assert json.loads(printed) == rows
    assert not (tmp_path / "findings.json.ckpt").exists()


def test_one_changed_byte_is_refused(chain, folder_audit, tmp_path) -> None:
    copy = _copy(folder_audit["data"], tmp_path / "copy")
    image = bytearray((copy / "img1.png").read_bytes())
    image[len(image) // 2] ^= 0x01
    (copy / "img1.png").write_bytes(bytes(image))
    _one_line_error(_audit(chain, folder_audit, copy), INTEGRITY, copy.name, "hash", "b.safetensors")
    secret = b"SECRET-IMAGE-BYTES"
    (copy / "img1.png").write_bytes((folder_audit["data"] / "img1.png").read_bytes() + secret)
    line = _one_line_error(_audit(chain, folder_audit, copy), INTEGRITY, "hash")
    assert "SECRET" not in line


def test_a_renamed_file_is_refused(chain, folder_audit, tmp_path) -> None:
    # renamed and listed under its new name: the same bytes under another name
    copy = _copy(folder_audit["data"], tmp_path / "renamed")
    (copy / "img1.png").rename(copy / "img1b.png")
    csv = copy / "attributes.csv"
    csv.write_text(csv.read_text().replace("img1.png", "img1b.png"))
    _one_line_error(_audit(chain, folder_audit, copy), INTEGRITY, copy.name, "hash")
    # renamed but still listed under its old name: the recorded sample's file is missing
    gone = _copy(folder_audit["data"], tmp_path / "gone")
    (gone / "img1.png").rename(gone / "img1b.png")
    _one_line_error(_audit(chain, folder_audit, gone), INTEGRITY, "img1.png", "does not match")


def test_a_bundle_without_a_content_hash_audits_with_a_note(chain, folder_audit, tmp_path) -> None:
    """Bundles written before the hash was recorded still audit; the note says the data was
    not checked."""
    artifact = read_artifact(folder_audit["bundle"], expect=RepresentationBundle)
    meta = json.loads(artifact.meta.model_dump_json())
    del meta["data"]["content_sha256"]
    old = tmp_path / "old.safetensors"
    write_raw(old, json.dumps(meta), dict(artifact.tensors))
    result = _audit(chain, folder_audit, folder_audit["data"], "--count", "1", bundle=old)
    assert result.exit_code == 0, result.output
    assert "records no content hash" in result.output and "could not be checked" in result.output
    assert "| 0 | img0.png |" in result.output


def test_flagged_findings_name_the_file(chain, folder_audit, tmp_path) -> None:
    artifact = read_artifact(folder_audit["bundle"], expect=RepresentationBundle)
    shrunk = dict(artifact.tensors, r_cs=(artifact.tensors["r_cs"] * 0.5).astype(np.float32))
    forged = tmp_path / "forged.safetensors"
    write_raw(forged, artifact.meta.model_dump_json(), shrunk)
    certified = [int(i) for i, s in zip(artifact.tensors["ids"], artifact.tensors["status"], strict=True) if s == 0]
    assert certified, "the folder bundle should certify a sample"
    result = _audit(chain, folder_audit, folder_audit["data"], "--ids", str(certified[0]), bundle=forged)
    assert result.exit_code == INTEGRITY, result.output
    assert f"sample {certified[0]} (img{certified[0]}.png): understated" in result.output


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge"])
def test_an_image_that_is_not_a_plain_bounded_file_ends_cleanly(
    chain, folder_audit, tmp_path, kind, monkeypatch
) -> None:
    """In the auditor's data root an image path may be a FIFO (must not block), a folder, or
    larger than the image bound: one-line error naming it, never a hang or a traceback."""
    import os

    import lassi.regulator.content_hash as content_hash

    copy = _copy(folder_audit["data"], tmp_path / kind)
    target = copy / "img1.png"
    if kind == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif kind == "directory":
        target.unlink()
        target.mkdir()
    else:  # the bound, lowered so that the test needs no big file: every image is over it
        monkeypatch.setattr(content_hash, "MAX_IMAGE_BYTES", 64)
    result = _audit(chain, folder_audit, copy)
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    named = "img0.png" if kind == "huge" else "img1.png"  # the first sample read over the bound
    assert len(lines) == 1 and named in lines[0], result.output
    if kind == "huge":
        assert "over 64" in lines[0]
