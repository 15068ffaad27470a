"""Content hashes of a data set's samples: data provenance that an auditor can check.

A bundle records *which* data it was encoded from as an identity (data set, split, options) plus
``DataProvenance.content_sha256``: a SHA-256 over, for each encoded sample in id order, the
length-prefixed file name relative to the image folder and the length-prefixed bytes of its
image file. Names are relative, so the hash identifies the data wherever an auditor keeps its
copy; a changed byte or a renamed file changes it. Rendered sources (3D Shapes) have no files:
the renderer and the factors of the recorded ids are their content, so they record no hash.

Each file is read once: :func:`read_samples` hashes the bytes and keeps those of the samples
the caller will decode (``lassi.regulator.datasets.decode_image``), so what is decoded is what
was hashed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lassi.regulator.datasets import DataError

MAX_IMAGE_BYTES = 256 * 2**20
"""The largest image file read (a bound before allocating; CelebA's files are ~10 kB)."""


def has_files(source: Any) -> bool:
    """Whether the source's images are files on disk (CelebA, folder), not rendered."""
    return getattr(source, "files", None) is not None


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


def read_samples(
    source: Any, ids: Iterable[int], keep: Iterable[int] = ()
) -> tuple[str | None, dict[int, bytes]]:
    """(content_sha256 of the samples ``ids``, {id: file bytes} for the ids in ``keep``).

    None and nothing kept for a rendered source. Ids are hashed in ascending order, so the hash
    does not depend on the order a caller lists them in."""
    if not has_files(source):
        return None, {}
    files, wanted = source.files, {int(i) for i in keep}
    digest, kept = hashlib.sha256(), {}
    for i in sorted({int(i) for i in ids}):
        if not 0 <= i < len(files):
            raise DataError(source.image_dir, f"has no sample with id {i} ({len(files)} listed)")
        name = os.fsencode(files[i])
        data = read_image_bytes(source.path_of(i))  # resolved inside the data root
        digest.update(len(name).to_bytes(8, "little") + name)
        digest.update(len(data).to_bytes(8, "little") + data)
        if i in wanted:
            kept[i] = data
    return digest.hexdigest(), kept


def samples_digest(source: Any, ids: Iterable[int]) -> str | None:
    """The ``content_sha256`` a bundle of these samples records (None: rendered source)."""
    return read_samples(source, ids)[0]
