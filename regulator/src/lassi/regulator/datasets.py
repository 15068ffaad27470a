"""Image sources with labelled attributes: built-in 3D Shapes, CelebA, any folder + CSV.

All three share one small interface (:class:`ImageSource`) used by Glow training, attribute
vectors and the producer: sample ids per split, integer attribute labels, and uint8 images
[N, H, W, 3] at the source's ``image_size``. Problems with user data raise :class:`DataError`,
whose message is a single line naming the file or folder and what is wrong with it.

Why one long module: the three data sources share one interface and its error messages.
"""

from __future__ import annotations

import csv
import difflib
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from lassi.regulator.shapes3d import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    N_IMAGES,
    Shapes3D,
    half_of_range,
    make_splits,
)
from lassi.spec.errors import UsageError

SPLITS: tuple[str, ...] = ("train", "val", "test")
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX}


class DataError(UsageError, ValueError):
    """A data folder or file is missing or malformed: ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        super().__init__(path, " ".join(str(problem).split()))


def _shorten(names: list[str], limit: int = 8) -> str:
    """``"a, b, c"``, or the first ``limit`` names and how many there are in all."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names)} in all)"


class ImageSource(ABC):
    """A labelled image collection. Ids are int64 sample numbers meaningful to the source."""

    name: str
    attribute_names: list[str]
    image_size: int
    #: where attribute problems are reported (a file), or None for built-in data
    attribute_file: Path | None = None

    @abstractmethod
    def split_ids(self, split: str) -> np.ndarray:
        """int64 ids of the samples in ``"train"``, ``"val"`` or ``"test"``."""

    @abstractmethod
    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """int64 label per attribute name, each of shape [N]."""

    @abstractmethod
    def num_classes(self, attribute: str) -> int:
        """Number of label values of ``attribute`` (labels are 0..n-1)."""

    @abstractmethod
    def images(self, ids: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] images, H = W = ``image_size``."""

    def check_attribute(self, attribute: str) -> None:
        """Raise :class:`DataError` unless ``attribute`` is one of ``attribute_names``."""
        if attribute not in self.attribute_names:
            names = list(self.attribute_names)
            folded = {name.lower(): name for name in names}
            guess = folded.get(str(attribute).lower()) or next(
                iter(difflib.get_close_matches(str(attribute), names, n=1)), None
            )
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise DataError(
                self.attribute_file,
                f"unknown attribute {attribute!r} for {self.name}{hint}; valid: {_shorten(names)}",
            )

    def file_names(self, ids: np.ndarray) -> list[str] | None:
        """Image file name (or CSV key) of each id, or None for built-in data."""
        return None

    @staticmethod
    def check_split(split: str) -> None:
        """Raise :class:`DataError` unless ``split`` is train, val or test."""
        if split not in SPLITS:
            raise DataError(None, f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def binary_split(
    source: ImageSource, attribute: str, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over ``ids``: samples *with* and *without* the attribute.

    Binary attribute: with = label 1, without = label 0. Multi-valued attribute with n values
    (3D Shapes orientation: 15): with = high half ``v >= n // 2 + n % 2``, without = low half
    ``v < n // 2``; the middle value of an odd n (orientation 0 degrees) is in neither mask.
    """
    source.check_attribute(attribute)
    values = source.attributes(np.asarray(ids, dtype=np.int64))[attribute]
    n = source.num_classes(attribute)
    half = half_of_range(values, n)
    dropped = int((half == 0).sum())
    if dropped:
        print(
            f"note: {attribute} has {n} values; its middle value {n // 2} is in neither half, "
            f"so {dropped} of {len(values)} samples are not used for its vector",
            file=sys.stderr,
        )
    return half == 1, half == -1


def _as_ids(ids: np.ndarray, count: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"sample ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= count):
        raise ValueError(f"sample ids must be in 0..{count - 1}")
    return ids


# --------------------------------------------------------------------------------------------
# 3D Shapes (built in)
# --------------------------------------------------------------------------------------------


class Shapes3DSource(ImageSource):
    """Procedural 3D Shapes; ids index the 480 000 factor combinations, labels are factor
    value indices. See :func:`lassi.regulator.shapes3d.make_splits` for ``correlate``."""

    name = "shapes3d"

    def __init__(
        self,
        image_size: int = 64,
        seed: int = 0,
        n_train: int = 50_000,
        n_val: int = 5_000,
        n_test: int = 5_000,
        correlate: tuple[str, str, float] | None = None,
    ) -> None:
        self.renderer = Shapes3D(image_size)
        self.image_size = self.renderer.image_size
        self.attribute_names = list(FACTOR_NAMES)
        self.seed = seed
        self.correlate = correlate
        self._splits = make_splits(seed, n_train, n_val, n_test, correlate)

    def split_ids(self, split: str) -> np.ndarray:
        self.check_split(split)
        return self._splits[split].copy()

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        factors = Shapes3D.index_to_factors(_as_ids(ids, N_IMAGES))
        return {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return FACTOR_SIZES[FACTOR_NAMES.index(attribute)]

    def images(self, ids: np.ndarray) -> np.ndarray:
        return self.renderer.render(Shapes3D.index_to_factors(_as_ids(ids, N_IMAGES)))


# --------------------------------------------------------------------------------------------
# Images on disk
# --------------------------------------------------------------------------------------------


def load_image(
    path: Path, size: int, crop: int | None = None, resample: str = "bicubic"
) -> np.ndarray:
    """uint8 [size, size, 3]: centre crop (``crop`` pixels, clipped to the image; None = the
    largest square), then resize. Raises :class:`DataError` for a missing or corrupt file."""
    if not path.is_file():
        raise DataError(path, "image file not found")
    return decode_image(path, size, crop, resample, where=path)


def decode_image(
    file: Path | BinaryIO, size: int, crop: int | None, resample: str, where: Path
) -> np.ndarray:
    """:func:`load_image` of an open file or of bytes already read (``io.BytesIO``), so that
    an auditor decodes the very bytes it hashed; ``where`` names the file in errors."""
    try:
        with Image.open(file) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(where, f"cannot read image ({type(error).__name__}: {error})") from None
    width, height = image.size
    side = min(width, height) if crop is None else min(crop, width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), RESAMPLING[resample])
    return np.asarray(image, dtype=np.uint8)


class _FileImageSource(ImageSource):
    """Shared code of sources whose images are files listed in an attribute table."""

    root: Path
    files: list[str]  # relative to image_dir
    image_dir: Path
    labels: np.ndarray  # int64 [n_samples, n_attributes]
    split_codes: np.ndarray  # int8 [n_samples]: 0 train, 1 val, 2 test
    crop: int | None
    resample: str

    def _setup(self, image_size: int, resample: str) -> None:
        if int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        if resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLING)}, got {resample!r}")
        self.image_size = int(image_size)
        self.resample = resample

    def __len__(self) -> int:
        return len(self.files)

    def split_ids(self, split: str) -> np.ndarray:
        self.check_split(split)
        return np.flatnonzero(self.split_codes == SPLITS.index(split)).astype(np.int64)

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.labels[_as_ids(ids, len(self.files))]
        return {name: rows[:, i].copy() for i, name in enumerate(self.attribute_names)}

    def file_names(self, ids: np.ndarray) -> list[str]:
        return [self.files[i] for i in _as_ids(ids, len(self.files))]

    def images(self, ids: np.ndarray) -> np.ndarray:
        ids = _as_ids(ids, len(self.files))
        out = np.empty((len(ids), self.image_size, self.image_size, 3), dtype=np.uint8)
        for k, i in enumerate(ids):
            out[k] = load_image(
                self.image_dir / self.files[i], self.image_size, self.crop, self.resample
            )
        return out


def _read_lines(path: Path, what: str) -> list[str]:
    """Lines of a text file, without trailing blank lines (line k is at index k - 1)."""
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(path, f"{what} is not a UTF-8 text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


CELEBA_LAYOUTS = (
    "the official layout (img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt)",
    "the CSV layout (img_align_celeba/[img_align_celeba/]*.jpg, list_attr_celeba.csv with an "
    "image_id column, list_eval_partition.csv)",
)


class CelebASource(_FileImageSource):
    """CelebA under ``root``, in either of its two widespread layouts (detected automatically).

    Official: ``img_align_celeba/*.jpg``; ``list_attr_celeba.txt`` (image count, a header of 40
    attribute names, then one ``file -1 1 ...`` row per image); ``list_eval_partition.txt``
    (``file 0|1|2`` = train/val/test). CSV (as redistributed, e.g. on Kaggle): the images
    possibly nested in ``img_align_celeba/img_align_celeba/``; ``list_attr_celeba.csv`` (header
    ``image_id,<40 names>``, values -1/1); ``list_eval_partition.csv`` (``image_id,partition``).
    -1 becomes label 0, 1 label 1, and 0 is accepted as label 0. Ids are 0-based row numbers of
    the attribute file (000501.jpg is id 500). Images are centre-cropped to ``crop`` pixels (148
    by default, clipped to the image; None = the largest square) and resized to ``image_size``.
    """

    name = "celeba"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        crop: int | None = 148,
        resample: str = "bicubic",
    ) -> None:
        self._setup(image_size, resample)
        self.root = Path(root)
        self.crop = crop
        if not self.root.is_dir():
            raise DataError(self.root, "CelebA folder not found")
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
        self.files, self.attribute_names, self.labels = parse_attributes(self.attribute_file)
        self.split_codes = parse_partition(partition, self.files)

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return 2


def _check_signs(path: Path, values: np.ndarray, first_line: int) -> np.ndarray:
    """int64 0/1 labels of a -1/1 (or 0/1) CelebA attribute table."""
    bad = np.flatnonzero(~np.isin(values, (-1, 0, 1)).all(axis=1))
    if bad.size:
        raise DataError(path, f"line {bad[0] + first_line}: attribute values must be -1 or 1")
    return (values == 1).astype(np.int64)


def _parse_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(files, attribute names, int64 0/1 labels [n, n_attributes]) of list_attr_celeba.txt."""
    lines = _read_lines(path, "attribute file")
    if len(lines) < 2:
        raise DataError(path, "too short: expected an image count and a header of names")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(path, f"line 1 must be the image count, got {lines[0].strip()!r}") from None
    names = lines[1].split()
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(path, f"line 1 declares {count} images but {len(rows)} rows follow")
    files: list[str] = []
    tokens: list[str] = []
    for number, line in enumerate(rows, start=3):
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise DataError(
                path,
                f"line {number} has {len(parts)} columns, expected {len(names) + 1} "
                f"(file name and {len(names)} attributes)",
            )
        files.append(parts[0])
        tokens.extend(parts[1:])
    values = _parse_integers(path, tokens, len(names), first_line=3)
    return files, names, _check_signs(path, values, first_line=3)


def _csv_table(path: Path, what: str, first: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV whose first column is ``first``; rows of the header's width."""
    table = list(csv.reader(_read_lines(path, what)))
    header = [cell.strip() for cell in table[0]] if table else []
    if len(header) < 2 or header[0] != first:
        raise DataError(path, f"header must start with '{first},', got {','.join(header)!r}")
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise DataError(path, f"line {number} has {len(row)} columns, expected {len(header)}")
    return header, [[cell.strip() for cell in row] for row in table[1:]]


def _parse_celeba_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(files, attribute names, int64 0/1 labels) of list_attr_celeba.csv (CSV layout)."""
    header, rows = _csv_table(path, "attribute CSV", "image_id")
    names = header[1:]
    if not rows:
        raise DataError(path, "no data rows")
    tokens = [cell for row in rows for cell in row[1:]]
    values = _parse_integers(path, tokens, len(names), first_line=2)
    return [row[0] for row in rows], names, _check_signs(path, values, first_line=2)


def _parse_celeba_partition_csv(path: Path, files: list[str]) -> np.ndarray:
    """int8 split codes of list_eval_partition.csv (``image_id,partition``, CSV layout)."""
    header, rows = _csv_table(path, "partition CSV", "image_id")
    if header != ["image_id", "partition"]:
        raise DataError(path, f"header must be 'image_id,partition', got {','.join(header)!r}")
    partition: dict[str, int] = {}
    for number, (file, code) in enumerate(rows, start=2):
        if code not in ("0", "1", "2"):
            raise DataError(path, f"line {number}: partition must be 0, 1 or 2, got {code!r}")
        partition[file] = int(code)
    return _codes_for(path, partition, files)


def _codes_for(path: Path, partition: dict[str, int], files: list[str]) -> np.ndarray:
    codes = np.empty(len(files), dtype=np.int8)
    for i, file in enumerate(files):
        if file not in partition:
            raise DataError(path, f"no partition entry for {file}")
        codes[i] = partition[file]
    return codes


def _parse_integers(path: Path, tokens: list[str], width: int, first_line: int) -> np.ndarray:
    """int64 [len(tokens) // width, width]; a DataError names the line of a bad token."""
    try:
        return np.array(tokens, dtype=np.int64).reshape(-1, width)
    except ValueError:
        for k, token in enumerate(tokens):
            try:
                int(token)
            except ValueError:
                line = first_line + k // width
                raise DataError(path, f"line {line}: {token!r} is not an integer") from None
        raise


def _parse_celeba_partition(path: Path, files: list[str]) -> np.ndarray:
    """int8 split code (0 train, 1 val, 2 test) for every attribute row's file."""
    lines = _read_lines(path, "partition file")
    partition: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(path, f"line {number} must be 'file.jpg 0|1|2', got {line.strip()!r}")
        partition[parts[0]] = int(parts[1])
    return _codes_for(path, partition, files)


# --------------------------------------------------------------------------------------------
# Any folder + CSV
# --------------------------------------------------------------------------------------------

_SPLIT_ALIASES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


class FolderSource(_FileImageSource):
    """Images under ``root`` with a CSV of labels (``csv``, default ``root/attributes.csv``).

    CSV columns: ``file`` (path relative to ``root``), ``split`` (train, val or test), then one
    column per attribute holding non-negative integer labels (binary 0/1 or a few classes).
    Images are centre-cropped to the largest square (or ``crop`` pixels) and resized. Ids are
    CSV row numbers (0 = first data row).
    """

    def __init__(
        self,
        root: str | Path,
        csv: str | Path | None = None,
        image_size: int = 64,
        crop: int | None = None,
        resample: str = "bicubic",
        name: str | None = None,
    ) -> None:
        self._setup(image_size, resample)
        self.root = Path(root)
        self.crop = crop
        if not self.root.is_dir():
            raise DataError(self.root, "image folder not found")
        self.image_dir = self.root
        self.name = name or self.root.name or "folder"
        self.attribute_file = Path(csv) if csv is not None else self.root / "attributes.csv"
        self.files, self.split_codes, self.attribute_names, self.labels = _parse_folder_csv(
            self.attribute_file
        )
        self._num_classes = {
            attr: max(2, int(self.labels[:, i].max(initial=0)) + 1)
            for i, attr in enumerate(self.attribute_names)
        }

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return self._num_classes[attribute]


def _parse_folder_csv(path: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(files, int8 split codes, attribute names, int64 labels) of an attribute CSV."""
    lines = _read_lines(path, "attribute CSV")
    table = list(csv.reader(lines))
    if not table:
        raise DataError(path, "empty CSV: expected a header 'file,split,<attribute>,...'")
    header = [cell.strip() for cell in table[0]]
    if header[:2] != ["file", "split"] or len(header) < 3:
        raise DataError(
            path, f"header must be 'file,split,<attribute>,...', got {','.join(header)!r}"
        )
    names = header[2:]
    if len(set(names)) != len(names) or any(not name for name in names):
        raise DataError(path, "attribute column names must be non-empty and distinct")
    if len(table) < 2:
        raise DataError(path, "no data rows")
    files: list[str] = []
    codes = np.empty(len(table) - 1, dtype=np.int8)
    tokens: list[str] = []
    for k, row in enumerate(table[1:]):
        if len(row) != len(header):
            raise DataError(path, f"line {k + 2} has {len(row)} columns, expected {len(header)}")
        split = row[1].strip().lower()
        if split not in _SPLIT_ALIASES:
            raise DataError(path, f"line {k + 2}: split must be train, val or test, got {row[1]!r}")
        files.append(row[0].strip())
        codes[k] = _SPLIT_ALIASES[split]
        tokens.extend(cell.strip() for cell in row[2:])
    labels = _parse_integers(path, tokens, len(names), first_line=2)
    negative = np.argwhere(labels < 0)
    if negative.size:
        line, column = negative[0]
        raise DataError(
            path, f"line {line + 2}, column {names[column]}: labels must be non-negative integers"
        )
    return files, codes, names, labels
