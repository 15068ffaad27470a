"""``--dataset fairface``: FairFace's released layout (label CSVs, train/ and val/ images) through
its reader and the whole chain, with race and age as multi-valued sensitive attributes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from factories import build_chain, run
from lassi.regulator.cli import main as regulator
from lassi.regulator.data_config import infer_dataset
from lassi.regulator.datasets import DataError, OutsideRootError
from lassi.regulator.fairface import AGES, RACES, FairFaceSource, age_3, age_bin
from lassi.spec import EXIT_CODES, SimilaritySpec, read_artifact

N_TRAIN, N_VAL = 126, 42
RACE_TEXT = [r.replace("_", " ") if r in ("East_Asian", "Middle_Eastern", "Southeast_Asian") else r for r in RACES]


def _factors(i: int) -> tuple[int, int, int]:
    """(age, gender, race) of row i: every race and age in every split."""
    return (i // 7) % len(AGES), i % 2, i % len(RACES)


def _image(age: int, gender: int, race: int, rng: np.random.Generator) -> Image.Image:
    """A 24x24 'face': background by race, a centre disc whose size grows with age, noise."""
    size = 24
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 12) ** 2 + (xx - 12) ** 2 < (3 + age) ** 2
    colour = np.array([30 + 30 * race, 200 - 25 * race, 80 + 100 * gender], dtype=np.float64)
    pixels = np.where(disc[..., None], 255 - colour, colour) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_fairface(root: Path, n_train: int = N_TRAIN, n_val: int = N_VAL, header: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = [header or "file,age,gender,race,service_test"]
        for i in range(n):
            age, gender, race = _factors(i + (0 if split == "train" else 3))
            _image(age, gender, race, rng).save(root / split / f"{i + 1}.jpg", quality=95)
            service = "True" if i % 3 else "False"
            lines.append(f"{split}/{i + 1}.jpg,{AGES[age]},{('Female', 'Male')[gender]},{RACE_TEXT[race]},{service}")
        (root / f"fairface_label_{split}.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def fairface(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fairface(tmp_path_factory.mktemp("fairface"))


def test_labels_follow_the_authors_codes(fairface: Path) -> None:
    source = FairFaceSource(fairface, image_size=16)
    ids = np.arange(N_TRAIN + N_VAL)
    labels = source.attributes(ids)
    expected = np.array([_factors(i) for i in range(N_TRAIN)] + [_factors(i + 3) for i in range(N_VAL)])
    np.testing.assert_array_equal(labels["age"], expected[:, 0])
    np.testing.assert_array_equal(labels["gender"], expected[:, 1])
    np.testing.assert_array_equal(labels["race"], expected[:, 2])
    np.testing.assert_array_equal(labels["age_bin"], (expected[:, 0] > 3).astype(int))
    np.testing.assert_array_equal(labels["age_3"], age_3(expected[:, 0]))
    np.testing.assert_array_equal(labels["black"], (expected[:, 2] == 0).astype(int))
    assert [source.num_classes(a) for a in ("age", "race", "gender", "age_bin", "age_3", "white")] == [9, 7, 2, 2, 3, 2]
    assert source.file_names(np.array([0, N_TRAIN])) == ["train/1.jpg", "val/1.jpg"]
    assert source.images(np.array([0, 5])).shape == (2, 16, 16, 3)
    assert list(age_bin(np.arange(9))) == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_splits_are_the_authors(fairface: Path, tmp_path: Path) -> None:
    """test = the val CSV; train/val = the train CSV split 80/20 by RandomState(42) as
    scikit-learn's train_test_split(train_size=0.8) does, or by custom_*_split.txt."""
    source = FairFaceSource(fairface)
    np.testing.assert_array_equal(source.split_ids("test"), np.arange(N_TRAIN, N_TRAIN + N_VAL))
    permutation = np.random.RandomState(42).permutation(N_TRAIN)
    n_val = N_TRAIN - math.floor(0.8 * N_TRAIN)
    np.testing.assert_array_equal(source.split_ids("val"), np.sort(permutation[:n_val]))
    np.testing.assert_array_equal(source.split_ids("train"), np.sort(permutation[n_val:]))
    (fairface / "custom_train_split.txt").write_text("\n".join(str(i) for i in range(1, 101)) + "\n")
    (fairface / "custom_valid_split.txt").write_text("\n".join(str(i) for i in range(101, 127)) + "\n")
    try:
        custom = FairFaceSource(fairface)
        np.testing.assert_array_equal(custom.split_ids("train"), np.arange(100))
        np.testing.assert_array_equal(custom.split_ids("val"), np.arange(100, 126))
        (fairface / "custom_valid_split.txt").write_text("100\n127\n")
        with pytest.raises(DataError, match="not a row number in 1..126"):
            FairFaceSource(fairface)
        (fairface / "custom_valid_split.txt").write_text("100\n101\n")
        with pytest.raises(DataError, match="shares rows"):
            FairFaceSource(fairface)
        (fairface / "custom_valid_split.txt").unlink()
        with pytest.raises(DataError, match="custom_valid_split.txt"):
            FairFaceSource(fairface)
    finally:
        for name in ("custom_train_split.txt", "custom_valid_split.txt"):
            (fairface / name).unlink(missing_ok=True)


def _rewrite(root: Path, split: str, edit) -> None:
    path = root / f"fairface_label_{split}.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    "edit,needle,error",
    [
        (lambda lines: ["file,age,sex,race", *lines[1:]], "header must be", DataError),
        (lambda lines: [lines[0], lines[1].replace("White", "Martian").replace("Black", "Martian"), *lines[2:]], "race 'Martian'", DataError),
        (lambda lines: [lines[0], lines[1].replace("0-2", "0-3"), *lines[2:]], "age '0-3'", DataError),
        (lambda lines: [lines[0], "../outside.jpg,0-2,Male,White,True", *lines[2:]], "..", OutsideRootError),
        (lambda lines: [lines[0], "/etc/passwd,0-2,Male,White,True", *lines[2:]], "absolute", OutsideRootError),
        (lambda lines: [lines[0], "train/1.jpg,0-2,Male", *lines[2:]], "columns", DataError),
        (lambda lines: lines[:1], "no data rows", DataError),
    ],
    ids=["header", "race", "age", "dotdot", "absolute", "short_row", "empty"],
)
def test_files_not_in_the_layout_are_refused(edit, needle, error, tmp_path: Path) -> None:
    root = write_fairface(tmp_path / "ff", n_train=14, n_val=7)
    _rewrite(root, "train", edit)
    with pytest.raises(error, match=needle):
        FairFaceSource(root)
    result = CliRunner().invoke(regulator, ["train-glow", "--dataset", "fairface", "--data-root", str(root),
                                            "--steps", "1", "--out", str(tmp_path / "g.safetensors")])
    assert result.exit_code == EXIT_CODES["usage"] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "g.safetensors").exists()


def test_a_missing_label_file_is_named(tmp_path: Path) -> None:
    root = write_fairface(tmp_path / "ff", n_train=14, n_val=7)
    (root / "fairface_label_val.csv").unlink()
    with pytest.raises(DataError, match="fairface_label_val.csv"):
        FairFaceSource(root)


@pytest.mark.slow
def test_the_whole_chain_with_race_sensitive(fairface: Path, tmp_path: Path) -> None:
    """Race (7 values) as the sensitive attribute: its pair vectors (low half 0..2 against high
    half 4..6: 9), the authors' Age_bin task, through producer and consumer."""
    data = ["--dataset", "fairface", "--data-root", str(fairface), "--image-size", "16"]
    assert infer_dataset(fairface, None) == "fairface"
    chain = build_chain(tmp_path, data=data, attribute="race", task="age_bin")
    spec = read_artifact(chain["spec"], expect=SimilaritySpec)
    (race,) = spec.meta.attributes
    assert spec.meta.data.dataset == "fairface"
    assert race.name == "race" and race.vectors == "pairs" and len(race.vector_names) == 9
    assert race.value_counts == [int(c) for c in np.bincount(FairFaceSource(fairface).attributes(
        FairFaceSource(fairface).split_ids("train"))["race"], minlength=7)]
    assert chain["report"].is_file()
    out = tmp_path / "age_gender.safetensors"
    run(regulator, ["define", "--glow", str(chain["glow"]), "--attribute", "age", "--attribute", "gender",
                    *data, "--quiet", "--out", str(out)])
    spec = read_artifact(out, expect=SimilaritySpec)
    age, gender = spec.meta.attributes
    assert (age.num_values, len(age.vector_names), gender.num_values, gender.vectors) == (9, 16, 2, "halves")
    assert spec.tensors["attribute_vectors"].shape == (16 + 1, 3 * 16 * 16)
