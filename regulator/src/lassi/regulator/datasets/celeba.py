"""CelebA in its two widespread layouts, the official text files and the CSV redistribution
(paper Sec. 5: the face data set of Table 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lassi.regulator.datasets import listings
from lassi.regulator.datasets.file_source import FileImageSource, name_problem
from lassi.regulator.datasets.listings import LabelTable, check_header_names, csv_table, text_lines
from lassi.regulator.datasets.source import DataError, OutsideRootError

CELEBA_LAYOUTS = (
    "the official layout (img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt)",
    "the CSV layout (img_align_celeba/[img_align_celeba/]*.jpg, list_attr_celeba.csv with an "
    "image_id column, list_eval_partition.csv)",
)


class CelebASource(FileImageSource):
    """CelebA under ``root``, in either of its two widespread layouts (detected automatically).

    Official: ``img_align_celeba/*.jpg``; ``list_attr_celeba.txt`` (image count, a header of 40
    attribute names, then one ``file -1 1 ...`` row per image); ``list_eval_partition.txt``
    (``file 0|1|2`` = train/val/test). CSV (as redistributed, e.g. on Kaggle): the images
    possibly nested in ``img_align_celeba/img_align_celeba/``; ``list_attr_celeba.csv`` (header
    ``image_id,<40 names>``, values -1/1); ``list_eval_partition.csv`` (``image_id,partition``).
    -1 becomes label 0, 1 label 1, and 0 is accepted as label 0. Ids are 0-based row numbers of
    the attribute file (000501.jpg is id 500). Images are centre-cropped to ``crop`` pixels (148
    by default, clipped to the image; None = the largest square) and resized to ``image_size``.
    Every file is read inside ``root`` (``allow_outside``: symbolic links may leave it).
    """

    name = "celeba"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        crop: int | None = 148,
        resample: str = "bicubic",
        allow_outside: bool = False,
    ) -> None:
        self._setup(image_size, resample)
        self._set_root(root, "CelebA folder", allow_outside)
        self.crop = crop
        if (self.root / "list_attr_celeba.txt").is_file():
            self.layout = "official"
            self.attribute_file = self.root / "list_attr_celeba.txt"
            parse_attributes, parse_partition = _parse_celeba_attributes, _parse_celeba_partition
            partition = self.root / "list_eval_partition.txt"
        elif (self.root / "list_attr_celeba.csv").is_file():
            self.layout = "csv"
            self.attribute_file = self.root / "list_attr_celeba.csv"
            parse_attributes, parse_partition = _parse_celeba_csv, _parse_celeba_partition_csv
            partition = self.root / "list_eval_partition.csv"
        else:
            raise DataError(
                self.root,
                f"CelebA attribute file not found; expected {CELEBA_LAYOUTS[0]} or {CELEBA_LAYOUTS[1]}",
            )
        self.image_dir = self.root / "img_align_celeba"
        if not self.image_dir.is_dir():
            raise DataError(self.image_dir, f"image folder not found (CelebA {self.layout} layout)")
        nested = self.image_dir / "img_align_celeba"
        if nested.is_dir():
            self.image_dir = nested
        self._inside(self.image_dir)
        self._inside(self.attribute_file)
        self.files, self.lines, self.attribute_names, self.labels = parse_attributes(
            self.attribute_file
        )
        self._check_names()
        if partition.exists():
            self._inside(partition)
        self.split_codes = parse_partition(partition, self.files)

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return 2


def _signs_to_labels(path: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """0/1 labels of a -1/1 (or 0/1) CelebA attribute chunk; other values name their line."""

    def convert(values: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        bad = np.flatnonzero(~np.isin(values, (-1, 0, 1)).all(axis=1))
        if bad.size:
            raise DataError(path, f"line {numbers[bad[0]]}: attribute values must be -1 or 1")
        return values == 1

    return convert


def _parse_celeba_attributes(path: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(files, their line numbers, attribute names, int8 0/1 labels [n, n_attributes]) of
    list_attr_celeba.txt, streamed."""
    lines = text_lines(path, "attribute file")
    first, second = next(lines, None), next(lines, None)
    if first is None or second is None:
        raise DataError(path, "too short: expected an image count and a header of names")
    try:
        count = int(first[1].strip())
    except ValueError:
        raise DataError(path, f"line 1 must be the image count, got {first[1].strip()[:40]!r}") from None
    if not 0 <= count <= listings.MAX_ROWS:
        raise DataError(path, f"line 1 declares {count} images; at most {listings.MAX_ROWS} are read")
    names = second[1].split()
    check_header_names(path, names, second[0])
    table = LabelTable(path, len(names), np.int8, _signs_to_labels(path))
    files: list[str] = []
    numbers: list[int] = []
    for number, line in lines:
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise DataError(
                path,
                f"line {number} has {len(parts)} columns, expected {len(names) + 1} "
                f"(file name and {len(names)} attributes)",
            )
        if len(files) == count:
            raise DataError(path, f"line 1 declares {count} images but more rows follow")
        files.append(parts[0])
        numbers.append(number)
        table.add(number, parts[1:])
    if len(files) != count:
        raise DataError(path, f"line 1 declares {count} images but {len(files)} rows follow")
    return files, np.asarray(numbers, dtype=np.int64), names, table.array()


def _parse_celeba_csv(path: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(files, line numbers, attribute names, int8 0/1 labels) of list_attr_celeba.csv."""
    header, rows = csv_table(path, "attribute CSV", "image_id")
    names = header[1:]
    check_header_names(path, names, 1)
    table = LabelTable(path, len(names), np.int8, _signs_to_labels(path))
    files: list[str] = []
    numbers: list[int] = []
    for number, row in rows:
        files.append(row[0])
        numbers.append(number)
        table.add(number, row[1:])
    if not files:
        raise DataError(path, "no data rows")
    return files, np.asarray(numbers, dtype=np.int64), names, table.array()


def _partition_entry(path: Path, number: int, file: str, partition: dict[str, int], code: int) -> None:
    problem = name_problem(file)
    if problem is not None:
        raise OutsideRootError(path, f"line {number}: {file[:200]!r} {problem}")
    if len(partition) >= listings.MAX_ROWS:
        raise DataError(path, f"line {number}: more than {listings.MAX_ROWS} entries")
    partition[file] = code


def _parse_celeba_partition_csv(path: Path, files: list[str]) -> np.ndarray:
    """int8 split codes of list_eval_partition.csv (``image_id,partition``, CSV layout)."""
    header, rows = csv_table(path, "partition CSV", "image_id")
    if header != ["image_id", "partition"]:
        raise DataError(path, f"header must be 'image_id,partition', got {','.join(header)[:200]!r}")
    partition: dict[str, int] = {}
    for number, (file, code) in rows:
        if code not in ("0", "1", "2"):
            raise DataError(path, f"line {number}: partition must be 0, 1 or 2, got {code[:40]!r}")
        _partition_entry(path, number, file, partition, int(code))
    return _codes_for(path, partition, files)


def _codes_for(path: Path, partition: dict[str, int], files: list[str]) -> np.ndarray:
    codes = np.empty(len(files), dtype=np.int8)
    for i, file in enumerate(files):
        if file not in partition:
            raise DataError(path, f"no partition entry for {file}")
        codes[i] = partition[file]
    return codes


def _parse_celeba_partition(path: Path, files: list[str]) -> np.ndarray:
    """int8 split code (0 train, 1 val, 2 test) for every attribute row's file."""
    partition: dict[str, int] = {}
    for number, line in text_lines(path, "partition file"):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(
                path, f"line {number} must be 'file.jpg 0|1|2', got {line.strip()[:200]!r}"
            )
        _partition_entry(path, number, parts[0], partition, int(parts[1]))
    return _codes_for(path, partition, files)


# --------------------------------------------------------------------------------------------
# Any folder + CSV
