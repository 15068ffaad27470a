"""A similarity spec says exactly which images its attribute vectors were computed from.

For images on disk (here a miniature CelebA) ``define`` records the per-file content hash of
the train images it read (``DataProvenance.content_sha256``, ``content_hash = "per-file"``),
taken from the very bytes decoded; ``show`` prints it. ``content_hash`` is present exactly when
the hash is, and the "stream" hash of files from before per-file hashes is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import FLOW, PROVENANCE, make, one_line, write_celeba_faces, write_raw
from lassi.regulator.attributes import HashedReads
from lassi.regulator.cli import main as regulator
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.datasets import DataError
from lassi.regulator.training import build_glow
from lassi.spec import (
    EXIT_CODES,
    DataProvenance,
    GlowArtifact,
    GlowTraining,
    InvalidArtifactError,
    Preprocessing,
    SimilaritySpec,
    read_artifact,
    write_artifact,
)
from lassi.spec.contract.torch_state import module_tensors


@pytest.fixture(scope="module")
def glow_path(tmp_path_factory) -> Path:
    """A randomly initialised tiny Glow (8x8 images) as a trained Glow artifact."""
    torch.manual_seed(0)
    glow = build_glow(FLOW)
    with torch.no_grad():
        glow.initialize_actnorm(torch.rand(16, 3, FLOW.image_size, FLOW.image_size) - 0.5)
    meta = GlowArtifact(
        tool="lassi-test 0",
        flow=FLOW,
        preprocessing=Preprocessing.for_flow(FLOW),
        data=PROVENANCE,
        training=GlowTraining(steps=1, batch_size=2, lr=1e-3, warmup_steps=0, seed=0, seconds=0.1),
    )
    path = tmp_path_factory.mktemp("glow") / "glow.safetensors"
    write_artifact(path, meta, module_tensors(glow, "glow."))
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return write_celeba_faces(tmp_path_factory.mktemp("celeba") / "celeba")


def _define(glow_path: Path, root: Path, out: Path, *extra: str) -> SimilaritySpec:
    result = CliRunner().invoke(
        regulator,
        ["define", "--glow", str(glow_path), "--attribute", "Smiling", "--dataset", "celeba",
         "--data-root", str(root), "--epsilon", "1", *extra, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_artifact(out, expect=SimilaritySpec).meta
    assert f"content sha256 {meta.data.content_sha256} (per-file)" in result.output
    return meta


def _train_files(root: Path) -> tuple[list[int], list[str]]:
    source = make_source(DatasetConfig(dataset="celeba", root=root, image_size=FLOW.image_size))
    ids = source.split_ids("train")
    return [int(i) for i in ids], source.file_names(ids)


def test_define_records_the_hash_of_the_train_images_it_read(glow_path, faces, tmp_path) -> None:
    """The recorded hash is the documented one, computed here independently: SHA-256 over each
    train sample's length-prefixed relative name and its file's SHA-256, in id order."""
    meta = _define(glow_path, faces, tmp_path / "spec.safetensors")
    assert meta.data.content_hash == "per-file" and meta.data.dataset == "celeba"
    ids, names = _train_files(faces)
    assert meta.data.n_samples == len(ids) == 48
    total = hashlib.sha256()
    for _, name in sorted(zip(ids, names, strict=True)):
        data = (faces / "img_align_celeba" / name).read_bytes()
        total.update(len(name.encode()).to_bytes(8, "little") + name.encode())
        total.update(hashlib.sha256(data).digest())
    assert meta.data.content_sha256 == total.hexdigest()
    shown = CliRunner().invoke(
        regulator, ["show", str(tmp_path / "spec.safetensors"), "--data-root", str(faces),
                    "--inputs", "1", "--steps", "3", "--out", str(tmp_path / "strips.png")],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "vectors computed from: celeba train split, 48 samples" in shown.output
    assert f"content sha256 {meta.data.content_sha256} (per-file)" in shown.output


def test_one_changed_train_image_changes_the_hash_a_test_image_does_not(
    glow_path, faces, tmp_path
) -> None:
    import shutil

    from PIL import Image

    first = _define(glow_path, faces, tmp_path / "a.safetensors").data.content_sha256
    copy = shutil.copytree(faces, tmp_path / "copy")
    test_image = copy / "img_align_celeba" / "000072.jpg"  # the last file: the test split
    Image.open(test_image).rotate(90).save(test_image, quality=95)
    assert _define(glow_path, copy, tmp_path / "b.safetensors").data.content_sha256 == first
    ids, names = _train_files(copy)
    train_image = copy / "img_align_celeba" / names[0]
    train_image.write_bytes(train_image.read_bytes() + b"\0")  # one byte more, same pixels
    assert _define(glow_path, copy, tmp_path / "c.safetensors").data.content_sha256 != first


def test_a_learned_method_records_the_validation_images_it_read(glow_path, faces, tmp_path) -> None:
    """perpendicular chooses its boundary's epoch on the val split: the spec records those
    images' content hash too; a changed val image changes it and not the train images' hash."""
    import shutil

    options = ("--method", "perpendicular", "--boundary-epochs", "1")
    first = _define(glow_path, faces, tmp_path / "a.safetensors", *options)
    val = first.method.validation
    assert (val.split, val.n_samples, val.content_hash) == ("val", 12, "per-file")
    copy = shutil.copytree(faces, tmp_path / "copy")
    val_image = copy / "img_align_celeba" / "000049.jpg"  # the first of the val split
    val_image.write_bytes(val_image.read_bytes() + b"\0")
    second = _define(glow_path, copy, tmp_path / "b.safetensors", *options)
    assert second.data.content_sha256 == first.data.content_sha256
    assert second.method.validation.content_sha256 != val.content_sha256
    forged = {**first.model_dump(), "method": {**first.method.model_dump(), "validation": first.data.model_dump()}}
    with pytest.raises(ValueError, match="val split"):
        SimilaritySpec.model_validate(forged)


def test_rendered_data_records_no_hash(glow_path, tmp_path) -> None:
    data = ["--image-size", "8", "--n-train", "40", "--n-val", "10", "--n-test", "10"]
    out = tmp_path / "shapes.safetensors"
    result = CliRunner().invoke(
        regulator,
        ["define", "--glow", str(glow_path), "--attribute", "scale", *data, "--vectors", "halves",
         "--epsilon", "1", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data_meta = read_artifact(out, expect=SimilaritySpec).meta.data
    assert data_meta.content_sha256 is None and data_meta.content_hash is None
    assert "3D Shapes rendered here: its renderer and factors are the content" in result.output
    from lassi.regulator.shapes3d import renderer_sha256

    assert data_meta.options["renderer_sha256"] == renderer_sha256(8)
    # a rendered-data artifact without its renderer's identity (stripped, or written before it)
    # cannot be checked against the images rendered here: refused on read, one line
    for stripped in ({}, {"renderer_sha256": "not a hash"}):
        raw = json.loads(read_artifact(out).meta.model_dump_json())
        raw["data"]["options"] = {k: v for k, v in raw["data"]["options"].items() if k != "renderer_sha256"} | stripped
        bad = tmp_path / "stripped.safetensors"
        write_raw(bad, json.dumps(raw), read_artifact(out).tensors)
        with pytest.raises(InvalidArtifactError, match="records no renderer_sha256") as error:
            read_artifact(bad, expect=SimilaritySpec)
        assert "\n" not in str(error.value)
        bad.unlink()


def test_a_file_changed_between_reads_is_refused(faces, tmp_path) -> None:
    """HashedReads: a file read twice must hash the same both times (one version of the data)."""
    import shutil

    copy = shutil.copytree(faces, tmp_path / "copy")
    source = make_source(DatasetConfig(dataset="celeba", root=copy, image_size=8))
    reads = HashedReads(source)
    ids = np.array([0, 1])
    assert reads(ids).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="was not read"):
        reads.content_sha256([0, 1, 2])
    path = copy / "img_align_celeba" / source.file_names(np.array([1]))[0]
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="changed while the attribute vectors were computed"):
        reads(ids)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"content_sha256": "a" * 64, "content_hash": "stream"}, "'stream'"),
        ({"content_hash": "stream"}, "no longer read"),
        ({"content_hash": "per-file"}, "'per-file' without a content_sha256"),
        ({"content_sha256": "a" * 64}, "content_sha256 without content_hash"),
    ],
)
def test_the_content_hash_says_the_truth(fields, message, tmp_path) -> None:
    """content_hash is "per-file" exactly when content_sha256 is recorded; "stream" is refused
    on read in one line naming the field."""
    with pytest.raises(ValueError, match=message):
        DataProvenance(dataset="celeba", n_samples=3, **fields)
    meta, tensors = make("similarity_spec")
    raw = json.loads(meta.model_dump_json())
    raw["data"] = {**raw["data"], "dataset": "celeba", "content_sha256": None, **fields}
    path = tmp_path / "spec.safetensors"
    write_raw(path, json.dumps(raw), tensors)
    with pytest.raises(InvalidArtifactError, match="data") as error:
        read_artifact(path, expect=SimilaritySpec)
    assert message.strip("'") in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == EXIT_CODES["invalid_artifact"]


@pytest.mark.parametrize(
    ("dataset", "how", "message"),
    [
        ("shapes3d-h5", "per-file", "does not identify shapes3d-h5 data (its kind is 'rows')"),
        ("celeba", "rows", "does not identify celeba data (its kind is 'per-file')"),
        ("shapes3d", "rows", "does not identify shapes3d data (it records none)"),
    ],
)
def test_each_data_set_records_its_own_kind_of_content_hash(dataset, how, message) -> None:
    """Image files are hashed per file, a 3dshapes.h5 by its stored rows, rendered data not at
    all: any other pairing is refused, and ``with_content`` writes the data set's own kind."""
    with pytest.raises(ValueError, match=re.escape(message)):
        DataProvenance(dataset=dataset, n_samples=3, content_sha256="a" * 64, content_hash=how)
    for name, kind in (("celeba", "per-file"), ("shapes3d-h5", "rows")):
        recorded = DataProvenance(dataset=name, n_samples=3).with_content("b" * 64)
        assert (recorded.content_hash, recorded.content_sha256) == (kind, "b" * 64)
    assert DataProvenance(dataset="shapes3d", n_samples=3).with_content(None).content_hash is None


def test_stored_vector_names_match_the_vectors_in_the_file(tmp_path) -> None:
    """The reader checks the attribute_vectors tensor has one row per recorded vector name."""
    meta, tensors = make("similarity_spec")
    raw = json.loads(meta.model_dump_json())
    second = {**raw["attributes"][0], "name": "scale", "num_values": 8, "vector_names": ["scale"]}
    raw["attributes"].append(second)  # two names, still one row
    path = tmp_path / "spec.safetensors"
    write_raw(path, json.dumps(raw), tensors)
    result = CliRunner().invoke(regulator, ["show", str(path), "--out", str(tmp_path / "s.png")])
    one_line(result, EXIT_CODES["invalid_artifact"], "attribute_vectors")
