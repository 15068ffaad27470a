"""Relocatable, private artifacts and data-root errors that say what is wrong.

A tiny chain on an image folder (regulator -> producer -> consumer, plus the export, the audit
and ``show``) writes no absolute path and no host name into any file it hands on: the data is
recorded by kind, options and relative names (a CSV in the root by its relative name, one
elsewhere by its SHA-256). Every reader takes its own ``--data-root``: the folder moved elsewhere
still serves ``show`` and ``audit``; an older artifact's recorded path is ignored with a note.
Mistakes with the data root get one line that says what is wrong, in the project's words.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from factories import one_line, run, write_raw
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, SimilaritySpec, read_artifact

USAGE, INVALID = EXIT_CODES["usage"], EXIT_CODES["invalid_artifact"]
PYDANTIC_WORDING = ("Value error,", "Input should be", "option 'value'", "validation error")


def _image_folder(root: Path, n: int = 16) -> Path:
    """``n`` random 12x12 PNGs under ``root/img``, labels in ``root/labels/attrs.csv``
    (``a`` sensitive, ``b`` the task), half train, a quarter val and test each."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = ["file,split,a,b"]
    for i in range(n):
        pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        pixels[..., 0] = 200 if i % 2 else 30  # a: the red channel
        Image.fromarray(pixels).save(root / "img" / f"p{i}.png")
        split = ("train", "train", "val", "test")[i % 4]
        rows.append(f"img/p{i}.png,{split},{i % 2},{(i // 4) % 2}")
    (root / "labels" / "attrs.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def folder_chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("relocatable")
    data = _image_folder(d / "site-a" / "data")
    out = d / "out"
    out.mkdir()
    p = {name: out / f"{name}.safetensors" for name in ("glow", "spec", "encoder", "train", "test", "classifier", "report")}  # fmt: skip
    source = ["--dataset", "folder", "--data-root", str(data), "--csv", str(data / "labels" / "attrs.csv")]
    run(regulator, ["train-glow", *source, "--image-size", "8", "--levels", "1", "--depth", "1",
                    "--hidden", "8", "--steps", "3", "--batch-size", "4", "--warmup", "1", "--quiet",
                    "--out", str(p["glow"])])  # fmt: skip
    run(regulator, ["define", "--glow", str(p["glow"]), "--attribute", "a", "--epsilon", "0.5",
                    *source, "--quiet", "--out", str(p["spec"])])  # fmt: skip
    run(producer, ["train", "--spec", str(p["spec"]), *source, "--task", "b", "--hidden", "16",
                   "--k", "8", "--epochs", "1", "--batch-size", "4", "--attack-points", "2",
                   "--quiet", "--out", str(p["encoder"])])  # fmt: skip
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *source,
                   "--split", "train", "--quiet", "--out", str(p["train"])])  # fmt: skip
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *source,
                   "--split", "test", "--certify", "--n0", "1500", "--n", "2000", "--delta", "0.4",
                   "--quiet", "--out", str(p["test"])])  # fmt: skip
    run(producer, ["export-onnx", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]),
                   "--out-dir", str(out / "onnx")])  # fmt: skip
    run(consumer, ["train", "--bundle", str(p["train"]), "--task", "b", "--sigma", "0.5",
                   "--epochs", "2", "--quiet", "--out", str(p["classifier"])])  # fmt: skip
    run(consumer, ["verify", "--classifier", str(p["classifier"]), "--bundle", str(p["test"]),
                   "--n0", "100", "--n", "500", "--quiet", "--out", str(p["report"])])  # fmt: skip
    # the data moves to another site: every later reader passes its own --data-root
    moved = d / "site-b" / "moved"
    moved.parent.mkdir()
    shutil.move(data, moved)
    run(regulator, ["audit", "--spec", str(p["spec"]), "--base-function", str(out / "onnx" / "base_function.onnx"),
                    "--bundle", str(p["test"]), "--data-root", str(moved), "--count", "2", "--quiet",
                    "--out", str(out / "findings.json")])  # fmt: skip
    run(regulator, ["show", str(p["spec"]), "--data-root", str(moved), "--inputs", "2", "--steps", "3",
                    "--out", str(out / "strips.png")])  # fmt: skip
    return {**p, "out": out, "data": moved, "sites": d}


def _header_json(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(size))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return [value, *_strings(json.loads(value))]  # metadata values hold JSON text
        except (ValueError, TypeError):
            return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@pytest.mark.slow
def test_no_artifact_records_an_absolute_path_or_host_name(folder_chain) -> None:
    """The acceptance test: grep every written file (artifact headers in full) for the sites'
    paths, any absolute path, and the host name."""
    local = {str(folder_chain["sites"]), str(folder_chain["sites"].resolve()), str(Path.home())}
    out = folder_chain["out"]
    written = sorted(  # what is handed on: not the local caches (.cache/)
        p for p in out.rglob("*") if p.is_file() and not p.relative_to(out).parts[0].startswith(".")
    )
    artifacts = [p for p in written if p.suffix == ".safetensors"]
    assert len(artifacts) == 7 and any(p.suffix == ".onnx" for p in written)
    _assert_relocatable(artifacts, local)
    for path in written:
        data = path.read_bytes()
        for place in local:
            assert place.encode() not in data, f"{path.name} holds {place}"


def _assert_relocatable(artifacts: list[Path], local: set[str]) -> None:
    """No string of any artifact's header is an absolute path, names a local folder or the
    host."""
    host = socket.gethostname()
    for path in artifacts:
        strings = _strings(_header_json(path))
        assert strings, path
        for text in strings:
            assert not text.startswith(("/", "\\")), f"{path.name} records {text!r}"
            assert not any(place in text for place in local), f"{path.name} records {text!r}"
            assert host not in text or len(host) < 4, f"{path.name} records the host in {text!r}"


@pytest.mark.slow
def test_the_demo_chain_records_no_absolute_path(chain: dict[str, Path]) -> None:
    """The demo's chain (3D Shapes, tests/factories.build_chain) at tiny sizes."""
    artifacts = [path for path in chain.values() if path.suffix == ".safetensors"]
    assert len(artifacts) == 7
    folder = chain["spec"].parent
    _assert_relocatable(artifacts, {str(folder), str(folder.resolve()), str(Path.home())})


@pytest.mark.slow
def test_a_csv_in_the_root_is_recorded_by_its_relative_name(folder_chain) -> None:
    for name in ("glow", "spec", "encoder", "train", "test"):
        data = read_artifact(folder_chain[name]).meta.data
        assert data.dataset == "folder" and "root" not in data.model_dump()
        assert data.options["csv"] == "labels/attrs.csv", name
    assert "root" not in json.loads(_header_json(folder_chain["spec"])["__metadata__"]["lassi"])["data"]


@pytest.mark.slow
def test_a_csv_elsewhere_is_recorded_by_its_hash_and_asked_for(folder_chain, tmp_path) -> None:
    import hashlib

    from lassi.regulator.data_config import DatasetConfig

    csv = tmp_path / "elsewhere.csv"
    shutil.copyfile(folder_chain["data"] / "labels" / "attrs.csv", csv)
    config = DatasetConfig(dataset="folder", root=folder_chain["data"], csv=csv, image_size=8)
    data = config.provenance("test", 4)
    assert data.options == {"image_size": 8, "csv_sha256": hashlib.sha256(csv.read_bytes()).hexdigest()}
    with pytest.raises(Exception, match="only its SHA-256 is recorded.*pass --csv"):
        DatasetConfig.from_provenance(data, where="x", root=folder_chain["data"])
    again = DatasetConfig.from_provenance(data, where="x", root=folder_chain["data"], csv=csv)
    assert again.csv == csv


@pytest.mark.slow
def test_show_reads_the_moved_data_and_needs_a_data_root(folder_chain, tmp_path) -> None:
    assert (folder_chain["out"] / "strips.png").is_file()  # written from the moved folder
    result = CliRunner().invoke(regulator, ["show", str(folder_chain["spec"]), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == USAGE, result.output
    assert "spec.safetensors: records folder data: pass --data-root" in result.output
    assert not (tmp_path / "s.png").exists()
    result = CliRunner().invoke(regulator, ["show", str(folder_chain["spec"]), "--data-root",
                                            str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.png")])  # fmt: skip
    assert result.exit_code == USAGE and "nowhere: does not exist (--data-root)" in result.output


@pytest.mark.slow
def test_a_recorded_data_path_is_never_followed(folder_chain, tmp_path) -> None:
    """A spec that records a data folder is not an artifact of this schema (exit 3, one line);
    one that records its CSV as an absolute path reads, and that path is never followed."""
    artifact = read_artifact(folder_chain["spec"], expect=SimilaritySpec)
    meta = json.loads(artifact.meta.model_dump_json())
    decoy = tmp_path / "decoy"  # what the forged spec points at: must not be read
    rooted = tmp_path / "rooted-spec.safetensors"
    write_raw(rooted, json.dumps(meta | {"data": meta["data"] | {"root": str(decoy)}}), dict(artifact.tensors))
    result = CliRunner().invoke(regulator, ["show", str(rooted), "--data-root", str(folder_chain["data"]),
                                            "--inputs", "1", "--out", str(tmp_path / "r.png")])  # fmt: skip
    assert result.exit_code == INVALID and "data.root" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r.png").exists()
    meta["data"]["options"]["csv"] = str(decoy / "attributes.csv")
    old = tmp_path / "old-spec.safetensors"
    write_raw(old, json.dumps(meta), dict(artifact.tensors))
    result = CliRunner().invoke(regulator, ["show", str(old), "--data-root", str(folder_chain["data"]),
                                            "--csv", str(folder_chain["data"] / "labels" / "attrs.csv"),
                                            "--inputs", "1", "--steps", "3", "--out", str(tmp_path / "s.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").is_file() and not decoy.exists()
    # without --csv, the recorded absolute CSV path is not followed either
    result = CliRunner().invoke(regulator, ["show", str(old), "--data-root", str(folder_chain["data"]),
                                            "--inputs", "1", "--out", str(tmp_path / "t.png")])  # fmt: skip
    assert "records its CSV as" in result.output and "is ignored (pass --csv" in result.output


# ------------------------------------------------------------ data-root errors say what is wrong


def _one_line(result, code: int, *needles: str) -> str:
    line = one_line(result, code, *needles)
    assert not any(word in line for word in PYDANTIC_WORDING), line
    return line


GLOW = ["--image-size", "8", "--levels", "1", "--depth", "1", "--hidden", "4", "--steps", "1",
        "--batch-size", "2", "--quiet"]  # fmt: skip


def test_a_misspelt_data_root_does_not_exist(tmp_path) -> None:
    result = CliRunner().invoke(regulator, ["train-glow", "--data-root", str(tmp_path / "celbea"), *GLOW,
                                            "--out", str(tmp_path / "g.safetensors")])  # fmt: skip
    line = _one_line(result, USAGE, "celbea: does not exist (--data-root)")
    assert "cannot tell" not in line
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(regulator, ["train-glow", "--data-root", str(tmp_path / "file"), *GLOW,
                                            "--out", str(tmp_path / "g.safetensors")])  # fmt: skip
    _one_line(result, USAGE, "file: is not a folder (--data-root)")
    result = CliRunner().invoke(regulator, ["train-glow", "--dataset", "celeba", "--data-root",
                                            str(tmp_path / "celbea"), *GLOW, "--out", str(tmp_path / "g.safetensors")])  # fmt: skip
    _one_line(result, USAGE, "celbea: CelebA folder does not exist")


def test_a_dataset_without_a_folder_says_pass_data_root(tmp_path) -> None:
    for dataset in ("celeba", "folder"):
        result = CliRunner().invoke(regulator, ["train-glow", "--dataset", dataset, *GLOW,
                                                "--out", str(tmp_path / "g.safetensors")])  # fmt: skip
        _one_line(result, USAGE, f"--dataset {dataset} reads images from a folder: pass --data-root")


def test_bad_data_options_are_worded_by_the_project(tmp_path) -> None:
    result = CliRunner().invoke(regulator, ["train-glow", *GLOW[:-1], "--image-size", "2",
                                            "--out", str(tmp_path / "g.safetensors")])  # fmt: skip
    _one_line(result, USAGE, "--image-size: must be greater than or equal to 4")


@pytest.mark.parametrize("command", ["encode", "train"])
@pytest.mark.slow
def test_producer_takes_the_data_kind_from_the_spec(folder_chain, tmp_path, command) -> None:
    """Without --data-root on a spec of folder data: "pass --data-root", not a fall back to 3D
    Shapes (which would say "unknown attribute 'b' for shapes3d")."""
    out = tmp_path / "x.safetensors"
    args = (["encode", "--encoder", str(folder_chain["encoder"])] if command == "encode"
            else ["train", "--task", "b"])  # fmt: skip
    result = CliRunner().invoke(producer, [*args, "--spec", str(folder_chain["spec"]), "--quiet", "--out", str(out)])
    line = _one_line(result, USAGE, "spec.safetensors: records folder data: pass --data-root")
    assert "shapes3d" not in line and not out.exists()
    # a --data-root whose files do not tell the data set: the spec's kind is taken
    bare = tmp_path / "bare"
    bare.mkdir()
    result = CliRunner().invoke(producer, [*args, "--spec", str(folder_chain["spec"]), "--data-root",
                                           str(bare), "--quiet", "--out", str(out)])  # fmt: skip
    _one_line(result, USAGE, "attributes.csv", "not found")


def test_validation_messages_never_use_the_library_wording() -> None:
    from pydantic import BaseModel, Field, ValidationError, model_validator

    from lassi.spec.contract.errors import plain_message, validation_message

    class Options(BaseModel):
        size: int = Field(4, ge=4)
        kind: str = "a"

        @model_validator(mode="after")
        def _check(self) -> Options:
            if self.kind == "b":
                raise ValueError("kind b needs --data-root")
            return self

    cases = [({"size": 1}, "option 'size': must be greater than or equal to 4"),
             ({"size": "x"}, "option 'size': must be a valid integer"),
             ({"kind": "b"}, "kind b needs --data-root"),
             ({"kind": 3}, "option 'kind': must be a valid string")]  # fmt: skip
    for values, expected in cases:
        with pytest.raises(ValidationError) as error:
            Options(**values)
        message = validation_message(error.value, "option")
        assert message.startswith(expected), message
        assert not any(word in message for word in PYDANTIC_WORDING), message
    with pytest.raises(ValidationError) as error:
        Options(size=1)
    assert validation_message(error.value, "option", {"size": "--size"}).startswith("--size: must be")
    assert plain_message("Field required") == "is required"
    assert plain_message("String should match pattern 'x'") == "must match pattern 'x'"
