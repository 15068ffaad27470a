"""Bounds on what is read from a listing (attribute lists and CSVs), and its streamed readers:
lines, CSV rows and integer label tables, each refusing a file over a bound before holding it."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lassi.regulator.datasets.source import DataError

MAX_LINE_BYTES = 1 << 20
"""Longest line of an attribute list or CSV (1 MiB; a CelebA row is about 130 bytes)."""
MAX_ROWS = 1 << 21
"""Most data rows of a listing (2 097 152, ten times CelebA's 202 599)."""
MAX_CELLS = 1 << 26
"""Most label values of a listing, rows x attributes (CelebA: 8.1 million)."""
MAX_COLUMNS = 1024
"""Most attribute columns of a listing (CelebA: 40)."""
MAX_NAME_CHARS = 4096
"""Longest file name (PATH_MAX) or attribute name a listing may hold."""




def text_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, streamed: lines longer than
    :data:`MAX_LINE_BYTES` or more than :data:`MAX_ROWS` + 2 lines are refused before they are
    held; trailing blank lines are dropped. The text keeps its line ending (for ``csv``)."""
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, also when the caller stops)
    except OSError as error:
        raise DataError(path, f"cannot open the {what} ({error.strerror})") from None
    with handle:
        number, blanks = 0, 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if number > MAX_ROWS + 2:
                raise DataError(path, f"has more than {MAX_ROWS + 2} lines (the bound of a {what})")
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(path, f"line {number} is longer than {MAX_LINE_BYTES} bytes")
            if b"\x00" in raw:
                raise DataError(path, f"line {number} holds a NUL byte: the {what} is not text")
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(path, f"line {number}: the {what} is not UTF-8 text") from None
            if not text.strip():
                blanks += 1
                continue
            for k in range(blanks):
                yield number - blanks + k, "\n"
            blanks = 0
            yield number, text


class LabelTable:
    """Integer label rows gathered in chunks (small dtype, no per-cell Python objects kept)."""

    CHUNK = 1 << 18  # tokens parsed at once (about 15 MB of Python strings)

    def __init__(
        self,
        path: Path,
        width: int,
        dtype: type,
        convert: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        self.path, self.width, self.dtype, self.convert = path, width, dtype, convert
        self.tokens: list[str] = []
        self.numbers: list[int] = []
        self.chunks: list[np.ndarray] = []
        self.rows = 0

    def add(self, number: int, tokens: list[str]) -> None:
        """Append one row of ``width`` tokens read on line ``number``."""
        self.rows += 1
        if self.rows * self.width > MAX_CELLS:
            raise DataError(
                self.path, f"line {number}: more than {MAX_CELLS} label values (the bound of a listing)"
            )
        self.tokens.extend(tokens)
        self.numbers.append(number)
        if len(self.tokens) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.numbers:
            return
        numbers = np.asarray(self.numbers, dtype=np.int64)
        values = _parse_integers(self.path, self.tokens, self.width, numbers)
        self.chunks.append(self.convert(values, numbers).astype(self.dtype))
        self.tokens, self.numbers = [], []

    def array(self) -> np.ndarray:
        self._flush()
        if not self.chunks:
            return np.zeros((0, self.width), dtype=self.dtype)
        return np.concatenate(self.chunks)


def _parse_integers(path: Path, tokens: list[str], width: int, numbers: np.ndarray) -> np.ndarray:
    """int64 [len(numbers), width]; a DataError names the line of a bad token."""
    try:
        return np.array(tokens, dtype=np.int64).reshape(-1, width)
    except (ValueError, OverflowError):
        for k, token in enumerate(tokens):
            line = int(numbers[k // width])
            try:
                value = int(token)
            except ValueError:
                raise DataError(path, f"line {line}: {token[:40]!r} is not an integer") from None
            if not -(2**63) <= value < 2**63:
                raise DataError(path, f"line {line}: {token[:40]!r} is out of range") from None
        raise


def check_header_names(path: Path, names: list[str], line: int) -> None:
    if len(names) > MAX_COLUMNS:
        raise DataError(path, f"line {line} names {len(names)} attributes, more than {MAX_COLUMNS}")
    if len(set(names)) != len(names) or any(not n or len(n) > 200 for n in names):
        raise DataError(path, "attribute column names must be non-empty, distinct and at most 200 characters")


def csv_rows(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each CSV row, streamed (see :func:`text_lines`); a
    field over the ``csv`` module's limit (128 KiB) is a DataError naming its line."""
    lines = text_lines(path, what)
    numbers: list[int] = []

    def text() -> Iterator[str]:
        for number, line in lines:
            numbers.append(number)
            yield line

    reader = csv.reader(text())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(path, f"line {numbers[-1] if numbers else 1}: {error}") from None
        number = numbers[-1]
        numbers.clear()
        yield number, [cell.strip() for cell in row]


def csv_table(path: Path, what: str, first: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows) of a CSV whose first column is ``first``; rows of the header's width."""
    rows = csv_rows(path, what)
    _, header = next(rows, (1, []))
    if len(header) < 2 or header[0] != first:
        raise DataError(path, f"header must start with '{first},', got {','.join(header)[:200]!r}")

    def checked() -> Iterator[tuple[int, list[str]]]:
        for number, row in rows:
            if len(row) != len(header):
                raise DataError(path, f"line {number} has {len(row)} columns, expected {len(header)}")
            yield number, row

    return header, checked()
