"""Image sources: built-in 3D Shapes, CelebA in its official layout, folder + CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import CELEBA_ATTRIBUTES, INNER, N_FACES, OUTER, face_image, label_grid, write_celeba
from lassi.regulator.datasets import (
    CelebASource,
    DataError,
    FolderSource,
    ImageSource,
    Shapes3DSource,
    binary_split,
)
from lassi.regulator.shapes3d import FACTOR_NAMES, Shapes3D
from lassi.spec.contract.errors import UsageError


@pytest.fixture()
def celeba(tmp_path: Path) -> Path:
    """A miniature CelebA folder in exactly the official file formats."""
    return write_celeba(tmp_path / "celeba")


def _one_line(error: pytest.ExceptionInfo[DataError], *needles: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


# ----------------------------------------------------------------------------- 3D Shapes


def test_shapes3d_source() -> None:
    source = Shapes3DSource(image_size=32, seed=1, n_train=300, n_val=50, n_test=60)
    assert isinstance(source, ImageSource)
    assert source.attribute_names == list(FACTOR_NAMES)
    ids = {split: source.split_ids(split) for split in ("train", "val", "test")}
    assert [len(v) for v in ids.values()] == [300, 50, 60]
    labels = source.attributes(ids["test"])
    factors = Shapes3D.index_to_factors(ids["test"])
    for column, name in enumerate(source.attribute_names):
        np.testing.assert_array_equal(labels[name], factors[:, column])
    assert source.num_classes("orientation") == 15 and source.num_classes("shape") == 4
    images = source.images(ids["val"][:3])
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    expected = Shapes3D(32).render(Shapes3D.index_to_factors(ids["val"][:3]))
    np.testing.assert_array_equal(images, expected)


def test_shapes3d_source_correlated_and_errors() -> None:
    source = Shapes3DSource(32, 2, 2000, 10, 10, correlate=("orientation", "object_hue", 1.0))
    labels = source.attributes(source.split_ids("train"))
    high_hue = labels["object_hue"] >= 5
    assert (labels["orientation"][high_hue] >= 8).all() and (
        labels["orientation"][~high_hue] <= 6
    ).all()
    with pytest.raises(DataError) as error:
        source.num_classes("colour")
    _one_line(error, "colour", "orientation")
    with pytest.raises(DataError, match="split"):
        source.split_ids("training")


def test_binary_split_multi_valued_and_binary(celeba: Path) -> None:
    source = Shapes3DSource(32, 0, 1000, 10, 10)
    ids = source.split_ids("train")
    with_, without = binary_split(source, "orientation", ids)
    orientation = source.attributes(ids)["orientation"]
    np.testing.assert_array_equal(with_, orientation >= 8)
    np.testing.assert_array_equal(without, orientation <= 6)
    assert not (with_ & without).any() and not (with_ | without)[orientation == 7].any()

    faces = CelebASource(celeba, image_size=16)
    all_ids = np.arange(N_FACES)
    with_, without = binary_split(faces, "Smiling", all_ids)
    smiling = label_grid()[:, CELEBA_ATTRIBUTES.index("Smiling")] == 1
    np.testing.assert_array_equal(with_, smiling)
    np.testing.assert_array_equal(without, ~smiling)
    with pytest.raises(DataError, match="Smiling"):
        binary_split(faces, "smiling", all_ids)


# ----------------------------------------------------------------------------- CelebA


def test_celeba_loads_official_layout(celeba: Path) -> None:
    source = CelebASource(celeba, image_size=32)
    assert source.name == "celeba" and source.attribute_names == CELEBA_ATTRIBUTES
    np.testing.assert_array_equal(source.split_ids("train"), [0, 1, 2])
    np.testing.assert_array_equal(source.split_ids("val"), [3])
    np.testing.assert_array_equal(source.split_ids("test"), [4, 5])
    labels = source.attributes(np.arange(N_FACES))
    expected = (label_grid() == 1).astype(np.int64)
    for j, name in enumerate(CELEBA_ATTRIBUTES):
        assert labels[name].dtype == np.int64
        np.testing.assert_array_equal(labels[name], expected[:, j])
    assert source.num_classes("Young") == 2
    images = source.images(np.array([5, 0]))
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    # crop 148 is clipped to the 44 px width: the centre is the face, the corners background
    assert np.abs(images[0, 16, 16].astype(int) - INNER).max() < 30
    assert np.abs(images[0, 0, 0].astype(int) - OUTER).max() < 30


def test_celeba_crop_and_size(celeba: Path) -> None:
    tight = CelebASource(celeba, image_size=64, crop=20, resample="area").images(np.array([1]))
    assert tight.shape == (1, 64, 64, 3)
    assert np.abs(tight[0].astype(int) - INNER).max(axis=-1).mean() < 15  # all inner square


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (lambda r: (r / "list_attr_celeba.txt").unlink(), ["list_attr_celeba.txt", "not found"]),
        (
            lambda r: (r / "list_eval_partition.txt").unlink(),
            ["list_eval_partition.txt", "not found"],
        ),
        (
            lambda r: (r / "img_align_celeba").rename(r / "images"),
            ["img_align_celeba", "not found"],
        ),
        (lambda r: _edit(r / "list_attr_celeba.txt", 0, "7"), ["declares 7 images but 6 rows"]),
        (lambda r: _edit(r / "list_attr_celeba.txt", 0, "many"), ["line 1", "image count"]),
        (
            lambda r: _edit(r / "list_attr_celeba.txt", 3, "000002.jpg 1 -1"),
            ["line 4", "3 columns", "41"],
        ),
        (
            lambda r: _edit_token(r / "list_attr_celeba.txt", 4, 5, "x"),
            ["line 5", "'x'", "not an integer"],
        ),
        (lambda r: _edit_token(r / "list_attr_celeba.txt", 6, 2, "2"), ["line 7", "-1 or 1"]),
        (lambda r: _edit(r / "list_eval_partition.txt", 1, "000002.jpg 3"), ["line 2", "0|1|2"]),
        (
            lambda r: _edit(r / "list_eval_partition.txt", 5, "999999.jpg 2"),
            ["no partition entry", "000006.jpg"],
        ),
    ],
)
def test_celeba_data_errors(
    celeba: Path, damage: Callable[[Path], None], needles: list[str]
) -> None:
    damage(celeba)
    with pytest.raises(DataError) as error:
        CelebASource(celeba)
    _one_line(error, *needles)
    assert isinstance(error.value, ValueError) and isinstance(error.value, UsageError)


def _edit(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line] = text
    path.write_text("\n".join(lines) + "\n")


def _edit_token(path: Path, line: int, token: int, text: str) -> None:
    lines = path.read_text().splitlines()
    parts = lines[line].split()
    parts[token] = text
    lines[line] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")


def test_celeba_missing_folder_unknown_attribute_and_bad_images(
    celeba: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError) as error:
        CelebASource(tmp_path / "nowhere")
    _one_line(error, "nowhere", "does not exist")

    source = CelebASource(celeba, image_size=16)
    with pytest.raises(DataError) as error:
        source.num_classes("Smile")
    _one_line(error, "list_attr_celeba.txt", "'Smile'", "5_o_Clock_Shadow", "(40 in all)")

    (celeba / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError) as error:
        source.images(np.array([0, 2]))
    _one_line(error, "000003.jpg", "cannot read image")

    (celeba / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(DataError) as error:
        source.images(np.array([3]))
    _one_line(error, "000004.jpg", "not found")


# ----------------------------------------------------------------------------- folder + CSV


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    (root / "img").mkdir(parents=True)
    rows = ["file,split,young,age_group"]
    for i in range(8):
        face_image(60, 40).save(root / "img" / f"p{i}.png")
        split = ["train", "train", "train", "val", "test", "train", "val", "test"][i]
        rows.append(f"img/p{i}.png,{split},{i % 2},{i % 4}")
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_source(folder: Path) -> None:
    source = FolderSource(folder, image_size=24)
    assert source.name == "faces" and source.attribute_names == ["young", "age_group"]
    np.testing.assert_array_equal(source.split_ids("train"), [0, 1, 2, 5])
    np.testing.assert_array_equal(source.split_ids("val"), [3, 6])
    np.testing.assert_array_equal(source.split_ids("test"), [4, 7])
    labels = source.attributes(np.array([7, 2]))
    np.testing.assert_array_equal(labels["young"], [1, 0])
    np.testing.assert_array_equal(labels["age_group"], [3, 2])
    assert source.num_classes("young") == 2 and source.num_classes("age_group") == 4
    images = source.images(np.array([0, 1, 2]))
    assert images.shape == (3, 24, 24, 3) and images.dtype == np.uint8
    assert np.abs(images[0, 12, 12].astype(int) - INNER).max() < 30  # centre square crop
    with_, without = binary_split(source, "age_group", np.arange(8))
    np.testing.assert_array_equal(with_, np.arange(8) % 4 >= 2)
    np.testing.assert_array_equal(without, np.arange(8) % 4 < 2)


def test_folder_source_custom_csv(folder: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,split,smiling\nimg/p0.png,train,1\nimg/p1.png,validation,0\n")
    source = FolderSource(folder, csv=csv_path, image_size=8, name="mine")
    assert source.name == "mine"
    np.testing.assert_array_equal(source.split_ids("val"), [1])


@pytest.mark.parametrize(
    ("csv_text", "needles"),
    [
        ("name,split,young\na.png,train,1\n", ["header", "file,split"]),
        ("file,split\na.png,train\n", ["header"]),
        ("file,split,young\n", ["no data rows"]),
        ("file,split,young\na.png,train,1,2\n", ["line 2", "4 columns", "expected 3"]),
        (
            "file,split,young\na.png,train,1\nb.png,train,yes\n",
            ["line 3", "'yes'", "not an integer"],
        ),
        ("file,split,young\na.png,train,-1\n", ["line 2", "young", "non-negative"]),
        ("file,split,young\na.png,dev,1\n", ["line 2", "split", "'dev'"]),
    ],
)
def test_folder_csv_errors(folder: Path, csv_text: str, needles: list[str]) -> None:
    (folder / "attributes.csv").write_text(csv_text)
    with pytest.raises(DataError) as error:
        FolderSource(folder)
    _one_line(error, "attributes.csv", *needles)


def test_folder_missing_paths(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        FolderSource(tmp_path / "absent")
    _one_line(error, "absent", "does not exist")
    (folder / "attributes.csv").unlink()
    with pytest.raises(DataError) as error:
        FolderSource(folder)
    _one_line(error, "attributes.csv", "not found")


def test_regulator_cli_on_celeba_folder(celeba: Path, tmp_path: Path) -> None:
    """train-glow and define on a CelebA folder; a bad attribute or folder is one line, exit 2."""
    from click.testing import CliRunner

    from lassi.regulator.cli import main
    from lassi.spec import SimilaritySpec, read_artifact

    glow, spec = tmp_path / "glow.safetensors", tmp_path / "spec.safetensors"
    Image.fromarray(np.full((54, 44, 3), 90, np.uint8)).save(
        celeba / "img_align_celeba" / "000003.jpg"
    )  # smiles
    data = ["--dataset", "celeba", "--data-root", str(celeba), "--image-size", "8"]
    result = CliRunner().invoke(
        main,
        [
            "train-glow",
            *data,
            "--levels",
            "1",
            "--depth",
            "1",
            "--hidden",
            "4",
            "--steps",
            "3",
            "--batch-size",
            "3",
            "--warmup",
            "1",
            "--quiet",
            "--out",
            str(glow),
        ],
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main,
        [
            "define",
            "--glow",
            str(glow),
            "--attribute",
            "Smiling",
            *data,
            "--quiet",
            "--out",
            str(spec),
        ],
    )
    assert result.exit_code == 0, result.output
    meta = read_artifact(spec, expect=SimilaritySpec).meta
    assert (
        meta.attribute_names == ["Smiling"]
        and meta.data.dataset == "celeba"
        and meta.fidelity is None
    )
    bad = CliRunner().invoke(
        main,
        [
            "define",
            "--glow",
            str(glow),
            "--attribute",
            "Smilling",
            *data,
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
    )
    assert (
        bad.exit_code == 2
        and "did you mean 'Smiling'" in bad.output
        and len(bad.output.strip().splitlines()) == 1
    )
    missing = CliRunner().invoke(
        main,
        [
            "train-glow",
            "--dataset",
            "celeba",
            "--data-root",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "y.safetensors"),
        ],
    )
    assert (
        missing.exit_code == 2
        and "nope" in missing.output
        and len(missing.output.strip().splitlines()) == 1
    )
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
