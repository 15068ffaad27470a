"""Any image folder with a CSV of labels (``file,split,<attribute>,...``): the way to bring
one's own data. Labels are class indices ``0..n-1``, n the number of distinct values present
(at least 2, at most ``lassi.spec.contract.models.MAX_CLASSES``); a CSV with gaps or huge values
is refused, never widened into empty classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lassi.regulator.datasets.file_source import FileImageSource, lexically_inside
from lassi.regulator.datasets.listings import LabelTable, check_header_names, csv_rows
from lassi.regulator.datasets.source import DataError
from lassi.spec.contract.models import MAX_CLASSES

_SPLIT_ALIASES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


class FolderSource(FileImageSource):
    """Images under ``root`` with a CSV of labels (``csv``, default ``root/attributes.csv``).

    CSV columns: ``file`` (path relative to ``root``), ``split`` (train, val or test), then one
    column per attribute holding class indices ``0..n-1``, n the number of distinct values of
    the column (binary 0/1 or a few classes; see the module docstring). Images are
    centre-cropped to the largest square (or ``crop`` pixels) and resized. Ids are CSV row
    numbers (0 = first data row). Images, and a CSV that lies in ``root``, are read inside
    ``root`` (``allow_outside``: symbolic links may leave it); a ``csv`` elsewhere is the
    user's own choice and read where it is.
    """

    def __init__(
        self,
        root: str | Path,
        csv: str | Path | None = None,
        image_size: int = 64,
        crop: int | None = None,
        resample: str = "bicubic",
        name: str | None = None,
        allow_outside: bool = False,
    ) -> None:
        self._setup(image_size, resample)
        self._set_root(root, "image folder", allow_outside)
        self.crop = crop
        self.image_dir = self.root
        self.name = name or self.root.name or "folder"
        self.attribute_file = Path(csv) if csv is not None else self.root / "attributes.csv"
        if lexically_inside(self.attribute_file, self.root) and self.attribute_file.exists():
            self._inside(self.attribute_file)
        self.files, self.split_codes, self.lines, self.attribute_names, self.labels = (
            _parse_folder_csv(self.attribute_file)
        )
        self._check_names()
        self._num_classes = _class_counts(self.attribute_file, self.attribute_names, self.labels)

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return self._num_classes[attribute]


def _folder_labels(path: Path, names: list[str]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Labels of a folder CSV chunk: integers in 0..MAX_CLASSES-1, others name line and column."""

    def convert(values: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        bad = np.argwhere((values < 0) | (values >= MAX_CLASSES))
        if bad.size:
            row, column = bad[0]
            value = int(values[row, column])
            problem = (
                "labels must be non-negative integers"
                if value < 0
                else f"label {value} is not a class index (at most {MAX_CLASSES - 1})"
            )
            raise DataError(path, f"line {numbers[row]}, column {names[column]}: {problem}")
        return values

    return convert


def _parse_folder_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(files, int8 split codes, line numbers, attribute names, uint16 labels) of an
    attribute CSV, streamed."""
    rows = csv_rows(path, "attribute CSV")
    first = next(rows, None)
    if first is None:
        raise DataError(path, "empty CSV: expected a header 'file,split,<attribute>,...'")
    header = first[1]
    if header[:2] != ["file", "split"] or len(header) < 3:
        raise DataError(
            path, f"header must be 'file,split,<attribute>,...', got {','.join(header)[:200]!r}"
        )
    names = header[2:]
    if len(set(names)) != len(names) or any(not name for name in names):
        raise DataError(path, "attribute column names must be non-empty and distinct")
    check_header_names(path, names, first[0])
    table = LabelTable(path, len(names), np.uint16, _folder_labels(path, names))
    files: list[str] = []
    codes: list[int] = []
    numbers: list[int] = []
    for number, row in rows:
        if len(row) != len(header):
            raise DataError(path, f"line {number} has {len(row)} columns, expected {len(header)}")
        split = row[1].lower()
        if split not in _SPLIT_ALIASES:
            raise DataError(
                path, f"line {number}: split must be train, val or test, got {row[1][:40]!r}"
            )
        files.append(row[0])
        codes.append(_SPLIT_ALIASES[split])
        numbers.append(number)
        table.add(number, row[2:])
    if not files:
        raise DataError(path, "no data rows")
    return (
        files,
        np.asarray(codes, dtype=np.int8),
        np.asarray(numbers, dtype=np.int64),
        names,
        table.array(),
    )


def _class_counts(path: Path, names: list[str], labels: np.ndarray) -> dict[str, int]:
    """Classes per attribute: the number of distinct values present (at least 2); a label that
    is not below that count (a gap, 1-based labels, a stray large value) is refused."""
    counts = {}
    for i, name in enumerate(names):
        present = np.unique(labels[:, i])
        n = max(2, len(present))
        if present[-1] >= n:
            shown = ", ".join(str(int(v)) for v in present[:8]) + (", ..." if len(present) > 8 else "")
            raise DataError(
                path,
                f"column {name}: labels must be class indices 0..n-1, n the number of distinct "
                f"values ({n}), but {int(present[-1])} is present (values: {shown}); renumber "
                "the classes",
            )
        counts[name] = n
    return counts
