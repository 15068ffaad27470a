"""Content hashes of a data set's samples: data provenance that an auditor can check per file.

A bundle records *which* data it was encoded from as an identity (data set, split, options),
the SHA-256 of each sample's image file (tensor ``file_sha256``, uint8 [N, 32], in the order of
its ids) and ``DataProvenance.content_sha256`` over the list of (relative file name, file
SHA-256) (:func:`lassi.spec.contract.data_identity.file_list_sha256`). Names are relative, so the hash
identifies the data wherever an auditor keeps its copy; a changed byte or a renamed file
changes it, and the per-file list says which file. Rendered sources (3D Shapes) have no files:
the renderer and the factors of the recorded ids are their content, so they record no content
hash; the renderer's identity (``renderer_sha256``, a hash of probe images rendered at run time)
is recorded in the data options instead.

Each file is read once: :func:`read_samples` hashes the bytes and keeps those of the samples
the caller will decode, and :func:`read_images` decodes the very bytes it hashed (and checks
them against hashes taken earlier, for a run that reads a file more than once).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lassi.regulator.datasets import DataError, OutsideRootError, decode_image
from lassi.spec.contract.data_identity import DIGEST_SIZE, data_key, file_list_sha256

MAX_IMAGE_BYTES = 256 * 2**20
"""The largest image file read (a bound before allocating; CelebA's files are ~10 kB)."""


def has_files(source: Any) -> bool:
    """Whether the source's images are files on disk (CelebA, folder), not rendered."""
    return getattr(source, "files", None) is not None


def sample_path(source: Any, i: int) -> Path:
    """The image file of sample ``i`` of a file source."""
    return source.path_of(i)  # resolved inside the data root (datasets.FileImageSource)


def read_image_bytes(path: Path) -> bytes:
    """The bytes of one regular image file of at most :data:`MAX_IMAGE_BYTES`, read once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except OSError as error:
        raise DataError(path, f"cannot open ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(path, "is not a regular file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise DataError(path, f"is {info.st_size} bytes, over {MAX_IMAGE_BYTES} for an image")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 22, MAX_IMAGE_BYTES + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_IMAGE_BYTES:
                raise DataError(path, f"grew past {MAX_IMAGE_BYTES} bytes while read")
    except OSError as error:
        raise DataError(path, f"cannot read ({error.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _check_id(source: Any, i: int) -> None:
    if not 0 <= i < len(source.files):
        raise DataError(source.image_dir, f"has no sample with id {i} ({len(source.files)} listed)")


@dataclass
class SampleFiles:
    """One read of the image files of samples ``ids`` (in the order asked)."""

    ids: list[int]
    digests: np.ndarray  # uint8 [N, 32]: SHA-256 of each file; zeros where it could not be read
    kept: dict[int, bytes] = field(default_factory=dict)  # id -> bytes, for the ids kept
    problems: dict[int, str] = field(default_factory=dict)  # id -> why unreadable (tolerant)

    def content_sha256(self, names: Sequence[str]) -> str:
        """The data identity of these samples under the relative file ``names`` (one per id)."""
        return file_list_sha256(self.ids, names, self.digests)


def read_samples(
    source: Any,
    ids: Iterable[int],
    keep: Iterable[int] = (),
    *,
    tolerant: bool = False,
    progress: str | None = None,
) -> SampleFiles | None:
    """Hash each sample's image file (and keep the bytes of the ids in ``keep``), one read each.

    None for a rendered source. ``tolerant``: a file that cannot be read (missing, not a
    regular file, over the size bound) is recorded in ``problems`` instead of raising
    :class:`DataError`. ``progress``: the description of a progress bar (None: no bar)."""
    if not has_files(source):
        return None
    ids = [int(i) for i in ids]
    wanted = {int(i) for i in keep}
    result = SampleFiles(ids, np.zeros((len(ids), DIGEST_SIZE), np.uint8))
    bar = tqdm(
        total=len(ids), desc=progress, unit="file", disable=progress is None, dynamic_ncols=True
    )
    for row, i in enumerate(ids):
        bar.update(1)
        try:
            _check_id(source, i)
            data = read_image_bytes(sample_path(source, i))
        except DataError as error:
            if not tolerant or isinstance(error, OutsideRootError):  # outside the root: exit 2
                raise
            result.problems[i] = error.problem
            continue
        result.digests[row] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        if i in wanted:
            result.kept[i] = data
    bar.close()
    return result


def decode_sample(source: Any, i: int, data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of sample ``i`` decoded from bytes already read (and hashed)."""
    return decode_image(
        io.BytesIO(data), source.image_size, source.crop, source.resample, where=sample_path(source, i)
    )


def read_images(
    source: Any, ids: Sequence[int], expect: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images [N, H, W, 3], file SHA-256s uint8 [N, 32] or None for a rendered source).

    Each file is read once and decoded from the bytes hashed. ``expect`` (uint8 [N, 32]): the
    hashes the files had earlier in the run; a file that differs now raises :class:`DataError`
    naming it (the run would otherwise mix two versions of its data)."""
    ids = np.asarray(ids, dtype=np.int64)
    if not has_files(source):
        return source.images(ids), None
    images = np.empty((len(ids), source.image_size, source.image_size, 3), np.uint8)
    digests = np.empty((len(ids), DIGEST_SIZE), np.uint8)
    for row, i in enumerate(ids.tolist()):
        _check_id(source, i)
        data = read_image_bytes(sample_path(source, i))
        digests[row] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        if expect is not None and not np.array_equal(digests[row], expect[row]):
            raise DataError(
                sample_path(source, i),
                "changed while the run was reading its data (its SHA-256 differs from the "
                "one taken when the run started); run the command again to start over on the "
                "new data",
            )
        images[row] = decode_sample(source, i, data)
    return images, digests


def pipeline_sha256_of(source: Any) -> str | None:
    """The source's ``pipeline_sha256`` (the code that makes its images: renderer, decoder and
    resize), None for a source without one."""
    method = getattr(source, "pipeline_sha256", None)
    return None if method is None else method()


def stored_content_sha256(source: Any, ids: Sequence[int], digests: np.ndarray | None) -> str | None:
    """``DataProvenance.content_sha256`` of the samples ``ids`` as stored: their files' list hash
    from the per-file ``digests`` (image files), the SHA-256 of their rows (a 3dshapes.h5, which
    holds every image in one file), or None (rendered 3D Shapes: nothing stored)."""
    ids = np.asarray(ids, dtype=np.int64)
    if digests is not None:
        return file_list_sha256(ids.tolist(), source.file_names(ids), digests)
    rows = getattr(source, "rows_sha256", None)
    return None if rows is None else rows(ids)


class CheckedImages:
    """The images of a fixed set of samples, read many times in a run (Glow training's batches)
    and each time checked against the file hashes taken when the run started: a file that
    changes during the run is refused (:func:`read_images`), never mixed in.

    ``identity``: the data identity of the run (:func:`lassi.spec.contract.data_identity.data_key` of the
    files' list hash, or of ``rendered``, the generator parameters of rendered data, and of the
    source's ``pipeline_sha256``, the code that makes images of what is stored: the 3D Shapes
    renderer, a decoder), for checkpoint keys; ``content_sha256``: the ``DataProvenance`` hash
    (:func:`stored_content_sha256`: of the files, or of a 3dshapes.h5's rows; None: rendered data).
    ``progress``: the description of a progress bar over the first hashing (None: no bar)."""

    def __init__(
        self, source: Any, ids: Sequence[int], rendered: Any = None, progress: str | None = None
    ) -> None:
        self.source, self.ids = source, np.asarray(ids, dtype=np.int64)
        files = read_samples(source, self.ids, progress=progress)
        self.digests = None if files is None else files.digests
        self.row = {int(i): r for r, i in enumerate(self.ids.tolist())}
        self.content_sha256 = stored_content_sha256(source, self.ids, self.digests)
        made_by = {"pipeline": pipeline_sha256_of(source)}  # renderer, decoder
        self.identity = (
            data_key(rendered=rendered, ids=self.ids.tolist(), rows=self.content_sha256, **made_by)
            if self.digests is None
            else data_key(files=self.content_sha256, **made_by)
        )

    def __call__(self, ids: Sequence[int]) -> np.ndarray:
        """uint8 images [N, H, W, 3] of ``ids`` (a subset of the run's samples)."""
        if self.digests is None:
            return self.source.images(np.asarray(ids, dtype=np.int64))
        expect = self.digests[[self.row[int(i)] for i in ids]]
        return read_images(self.source, ids, expect)[0]
