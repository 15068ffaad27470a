"""Reading another party's files: one bounded read of a regular file, the same bytes for everyone.

A file that is read twice can change in between (a named pipe, a file swapped on a shared
folder), so a signature checked over the first read would vouch for a second, forged one.
``read_file`` therefore reads each file once: it opens without blocking, refuses anything that
is not a regular file (FIFO, device, folder) with a one-line error, refuses a file over its
size limit before allocating, and reads at most that many bytes. Inside ``pinned_reads()``
(every CLI command runs in one) the bytes are kept, so the signature check, the hash of a
parent and the parser all see the very bytes that were read first; writing a path through
``lassi.spec.io.atomic_path`` forgets what was kept for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from lassi.spec.errors import InvalidArtifactError, UsageError

_PINNED: list[dict[str, bytes]] = []


def _key(path: str | Path) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def pinned_reads() -> Iterator[None]:
    """Within this block, every path is read at most once; later reads get the same bytes."""
    _PINNED.append({})
    try:
        yield
    finally:
        _PINNED.pop()


def forget(path: str | Path) -> None:
    """Drop kept bytes of ``path`` (it was just rewritten by this process)."""
    for cache in _PINNED:
        cache.pop(_key(path), None)


def _open_regular(path: Path, what: str) -> tuple[int, int]:
    """Open ``path`` read-only without blocking; return (fd, size) of a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(path, "no such file") from None
    except IsADirectoryError:
        raise UsageError(path, f"is a folder, expected {what}") from None
    except OSError as error:
        raise UsageError(path, f"cannot open ({error.strerror or errno.errorcode.get(error.errno)})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = (
            "a folder"
            if stat.S_ISDIR(info.st_mode)
            else "a named pipe"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        raise UsageError(path, f"is {kind}, expected {what} (a regular file)")
    return fd, info.st_size


def read_file(path: str | Path, limit: int, what: str = "a file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read once (see module docstring)."""
    path = Path(path)
    key = _key(path)
    for cache in reversed(_PINNED):
        if key in cache:
            return cache[key]
    fd, size = _open_regular(path, what)
    try:
        if size > limit:
            raise InvalidArtifactError(path, f"is {size} bytes, over the limit of {limit} for {what}")
        chunks, total = [], 0
        while True:
            try:
                chunk = os.read(fd, min(1 << 22, limit + 1 - total))
            except OSError as error:
                raise UsageError(path, f"cannot read ({error.strerror})") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InvalidArtifactError(path, f"grew past the limit of {limit} bytes while read")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if _PINNED:
        _PINNED[-1][key] = data
    return data


def check_regular_input(path: str | Path, what: str = "a file") -> None:
    """Refuse (without blocking) a path that is missing or not a regular file."""
    fd, _ = _open_regular(Path(path), what)
    os.close(fd)
