"""FairFace (Kärkkäinen & Joo, 2021) in its released layout, the paper's third data set (Sec. 5).

``root/fairface_label_train.csv`` and ``root/fairface_label_val.csv`` have the columns
``file,age,gender,race[,service_test]``; ``file`` names the image relative to the root
(``train/1.jpg``, ``val/1.jpg``). Labels become class indices as in the authors' code
(eth-sri/lassi ``FairFaceDataset``):

| attribute | values |
| --- | --- |
| ``age`` | 9 ranges, ``0-2``, ``3-9``, ``10-19``, ..., ``60-69``, ``more than 70`` (0..8) |
| ``race`` | 7: Black, East Asian, Indian, Latino_Hispanic, Middle Eastern, Southeast Asian, White |
| ``gender`` | 2: Female 0, Male 1 |
| ``age_bin`` | the authors' Age_bin task: 0-29 (0) against 30 and over (1) |
| ``age_3`` | the authors' Age_3 task: 0-19, 20-39, 40 and over |
| ``black``, ``east_asian``, ... | one binary attribute per race (the authors' ``--perturb Black``) |

``age`` and ``race`` are multi-valued sensitive attributes (``define`` gives them pair vectors),
``gender`` and the per-race ones binary. Splits as the authors': test is the val CSV; train and
val are the train CSV split 80/20 by ``RandomState(42)`` as scikit-learn's ``train_test_split``
does (a permutation, its first 20 % val), or by their ``custom_{train,valid}_split.txt`` (1-based
row numbers of the train CSV, one per line) when both are present. Files are read through
:class:`~lassi.regulator.datasets.file_source.FileImageSource`, so every read stays inside the root.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lassi.regulator.datasets.file_source import FileImageSource
from lassi.regulator.datasets.listings import csv_table, text_lines
from lassi.regulator.datasets.source import SPLITS, DataError

AGES: tuple[str, ...] = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
RACES: tuple[str, ...] = (
    "Black", "East_Asian", "Indian", "Latino_Hispanic", "Middle_Eastern", "Southeast_Asian", "White",
)
GENDERS: tuple[str, ...] = ("Female", "Male")
LABEL_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
CUSTOM_SPLITS = {"train": "custom_train_split.txt", "val": "custom_valid_split.txt"}
TRAIN_PROPORTION = 0.8
SPLIT_SEED = 42
RACE_ATTRIBUTES: tuple[str, ...] = tuple(race.lower() for race in RACES)
ATTRIBUTES: tuple[str, ...] = ("age", "gender", "race", "age_bin", "age_3", *RACE_ATTRIBUTES)
NUM_CLASSES = {"age": len(AGES), "gender": 2, "race": len(RACES), "age_bin": 2, "age_3": 3}


def age_bin(age: np.ndarray) -> np.ndarray:
    """The authors' Age_bin: age index > 3 (30 and over)."""
    return (np.asarray(age) > 3).astype(np.int64)


def age_3(age: np.ndarray) -> np.ndarray:
    """The authors' Age_3: 0..2 (under 20) -> 0, 3..4 (20-39) -> 1, 5.. (40 and over) -> 2."""
    age = np.asarray(age)
    return np.where(age <= 2, 0, np.where(age >= 5, 2, 1)).astype(np.int64)


class FairFaceSource(FileImageSource):
    """FairFace under ``root`` (see the module docstring)."""

    name = "fairface"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        crop: int | None = None,
        resample: str = "bicubic",
        allow_outside: bool = False,
    ) -> None:
        self._setup(image_size, resample)
        self._set_root(root, "FairFace folder", allow_outside)
        self.crop = crop
        self.image_dir = self.root
        self.attribute_names = list(ATTRIBUTES)
        files: list[str] = []
        lines: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        counts = {}
        for split, name in LABEL_FILES.items():
            path = self.root / name
            if not path.is_file():
                raise DataError(path, f"not found (FairFace's {' and '.join(LABEL_FILES.values())} are expected)")
            self._inside(path)
            names, numbers, values = _parse_labels(path)
            files += names
            lines.append(numbers)
            labels.append(values)
            counts[split] = len(names)
        self.attribute_file = self.root / LABEL_FILES["train"]
        self.files = files
        self.lines = np.concatenate(lines)
        base = np.concatenate(labels)  # age, gender, race
        race_columns = [(base[:, 2] == r).astype(np.uint8) for r in range(len(RACES))]
        self.labels = np.column_stack(
            [base, age_bin(base[:, 0]), age_3(base[:, 0]), *race_columns]
        ).astype(np.uint8)
        self.split_codes = np.full(len(files), SPLITS.index("test"), dtype=np.int8)
        train, val = self._train_val(counts["train"])
        self.split_codes[train] = SPLITS.index("train")
        self.split_codes[val] = SPLITS.index("val")
        self._check_names()

    def _train_val(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers of the train CSV in the train and val splits (the authors' split)."""
        custom = {split: self.root / name for split, name in CUSTOM_SPLITS.items()}
        present = [path for path in custom.values() if path.exists()]
        if present and len(present) != len(custom):
            missing = sorted(p.name for p in custom.values() if not p.exists())
            raise DataError(self.root, f"has some of the authors' split files but not {', '.join(missing)}")
        if present:
            train = _read_custom_split(custom["train"], n)
            val = _read_custom_split(custom["val"], n)
            if np.intersect1d(train, val).size:
                raise DataError(custom["val"], f"shares rows with {custom['train'].name}")
            return train, val
        permutation = np.random.RandomState(SPLIT_SEED).permutation(n)
        n_train = math.floor(TRAIN_PROPORTION * n)
        n_val = n - n_train
        return permutation[n_val : n_val + n_train], permutation[:n_val]

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return NUM_CLASSES.get(attribute, 2)


def _parse_labels(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(files, line numbers, uint8 [n, 3] age/gender/race indices) of a FairFace label CSV."""
    header, rows = csv_table(path, "FairFace label CSV", "file")
    if header[:4] != ["file", "age", "gender", "race"] or header[4:] not in ([], ["service_test"]):
        raise DataError(path, f"header must be 'file,age,gender,race[,service_test]', got {','.join(header)[:200]!r}")
    ages = {value: i for i, value in enumerate(AGES)}
    genders = {value: i for i, value in enumerate(GENDERS)}
    races = {value: i for i, value in enumerate(RACES)}
    files: list[str] = []
    numbers: list[int] = []
    values: list[tuple[int, int, int]] = []
    for number, row in rows:
        age, gender, race = row[1], row[2], row[3].replace(" ", "_")
        for value, table, column in ((age, ages, "age"), (gender, genders, "gender"), (race, races, "race")):
            if value not in table:
                valid = ", ".join(table)
                raise DataError(path, f"line {number}: {column} {value[:40]!r} is not one of {valid}")
        files.append(row[0])
        numbers.append(number)
        values.append((ages[age], genders[gender], races[race]))
    if not files:
        raise DataError(path, "no data rows")
    return files, np.asarray(numbers, dtype=np.int64), np.asarray(values, dtype=np.uint8)


def _read_custom_split(path: Path, n: int) -> np.ndarray:
    """0-based rows of the train CSV listed (1-based, one per line) in an authors' split file."""
    rows: list[int] = []
    for number, text in text_lines(path, "split file"):
        token = text.strip()
        if not token.isdigit() or not 1 <= int(token) <= n:
            raise DataError(path, f"line {number}: {token[:40]!r} is not a row number in 1..{n}")
        rows.append(int(token) - 1)
    ids = np.asarray(rows, dtype=np.int64)
    if ids.size == 0:
        raise DataError(path, "is empty")
    if len(np.unique(ids)) != len(ids):
        raise DataError(path, "repeats a row number")
    return ids
