"""Reads stay inside the data root (issue: confined reads), for every source layout.

A listing (CelebA's attribute and partition files in the official and CSV layouts, a folder's
CSV) that names ``../x``, an absolute path, or a file that is a symbolic link leading out of the
root is refused with exit 2 naming the listing and its line, and nothing outside the root is
opened: names are checked when the listing is parsed, and each path is resolved again when it
is read (a link swapped in after parsing is caught). ``allow_outside`` (the CLI's
``--allow-symlinks-outside-root``) reads a link farm.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from factories import one_line, run
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.regulator.content_hash import read_samples
from lassi.regulator.datasets import CelebASource, DataError, FolderSource, OutsideRootError
from lassi.spec import EXIT_CODES

USAGE = EXIT_CODES["usage"]
LAYOUTS = ("celeba_official", "celeba_csv", "folder")
LISTING = {
    "celeba_official": "list_attr_celeba.txt",
    "celeba_csv": "list_attr_celeba.csv",
    "folder": "attributes.csv",
}


def _image(path: Path, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(path)


def make_root(layout: str, root: Path, names: list[str], partition_extra: str = "") -> Path:
    """A data root of ``layout`` listing ``names`` (images written for the plain ones)."""
    images = root / "img_align_celeba" if layout.startswith("celeba") else root
    images.mkdir(parents=True)
    for k, name in enumerate(names):
        if not name.startswith("/") and ".." not in name:
            _image(images / name, 40 * k)
    codes = [0, 2] * len(names)
    if layout == "celeba_official":
        rows = "".join(f"{name} {1 if k % 2 else -1} 1\n" for k, name in enumerate(names))
        (root / "list_attr_celeba.txt").write_text(f"{len(names)}\nSmiling Young\n{rows}")
        parts = "".join(f"{name} {codes[k]}\n" for k, name in enumerate(names))
        (root / "list_eval_partition.txt").write_text(parts + partition_extra)
    elif layout == "celeba_csv":
        rows = "".join(f"{name},{1 if k % 2 else -1},1\n" for k, name in enumerate(names))
        (root / "list_attr_celeba.csv").write_text(f"image_id,Smiling,Young\n{rows}")
        parts = "".join(f"{name},{codes[k]}\n" for k, name in enumerate(names))
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + parts + partition_extra.replace(" ", ",")
        )
    else:
        rows = "".join(
            f"{name},{'train' if k % 2 == 0 else 'test'},{k % 2}\n" for k, name in enumerate(names)
        )
        (root / "attributes.csv").write_text(f"file,split,object_hue\n{rows}")  # the chain's task
    return root


def open_source(layout: str, root: Path, allow_outside: bool = False):
    if layout.startswith("celeba"):
        return CelebASource(root, image_size=8, allow_outside=allow_outside)
    return FolderSource(root, image_size=8, allow_outside=allow_outside)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder outside every data root, with an image a hostile listing points at."""
    secret = tmp_path / "secret"
    _image(secret / "img.png", 250)
    return secret


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every file path the code under test opens (builtins/io open, os.open), resolved."""
    seen: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def record(path: object) -> None:
        if isinstance(path, str | os.PathLike):
            seen.append(os.path.realpath(os.fspath(path)))

    def spy_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        record(file)
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        record(path)
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    yield seen


def _nothing_read_in(seen: list[str], folder: Path) -> None:
    inside = [path for path in seen if Path(path).is_relative_to(folder.resolve())]
    assert not inside, f"read outside the data root: {inside}"


def _exit_2_naming(error: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(error.value)
    assert isinstance(error.value, OutsideRootError) and error.value.exit_code == USAGE
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


# ------------------------------------------------------------------ names refused when parsed


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dotdot_name_is_refused_when_the_listing_is_parsed(layout, tmp_path, outside, opened):
    root = make_root(layout, tmp_path / "data", ["a.png", "../secret/img.png", "b.png"])
    with pytest.raises(DataError) as error:
        open_source(layout, root)
    _exit_2_naming(error, LISTING[layout], "line 3" if layout != "celeba_official" else "line 4",
                   "'..'")  # fmt: skip
    _nothing_read_in(opened, outside)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_absolute_name_is_refused_when_the_listing_is_parsed(layout, tmp_path, outside, opened):
    target = str(outside / "img.png")
    root = make_root(layout, tmp_path / "data", ["a.png", target])
    with pytest.raises(DataError) as error:
        open_source(layout, root)
    _exit_2_naming(error, LISTING[layout], "absolute path")
    _nothing_read_in(opened, outside)


@pytest.mark.parametrize("layout", ["celeba_official", "celeba_csv"])
def test_partition_file_naming_outside_is_refused(layout, tmp_path, outside, opened):
    root = make_root(layout, tmp_path / "data", ["a.png", "b.png"], "../../x.jpg 0\n")
    with pytest.raises(DataError) as error:
        open_source(layout, root)
    partition = "list_eval_partition." + ("txt" if layout == "celeba_official" else "csv")
    _exit_2_naming(error, partition, "line", "'..'")
    _nothing_read_in(opened, outside)


# ------------------------------------------------------------- links resolved when read


@pytest.mark.parametrize("layout", LAYOUTS)
def test_symlink_leading_outside_is_refused_at_read_time(layout, tmp_path, outside, opened):
    root = make_root(layout, tmp_path / "data", ["a.png", "b.png"])
    images = root / "img_align_celeba" if layout.startswith("celeba") else root
    (images / "b.png").unlink()
    (images / "b.png").symlink_to(outside / "img.png")
    source = open_source(layout, root)
    assert source.images(np.array([0])).shape == (1, 8, 8, 3)  # the file inside reads
    with pytest.raises(DataError) as error:
        source.images(np.array([1]))
    _exit_2_naming(error, LISTING[layout], "line", "outside the data root",
                   "--allow-symlinks-outside-root")  # fmt: skip
    with pytest.raises(DataError) as error:  # the content hash reads through the same check
        read_samples(source, [0, 1])
    _exit_2_naming(error, "outside the data root")
    _nothing_read_in(opened, outside)
    # a link farm, opted in: the link is followed
    farm = open_source(layout, root, allow_outside=True)
    assert farm.images(np.array([1]))[0, 4, 4, 0] > 200


@pytest.mark.parametrize("layout", LAYOUTS)
def test_symlink_swapped_in_after_parsing_is_caught(layout, tmp_path, outside, opened):
    root = make_root(layout, tmp_path / "data", ["a.png", "b.png"])
    source = open_source(layout, root)  # parsed while b.png is a plain file
    images = root / "img_align_celeba" if layout.startswith("celeba") else root
    (images / "b.png").unlink()
    (images / "b.png").symlink_to(outside / "img.png")
    with pytest.raises(DataError) as error:
        source.images(np.array([1]))
    _exit_2_naming(error, "outside the data root")
    _nothing_read_in(opened, outside)


def test_links_inside_the_root_are_followed(tmp_path):
    root = make_root("folder", tmp_path / "data", ["a.png", "b.png"])
    (root / "b.png").unlink()
    (root / "b.png").symlink_to(root / "a.png")
    source = open_source("folder", root)
    np.testing.assert_array_equal(source.images(np.array([1])), source.images(np.array([0])))


def test_celeba_image_folder_linked_outside_needs_the_opt_in(tmp_path):
    root = make_root("celeba_official", tmp_path / "data", ["a.png", "b.png"])
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "img_align_celeba", elsewhere)
    (root / "img_align_celeba").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataError) as error:
        open_source("celeba_official", root)
    _exit_2_naming(error, "img_align_celeba", "outside the data root")
    farm = open_source("celeba_official", root, allow_outside=True)
    assert farm.images(np.array([0, 1])).shape == (2, 8, 8, 3)


def test_listing_linked_outside_is_refused(tmp_path, outside):
    root = make_root("folder", tmp_path / "data", ["a.png"])
    (outside / "attributes.csv").write_text("file,split,smiling\nimg.png,train,1\n")
    (root / "attributes.csv").unlink()
    (root / "attributes.csv").symlink_to(outside / "attributes.csv")
    with pytest.raises(DataError) as error:
        open_source("folder", root)
    _exit_2_naming(error, "attributes.csv", "outside the data root")


# ------------------------------------------------------------------------- through the CLIs


@pytest.fixture(scope="module")
def certified(chain: dict[str, Path], tmp_path_factory) -> dict[str, Path]:
    """A certified bundle of two test images of a folder, its ONNX base function, the data."""
    d = tmp_path_factory.mktemp("confined")
    data = make_root("folder", d / "data", [f"img{i}.png" for i in range(4)])
    bundle = d / "b.safetensors"
    run(producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--dataset", "folder", "--data-root", str(data), "--split", "test",
                   "--certify", "--n0", "1500", "--n", "2000", "--delta", "0.1", "--quiet",
                   "--out", str(bundle)])  # fmt: skip
    run(producer, ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--out-dir", str(d / "onnx")])  # fmt: skip
    return {"data": data, "bundle": bundle, "onnx": d / "onnx" / "base_function.onnx"}


def _hostile_copy(data: Path, to: Path, outside: Path, how: str) -> Path:
    copy = Path(shutil.copytree(data, to))
    if how == "dotdot":
        csv = copy / "attributes.csv"
        csv.write_text(csv.read_text().replace("img1.png", "../secret/img.png"))
    elif how == "absolute":
        csv = copy / "attributes.csv"
        csv.write_text(csv.read_text().replace("img1.png", str(outside / "img.png")))
    else:  # the same bytes, but behind a link that leaves the root
        shutil.copyfile(copy / "img1.png", outside / "img1.png")
        (copy / "img1.png").unlink()
        (copy / "img1.png").symlink_to(outside / "img1.png")
    return copy


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
@pytest.mark.slow
def test_encode_refuses_a_listing_that_leaves_the_root(chain, tmp_path, outside, opened, how):
    copy = _hostile_copy(make_root("folder", tmp_path / "data", ["img0.png", "img1.png"]),
                         tmp_path / "copy", outside, how)  # fmt: skip
    opened.clear()
    out = tmp_path / "b.safetensors"
    result = CliRunner().invoke(producer, [
        "encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), "--dataset",
        "folder", "--data-root", str(copy), "--split", "test", "--quiet", "--out", str(out)])  # fmt: skip
    line = one_line(result, USAGE, "attributes.csv", "line 3")
    assert ("outside the data root" if how == "symlink" else "data root") in line
    assert not out.exists()
    _nothing_read_in(opened, outside)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
@pytest.mark.slow
def test_audit_refuses_a_listing_that_leaves_the_root(chain, certified, tmp_path, outside, opened, how):
    copy = _hostile_copy(certified["data"], tmp_path / "copy", outside, how)
    opened.clear()
    result = CliRunner().invoke(regulator, [
        "audit", "--spec", str(chain["spec"]), "--base-function", str(certified["onnx"]),
        "--bundle", str(certified["bundle"]), "--data-root", str(copy), "--quiet"])  # fmt: skip
    one_line(result, USAGE, "attributes.csv", "line 3")
    _nothing_read_in(opened, outside)


@pytest.mark.slow
def test_audit_reads_a_link_farm_only_when_asked(chain, certified, tmp_path, outside):
    """The audit's opt-in for links that leave --data-root: the same bytes behind a link are
    refused without it (exit 2) and audited with it (the data matches, the claims confirmed)."""
    copy = _hostile_copy(certified["data"], tmp_path / "copy", outside, "symlink")
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(certified["onnx"]),
            "--bundle", str(certified["bundle"]), "--data-root", str(copy), "--quiet"]  # fmt: skip
    one_line(CliRunner().invoke(regulator, args), USAGE, "attributes.csv", "line 3")
    result = CliRunner().invoke(regulator, [*args, "--allow-symlinks-outside-root"])
    assert result.exit_code == 0, result.output
    assert "confirmed" in result.output
