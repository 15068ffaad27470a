"""Sources whose images are files listed in a table, read only inside the data root.

:class:`FileImageSource` is the one place a listed name becomes a path (:meth:`~FileImageSource.path_of`):
names that cannot lie inside the root are refused when the listing is parsed
(:func:`name_problem`), and each path is resolved again when it is read, so a symbolic link
leading out of the root, even one swapped in after parsing, is refused too unless the user
opts in for a link farm (:data:`SYMLINK_OPT_IN`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from lassi.regulator.datasets.images import RESAMPLING, decode_sha256, load_image
from lassi.regulator.datasets.listings import MAX_NAME_CHARS
from lassi.regulator.datasets.source import SPLITS, DataError, ImageSource, OutsideRootError, as_ids

SYMLINK_OPT_IN = "--allow-symlinks-outside-root"


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


class FileImageSource(ImageSource):
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
        i = int(as_ids(np.array([i]), len(self.files))[0])
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
        rows = self.labels[as_ids(ids, len(self.files))].astype(np.int64)
        return {name: rows[:, i].copy() for i, name in enumerate(self.attribute_names)}

    def pipeline_sha256(self) -> str:
        """The decoder's identity at this size, crop and resampling (:func:`decode_sha256`)."""
        return decode_sha256(self.image_size, self.crop, self.resample)

    def file_names(self, ids: np.ndarray) -> list[str]:
        return [self.files[i] for i in as_ids(ids, len(self.files))]

    def images(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids, len(self.files))
        out = np.empty((len(ids), self.image_size, self.image_size, 3), dtype=np.uint8)
        for k, i in enumerate(ids):
            out[k] = load_image(self.path_of(i), self.image_size, self.crop, self.resample)
        return out

