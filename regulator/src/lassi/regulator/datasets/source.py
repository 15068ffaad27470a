"""The interface every data source implements (:class:`ImageSource`), its errors, and the
with/without split of an attribute that attribute vectors are computed from."""

from __future__ import annotations

import difflib
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from lassi.regulator.shapes3d import half_of_range
from lassi.spec.contract.errors import UsageError

SPLITS: tuple[str, ...] = ("train", "val", "test")


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

    def pipeline_sha256(self) -> str | None:
        """The identity of the code that turns this source's stored content into its images
        (a renderer, a decoder and resize), from probe images made now; None: nothing to
        identify. Caches of the images' latents are keyed by it, so images made differently
        here are never served from a cache filled before."""
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


def as_ids(ids: np.ndarray, count: int) -> np.ndarray:
    """``ids`` as a flat int64 array, each checked to be a sample number in ``0..count-1``."""
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"sample ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= count):
        raise ValueError(f"sample ids must be in 0..{count - 1}")
    return ids
