"""The audit's per-file data check and its per-sample output, through the CLIs, on an image folder.

A bundle encoded from files records the SHA-256 of each sample's image file (tensor
``file_sha256``) and a hash over their list (``DataProvenance.content_sha256``); ``audit
--data-root`` hashes the auditor's copy file by file, names each changed, missing, renamed or
unreadable file (never echoing contents), reports its sample as not auditable and audits the
others. Rows name each sample by id and image file.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import one_line, run, write_raw
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, RepresentationBundle, read_artifact

pytestmark = pytest.mark.slow  # every test reads the session's chain

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
    """A certified bundle of the three test images of a folder, and the base function's ONNX."""
    d = tmp_path_factory.mktemp("folder-audit")
    data = _image_folder(d / "faces")
    bundle = d / "b.safetensors"
    run(producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--dataset", "folder", "--data-root", str(data), "--split", "test", "--limit", "3",
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


def _rows(result) -> dict[int, str]:
    """{sample id: verdict} of a printed findings table."""
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            rows[int(cells[0])] = cells[-1]
    return rows


def test_encode_records_each_file_hash_and_their_list_hash(folder_audit) -> None:
    """The recorded hashes are the documented ones (computed here independently of lassi): the
    SHA-256 of each sample's file, in the order of ids, and content_sha256 over the
    length-prefixed relative name and file SHA-256 of each sample in id order."""
    artifact = read_artifact(folder_audit["bundle"], expect=RepresentationBundle)
    meta, tensors = artifact.meta, artifact.tensors
    assert meta.file_names == ["img0.png", "img1.png", "img2.png"]
    assert meta.data.content_hash == "per-file"
    files = [hashlib.sha256((folder_audit["data"] / n).read_bytes()).digest() for n in meta.file_names]
    assert tensors["file_sha256"].dtype == np.uint8 and tensors["file_sha256"].shape == (3, 32)
    assert [bytes(row) for row in tensors["file_sha256"]] == files
    digest = hashlib.sha256()
    for name, file in zip(meta.file_names, files, strict=True):
        digest.update(len(name).to_bytes(8, "little") + name.encode() + file)
    assert meta.data.content_sha256 == digest.hexdigest()


@pytest.mark.parametrize(
    "forgery, words",
    [
        ("one bit of a file hash", "does not hash to the recorded data content_sha256"),
        ("no file_sha256 tensor", "required tensor 'file_sha256' is missing"),
        ("file hashes as int64", "tensor 'file_sha256' has dtype I64"),
        ("one file hash missing", "tensor 'file_sha256' has shape [2, 32]"),
        ("no file names", "need file_names"),
    ],
)
def test_per_file_hashes_that_disagree_with_the_header_are_invalid(
    folder_audit, tmp_path, forgery: str, words: str
) -> None:
    """The per-file list is bound to the header's content_sha256: every way to make them
    disagree is an invalid artifact (exit 3), checked when the bundle is read."""
    from lassi.spec import InvalidArtifactError

    artifact = read_artifact(folder_audit["bundle"], expect=RepresentationBundle)
    meta, tensors = json.loads(artifact.meta.model_dump_json()), dict(artifact.tensors)
    hashes = tensors["file_sha256"].copy()
    if forgery == "one bit of a file hash":
        hashes[1, 0] ^= 1
        tensors["file_sha256"] = hashes
    elif forgery == "no file_sha256 tensor":
        del tensors["file_sha256"]
    elif forgery == "file hashes as int64":
        tensors["file_sha256"] = hashes.astype(np.int64)
    elif forgery == "one file hash missing":
        tensors["file_sha256"] = hashes[:2]
    else:
        meta["file_names"] = None
    forged = tmp_path / "forged.safetensors"
    write_raw(forged, json.dumps(meta), tensors)
    with pytest.raises(InvalidArtifactError, match=re.escape(words)):
        read_artifact(forged, expect=RepresentationBundle)


def test_audit_of_matching_data_passes_and_names_files(chain, folder_audit, tmp_path) -> None:
    copy = _copy(folder_audit["data"], tmp_path / "copy")
    # an image that is not among the bundle's samples may differ
    (copy / "img4.png").write_bytes(b"not the producer's image")
    table = _audit(chain, folder_audit, copy, "--count", "2")
    assert table.exit_code == 0, table.output
    assert "| id | file | claimed r_CS |" in table.output
    assert "| 0 | img0.png |" in table.output and "| 1 | img1.png |" in table.output
    assert "note" not in table.output
    out = tmp_path / "findings.json"
    as_json = _audit(chain, folder_audit, copy, "--count", "2", "--json", "--out", str(out))
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(out.read_text())
    assert [(r["sample_id"], r["file"]) for r in rows] == [(0, "img0.png"), (1, "img1.png")]
    printed = as_json.output[as_json.output.index("[") : as_json.output.rindex("]") + 1]
    assert json.loads(printed) == rows
    assert not (tmp_path / "findings.json.ckpt").exists()


def test_one_changed_image_is_named_and_the_other_samples_pass(chain, folder_audit, tmp_path) -> None:
    """The acceptance test of the per-file audit: a copy with one changed image (one flipped
    bit) names that file, reports its sample as not auditable and confirms the others."""
    copy = _copy(folder_audit["data"], tmp_path / "copy")
    image = bytearray((copy / "img1.png").read_bytes())
    image[len(image) // 2] ^= 0x01
    (copy / "img1.png").write_bytes(bytes(image))
    result = _audit(chain, folder_audit, copy)
    assert result.exit_code == INTEGRITY and "Traceback" not in result.output, result.output
    assert _rows(result) == {0: "confirmed", 1: "data_changed", 2: "confirmed"}
    last = result.output.strip().splitlines()[-1]
    assert "img1.png" in last and "changed" in last and "2 of 3 confirmed" in last, last
    out = tmp_path / "findings.json"
    _audit(chain, folder_audit, copy, "--json", "--out", str(out))
    rows = {r["sample_id"]: r for r in json.loads(out.read_text())}
    assert rows[1]["verdict"] == "data_changed" and rows[1]["replayed_r_cs"] is None
    assert rows[1]["file"] == "img1.png" and "differ" in rows[1]["detail"]
    assert rows[0]["verdict"] == rows[2]["verdict"] == "confirmed"
    # the untouched samples alone audit cleanly; a note names the changed file
    untouched = _audit(chain, folder_audit, copy, "--ids", "0,2")
    assert untouched.exit_code == 0, untouched.output
    assert _rows(untouched) == {0: "confirmed", 2: "confirmed"}
    assert "note" in untouched.output and "sample 1 (img1.png): changed" in untouched.output
    # the contents of a changed file are never echoed
    secret = b"SECRET-IMAGE-BYTES"
    (copy / "img1.png").write_bytes((folder_audit["data"] / "img1.png").read_bytes() + secret)
    again = _audit(chain, folder_audit, copy)
    assert again.exit_code == INTEGRITY and "SECRET" not in again.output, again.output
    assert _rows(again)[1] == "data_changed"


def test_renamed_and_missing_files_are_named(chain, folder_audit, tmp_path) -> None:
    # renamed and listed under its new name: the same bytes under another name
    copy = _copy(folder_audit["data"], tmp_path / "renamed")
    (copy / "img1.png").rename(copy / "img1b.png")
    csv = copy / "attributes.csv"
    csv.write_text(csv.read_text().replace("img1.png", "img1b.png"))
    result = _audit(chain, folder_audit, copy)
    assert result.exit_code == INTEGRITY, result.output
    assert _rows(result) == {0: "confirmed", 1: "data_renamed", 2: "confirmed"}
    last = result.output.strip().splitlines()[-1]
    assert "img1.png" in last and "renamed" in last and "img1b.png" in last, last
    # renamed but still listed under its old name: the recorded sample's file is missing
    gone = _copy(folder_audit["data"], tmp_path / "gone")
    (gone / "img2.png").rename(gone / "img2b.png")
    result = _audit(chain, folder_audit, gone)
    assert result.exit_code == INTEGRITY, result.output
    assert _rows(result) == {0: "confirmed", 1: "confirmed", 2: "data_missing"}
    assert "img2.png" in result.output.strip().splitlines()[-1]
    # not listed at all (its row dropped from the CSV): missing too
    unlisted = _copy(folder_audit["data"], tmp_path / "unlisted")
    csv = unlisted / "attributes.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if "img0.png" not in line) + "\n")
    result = _audit(chain, folder_audit, unlisted, "--ids", "1,2")
    assert result.exit_code == 0, result.output
    assert "sample 0 (img0.png): missing, not listed in the data here" in result.output


def test_an_unknown_id_lists_the_valid_ones(chain, folder_audit) -> None:
    line = one_line(_audit(chain, folder_audit, folder_audit["data"], "--ids", "5"), 2)
    assert "no sample with id 5 (ids are 0–2)" in line, line


def _old_bundle(folder_audit, tmp_path, content_hash: str | None) -> Path:
    """The folder bundle as lassi wrote it before per-file hashes: with ``content_hash``
    "stream" (one hash over all names and bytes), or with no hash at all (None)."""
    artifact = read_artifact(folder_audit["bundle"], expect=RepresentationBundle)
    meta = json.loads(artifact.meta.model_dump_json())
    meta["data"]["content_hash"] = content_hash
    if content_hash is None:
        meta["data"]["content_sha256"] = None
    tensors = {k: v for k, v in artifact.tensors.items() if k != "file_sha256"}
    old = tmp_path / "old.safetensors"
    write_raw(old, json.dumps(meta), tensors)
    return old


def test_a_bundle_with_one_hash_over_all_files_is_refused(chain, folder_audit, tmp_path) -> None:
    """Bundles written before per-file hashes (content_hash "stream") are no longer read: one
    line, exit 3, saying so (nothing computes that hash any more)."""
    old = _old_bundle(folder_audit, tmp_path, "stream")
    result = _audit(chain, folder_audit, folder_audit["data"], "--count", "1", bundle=old)
    one_line(result, EXIT_CODES["invalid_artifact"], "content_hash", "'stream'", "no longer read")


def test_a_bundle_without_a_content_hash_is_refused(chain, folder_audit, tmp_path) -> None:
    """A bundle of image files that records no content hash (written before lassi recorded
    one) cannot have its data checked: one line, exit 3, saying so."""
    old = _old_bundle(folder_audit, tmp_path, None)
    result = _audit(chain, folder_audit, folder_audit["data"], "--count", "1", bundle=old)
    one_line(result, EXIT_CODES["invalid_artifact"], "records no content_sha256 of its folder images")


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
    larger than the image bound: its sample is not auditable, named with the reason; never a
    hang or a traceback."""
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
    assert result.exit_code == INTEGRITY and "Traceback" not in result.output, result.output
    rows = _rows(result)
    if kind == "huge":
        assert rows == {0: "data_unreadable", 1: "data_unreadable", 2: "data_unreadable"}
        assert "over 64" in result.output.strip().splitlines()[-1]
    else:
        assert rows == {0: "confirmed", 1: "data_unreadable", 2: "confirmed"}
        assert "img1.png" in result.output.strip().splitlines()[-1]
