"""Image sources with labelled attributes: built-in 3D Shapes, CelebA, any folder + CSV.

All three share one small interface (:class:`ImageSource`) used by Glow training, attribute
vectors and the producer: sample ids per split, integer attribute labels, and uint8 images
[N, H, W, 3] at the source's ``image_size``. Problems with user data raise :class:`DataError`,
whose message is a single line naming the file or folder and what is wrong with it.

Data on disk is read under three rules, because its listings may come from another party:

* **Confined reads.** Every file a listing names is read inside the data root: names with a
  ``..`` component or an absolute name are refused when the listing is parsed (before any image
  is opened), and each path is resolved again when it is read (:meth:`_FileImageSource.path_of`),
  so a symbolic link leading out of the root, even one swapped in after parsing, is refused
  too, unless the user opts in for a link farm (``--allow-symlinks-outside-root``).
* **Bounded memory.** Listings are streamed with a bound on the length of a line
  (:data:`MAX_LINE_BYTES`), of a field (:data:`MAX_NAME_CHARS`) and on the number of rows
  (:data:`MAX_ROWS`) and label cells (:data:`MAX_CELLS`); an image's header is read before its
  pixels and an image of more than :func:`max_pixels` pixels is refused undecoded.
* **Bounded labels.** A folder CSV's labels are class indices: integers in ``0..n-1`` where
  ``n`` is the number of distinct values present (at least 2, at most
  ``lassi.spec.contract.models.MAX_CLASSES``); a CSV with gaps or huge values is refused, never
  widened into empty classes.

Why one long module: the three data sources share one interface and its error messages.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
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
from lassi.spec.contract.errors import UsageError
from lassi.spec.contract.models import MAX_CLASSES

SPLITS: tuple[str, ...] = ("train", "val", "test")
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX}


class DataError(UsageError, ValueError):
    """A data folder or file is missing or malformed: ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        super().__init__(path, " ".join(str(problem).split()))


class OutsideRootError(DataError):
    """A listed name or a symbolic link leads out of the data root: always exit 2 (a reader
    that tolerates unreadable files, like the audit, still refuses this one)."""


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


class Shapes3DFactors(ImageSource):
    """What every 3D Shapes source shares: ids index the 480 000 factor combinations, labels are
    factor value indices, and ``_splits`` holds each split's ids."""

    _splits: dict[str, np.ndarray]

    def split_ids(self, split: str) -> np.ndarray:
        self.check_split(split)
        return self._splits[split].copy()

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        factors = Shapes3D.index_to_factors(_as_ids(ids, N_IMAGES))
        return {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return FACTOR_SIZES[FACTOR_NAMES.index(attribute)]


class Shapes3DSource(Shapes3DFactors):
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

    def images(self, ids: np.ndarray) -> np.ndarray:
        return self.renderer.render(Shapes3D.index_to_factors(_as_ids(ids, N_IMAGES)))


# --------------------------------------------------------------------------------------------
# Bounds on what is read from disk
# --------------------------------------------------------------------------------------------

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
SYMLINK_OPT_IN = "--allow-symlinks-outside-root"


def max_pixels(image_size: int) -> int:
    """The most pixels (width x height) an image may declare to be decoded for ``image_size``.

    ``side**2`` with ``side = min(8192, max(4096, 8 * image_size))``: 4096 x 4096 (16.8 Mpx,
    50 MB decoded) up to 512-pixel images, 8 x the side above, never over 8192 x 8192. Real
    photographs (CelebA 178 x 218, FFHQ 1024 x 1024) are far below; a small file declaring a
    huge canvas (an image bomb) is refused from its header, before any pixel is decoded.
    """
    side = min(8192, max(4096, 8 * int(image_size)))
    return side * side


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
    an auditor decodes the very bytes it hashed; ``where`` names the file in errors. The header
    is read first: an image of more than :func:`max_pixels` pixels is refused undecoded."""
    limit = max_pixels(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > limit:
                    side = int(limit**0.5)
                    raise DataError(
                        where,
                        f"image declares {width}x{height} pixels, more than the {side}x{side} "
                        f"read for {size}-pixel images (refused before decoding)",
                    )
                image = image.convert("RGB")
    except DataError:
        raise
    except Image.DecompressionBombError:  # the library's own bound, far above ours
        side = int(limit**0.5)
        raise DataError(
            where,
            f"image declares more than {side}x{side} pixels, the most read for {size}-pixel "
            "images (refused before decoding)",
        ) from None
    except (OSError, ValueError, EOFError, SyntaxError) as error:
        raise DataError(where, f"cannot read image ({type(error).__name__}: {error})") from None
    width, height = image.size
    side = min(width, height) if crop is None else min(crop, width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), RESAMPLING[resample])
    return np.asarray(image, dtype=np.uint8)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file name relative to a data root, or None when it can.

    Refused: empty names, NUL characters, absolute names (``/x``, ``\\x``, ``C:x``), and any
    ``..`` component (``/`` and ``\\`` both separate components here, so a listing written on
    another system cannot climb out either)."""
    if not name:
        return "is an empty file name"
    if len(name) > MAX_NAME_CHARS:
        return f"is a file name longer than {MAX_NAME_CHARS} characters"
    if "\x00" in name:
        return "is a file name with a NUL character"
    if name[0] in "/\\" or (name[1:2] == ":" and name[0].isalpha()):
        return "is an absolute path; names must be relative to the data root"
    if ".." in name and ".." in re.split(r"[/\\]", name):
        return "has a '..' component; names must stay inside the data root"
    return None


def lexically_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it by its names alone (no link is followed)."""
    path_text, root_text = os.path.abspath(path), os.path.abspath(root)
    return path_text == root_text or path_text.startswith(root_text.rstrip(os.sep) + os.sep)


class _FileImageSource(ImageSource):
    """Shared code of sources whose images are files listed in an attribute table.

    Every file is read through :meth:`path_of`, which keeps reads inside ``root`` (see the
    module docstring); subclasses call :meth:`_setup` first, :meth:`_set_root` for the data
    root, :meth:`_inside` for each fixed file of their layout, and :meth:`_check_names` once the
    listing is parsed."""

    root: Path
    files: list[str]  # relative to image_dir
    image_dir: Path
    labels: np.ndarray  # small ints [n_samples, n_attributes] (int64 via attributes())
    split_codes: np.ndarray  # int8 [n_samples]: 0 train, 1 val, 2 test
    lines: np.ndarray  # int64 [n_samples]: the line of each sample in attribute_file
    crop: int | None
    resample: str
    allow_outside: bool = False

    def _setup(self, image_size: int, resample: str) -> None:
        if int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        if resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLING)}, got {resample!r}")
        self.image_size = int(image_size)
        self.resample = resample

    def _set_root(self, root: str | Path, what: str, allow_outside: bool) -> None:
        """Open the data root: ``what`` (e.g. "CelebA folder") must be an existing folder."""
        self.root = Path(root)
        self.allow_outside = bool(allow_outside)
        if not self.root.exists():
            raise DataError(self.root, f"{what} does not exist")
        if not self.root.is_dir():
            raise DataError(self.root, f"{what} is not a folder")
        self._real_root = self.root.resolve()

    def _inside(self, path: Path, entry: str | None = None) -> Path:
        """``path`` resolved, refused (naming ``entry`` or ``path``) when it leads out of the
        root through a symbolic link, unless the user opted in."""
        if self.allow_outside:
            return path
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as error:  # a loop of links, a name too long
            raise DataError(entry or path, f"cannot be resolved ({error})") from None
        if not real.is_relative_to(self._real_root):
            raise OutsideRootError(
                entry or path,
                f"{'' if entry is None else f'{path} '}leads outside the data root "
                f"{self.root} through a symbolic link (pass {SYMLINK_OPT_IN} to read a link "
                "farm)",
            )
        return real

    def _entry(self, i: int) -> str:
        """Where sample ``i`` is listed: ``"<listing>: line <n>"`` (or its name alone)."""
        lines = getattr(self, "lines", None)
        where = f"line {lines[i]}" if lines is not None else f"entry {i}"
        return where if self.attribute_file is None else f"{self.attribute_file}: {where}"

    def _check_names(self) -> None:
        """Refuse (naming file and line) a listed name that cannot lie inside the root."""
        for i, name in enumerate(self.files):
            problem = name_problem(name)
            if problem is not None:
                raise OutsideRootError(self._entry(i), f"{name[:200]!r} {problem}")

    def path_of(self, i: int) -> Path:
        """The file of sample ``i``, resolved and checked again to lie inside the root (the one
        place a listed name becomes a path: images, content hashes and audits read here)."""
        i = int(_as_ids(np.array([i]), len(self.files))[0])
        name = self.files[i]
        problem = name_problem(name)
        if problem is not None:  # the listing was changed after it was parsed
            raise OutsideRootError(self._entry(i), f"{name[:200]!r} {problem}")
        return self._inside(self.image_dir / name, self._entry(i))

    def __len__(self) -> int:
        return len(self.files)

    def split_ids(self, split: str) -> np.ndarray:
        self.check_split(split)
        return np.flatnonzero(self.split_codes == SPLITS.index(split)).astype(np.int64)

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.labels[_as_ids(ids, len(self.files))].astype(np.int64)
        return {name: rows[:, i].copy() for i, name in enumerate(self.attribute_names)}

    def file_names(self, ids: np.ndarray) -> list[str]:
        return [self.files[i] for i in _as_ids(ids, len(self.files))]

    def images(self, ids: np.ndarray) -> np.ndarray:
        ids = _as_ids(ids, len(self.files))
        out = np.empty((len(ids), self.image_size, self.image_size, 3), dtype=np.uint8)
        for k, i in enumerate(ids):
            out[k] = load_image(self.path_of(i), self.image_size, self.crop, self.resample)
        return out


# --------------------------------------------------------------------------------------------
# Streamed listings
# --------------------------------------------------------------------------------------------


def _text_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
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


class _LabelTable:
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


def _check_header_names(path: Path, names: list[str], line: int) -> None:
    if len(names) > MAX_COLUMNS:
        raise DataError(path, f"line {line} names {len(names)} attributes, more than {MAX_COLUMNS}")
    if len(set(names)) != len(names) or any(not n or len(n) > 200 for n in names):
        raise DataError(path, "attribute column names must be non-empty, distinct and at most 200 characters")


def _csv_rows(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each CSV row, streamed (see :func:`_text_lines`); a
    field over the ``csv`` module's limit (128 KiB) is a DataError naming its line."""
    lines = _text_lines(path, what)
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


def _csv_table(path: Path, what: str, first: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows) of a CSV whose first column is ``first``; rows of the header's width."""
    rows = _csv_rows(path, what)
    _, header = next(rows, (1, []))
    if len(header) < 2 or header[0] != first:
        raise DataError(path, f"header must start with '{first},', got {','.join(header)[:200]!r}")

    def checked() -> Iterator[tuple[int, list[str]]]:
        for number, row in rows:
            if len(row) != len(header):
                raise DataError(path, f"line {number} has {len(row)} columns, expected {len(header)}")
            yield number, row

    return header, checked()


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
    lines = _text_lines(path, "attribute file")
    first, second = next(lines, None), next(lines, None)
    if first is None or second is None:
        raise DataError(path, "too short: expected an image count and a header of names")
    try:
        count = int(first[1].strip())
    except ValueError:
        raise DataError(path, f"line 1 must be the image count, got {first[1].strip()[:40]!r}") from None
    if not 0 <= count <= MAX_ROWS:
        raise DataError(path, f"line 1 declares {count} images; at most {MAX_ROWS} are read")
    names = second[1].split()
    _check_header_names(path, names, second[0])
    table = _LabelTable(path, len(names), np.int8, _signs_to_labels(path))
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
    header, rows = _csv_table(path, "attribute CSV", "image_id")
    names = header[1:]
    _check_header_names(path, names, 1)
    table = _LabelTable(path, len(names), np.int8, _signs_to_labels(path))
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
    if len(partition) >= MAX_ROWS:
        raise DataError(path, f"line {number}: more than {MAX_ROWS} entries")
    partition[file] = code


def _parse_celeba_partition_csv(path: Path, files: list[str]) -> np.ndarray:
    """int8 split codes of list_eval_partition.csv (``image_id,partition``, CSV layout)."""
    header, rows = _csv_table(path, "partition CSV", "image_id")
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
    for number, line in _text_lines(path, "partition file"):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(
                path, f"line {number} must be 'file.jpg 0|1|2', got {line.strip()[:200]!r}"
            )
        _partition_entry(path, number, parts[0], partition, int(parts[1]))
    return _codes_for(path, partition, files)


# --------------------------------------------------------------------------------------------
# Any folder + CSV
# --------------------------------------------------------------------------------------------

_SPLIT_ALIASES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


class FolderSource(_FileImageSource):
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
    rows = _csv_rows(path, "attribute CSV")
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
    _check_header_names(path, names, first[0])
    table = _LabelTable(path, len(names), np.uint16, _folder_labels(path, names))
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
