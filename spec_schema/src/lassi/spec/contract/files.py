"""Reading another party's files: bounded reads of regular files, the same content for everyone.

A file that is read twice can change in between (a named pipe, a file swapped on a shared
folder), so a signature checked over the first read would vouch for a second, forged one.
Every read here therefore opens without blocking, refuses anything that is not a regular file
(FIFO, device, folder) with a one-line error, refuses a file over its size limit before
allocating, reads at most that many bytes, and computes the SHA-256 of what it read.
Inside ``pinned_reads()`` (every CLI command runs in one) the first read of a path pins that
SHA-256: the signature check, the hash of a parent and the parser all see the same content, and
a later read that finds other bytes is refused (exit 4) instead of parsed. Small files read whole
(``read_file``: keys, signatures, ONNX graphs) keep their bytes, so a second reader gets the very
bytes of the first read; artifacts are streamed (``StreamedFile``: header first, tensors read
into their own arrays, the hash computed chunk by chunk), so no file is ever held twice and a
size check never needs the whole file. Writing a path through ``lassi.spec.contract.io.atomic_path``
forgets what was pinned for it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lassi.spec.contract.errors import IntegrityError, InvalidArtifactError, UsageError

CHUNK = 1 << 22  # 4 MiB: the largest piece read (and hashed) at a time


@dataclass
class _Seen:
    sha256: str
    data: bytes | None  # kept for small files read whole


_PINNED: list[dict[str, _Seen]] = []


def _key(path: str | Path) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def pinned_reads() -> Iterator[None]:
    """Within this block, every path has one content: a read that finds other bytes is refused."""
    _PINNED.append({})
    try:
        yield
    finally:
        _PINNED.pop()


def forget(path: str | Path) -> None:
    """Drop what was pinned for ``path`` (it was just rewritten by this process)."""
    for cache in _PINNED:
        cache.pop(_key(path), None)


def _pinned(key: str) -> _Seen | None:
    for cache in reversed(_PINNED):
        if key in cache:
            return cache[key]
    return None


def _pin(path: Path, key: str, sha256: str, data: bytes | None = None) -> None:
    """Record the content of a finished read; refuse one that differs from the first read."""
    seen = _pinned(key)
    if seen is None:
        if _PINNED:
            _PINNED[-1][key] = _Seen(sha256, data)
        return
    if seen.sha256 != sha256:
        raise IntegrityError(
            path,
            "changed while this command was reading it (its SHA-256 differs from the first "
            "read); make sure nothing writes it, then run the command again",
        )
    if seen.data is None and data is not None:
        seen.data = data


def _open_regular(path: Path, what: str) -> tuple[int, int]:
    """Open ``path`` read-only without blocking; return (fd, size) of a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(path, "no such file") from None
    except IsADirectoryError:
        raise UsageError(path, f"is a folder, expected {what}") from None
    except OSError as error:
        reason = error.strerror or errno.errorcode.get(error.errno or 0, "error")
        raise UsageError(path, f"cannot open ({reason})") from None
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


class StreamedFile:
    """One sequential, bounded read of a regular file, hashed as it goes (a context manager).

    ``size`` is known before anything is read, so a reader checks what a header declares
    against it first; ``read`` and ``readinto`` then consume the file front to back (each byte
    hashed once), ``pread`` looks ahead without moving (not hashed), and ``finish`` checks that
    the file ended where its size said and pins its SHA-256 (see the module docstring).
    """

    def __init__(self, path: str | Path, limit: int, what: str = "a file") -> None:
        self.path = Path(path)
        self.what = what
        fd, self.size = _open_regular(self.path, what)
        if self.size > limit:
            os.close(fd)
            raise InvalidArtifactError(
                self.path, f"is {self.size} bytes, over the limit of {limit} for {what}"
            )
        self._file = io.FileIO(fd, "rb", closefd=True)
        self._digest = hashlib.sha256()
        self.position = 0

    def __enter__(self) -> StreamedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def _shrunk(self) -> InvalidArtifactError:
        return InvalidArtifactError(
            self.path, f"is truncated (ends at byte {self.position} of {self.size}, or shrank while read)"
        )

    def readinto(self, buffer: memoryview) -> None:
        """Fill ``buffer`` (a flat byte view) with the next bytes of the file."""
        total = len(buffer)
        if self.position + total > self.size:
            raise self._shrunk()
        done = 0
        while done < total:
            piece = buffer[done : min(total, done + CHUNK)]
            try:
                got = self._file.readinto(piece)
            except OSError as error:
                raise UsageError(self.path, f"cannot read ({error.strerror})") from None
            if not got:
                self.position += done
                raise self._shrunk()
            self._digest.update(piece[:got])
            done += got
        self.position += total

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes (``n`` already checked against ``size`` by the caller), in one
        allocation when the system reads them at once (a regular file below 2 GiB)."""
        if self.position + n > self.size:
            raise self._shrunk()
        pieces: list[bytes] = []
        got = 0
        while got < n:
            try:
                piece = self._file.read(n - got)
            except OSError as error:
                raise UsageError(self.path, f"cannot read ({error.strerror})") from None
            if not piece:
                self.position += got
                raise self._shrunk()
            for start in range(0, len(piece), CHUNK):  # hashed in pieces: no copy
                self._digest.update(memoryview(piece)[start : start + CHUNK])
            pieces.append(piece)
            got += len(piece)
        self.position += n
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def pread(self, n: int, offset: int) -> bytes:
        """``n`` bytes at ``offset`` without moving or hashing (a look-ahead check)."""
        try:
            data = os.pread(self._file.fileno(), n, offset)
        except OSError as error:
            raise UsageError(self.path, f"cannot read ({error.strerror})") from None
        if len(data) != n:
            raise self._shrunk()
        return data

    def skip(self) -> None:
        """Read (and hash) the rest of the file without keeping it."""
        buffer = memoryview(bytearray(min(CHUNK, max(self.size - self.position, 0))))
        while self.position < self.size:
            n = min(len(buffer), self.size - self.position)
            self.readinto(buffer[:n])

    def finish(self) -> str:
        """Check the file ended at its size; pin and return its SHA-256."""
        try:
            extra = self._file.read(1)
        except OSError as error:
            raise UsageError(self.path, f"cannot read ({error.strerror})") from None
        if self.position != self.size or extra:
            raise InvalidArtifactError(self.path, "grew while it was read")
        sha256 = self._digest.hexdigest()
        _pin(self.path, _key(self.path), sha256)
        return sha256


def stream_sha256(path: str | Path, limit: int, what: str = "a file") -> str:
    """SHA-256 of a regular file of at most ``limit`` bytes, read in chunks (never held whole)."""
    with StreamedFile(path, limit, what) as f:
        f.skip()
        return f.finish()


def read_file(path: str | Path, limit: int, what: str = "a file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read once (see module docstring)."""
    path = Path(path)
    key = _key(path)
    seen = _pinned(key)
    if seen is not None and seen.data is not None:
        return seen.data
    with StreamedFile(path, limit, what) as f:
        data = f.read(f.size)
        sha256 = f.finish()
    _pin(path, key, sha256, data)
    return data


MAX_TOP_LEVEL_FIELDS = 1_000_000


def _varint(fd: int, offset: int, size: int) -> tuple[int, int] | None:
    """(value, next offset) of the protobuf varint at ``offset``, or None if malformed."""
    data = os.pread(fd, 10, offset)
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return (value, offset + i + 1) if offset + i + 1 <= size else None
    return None


def protobuf_framing_problem(path: str | Path, limit: int, what: str = "a file") -> str | None:
    """Why the file is not a sequence of well-formed top-level protobuf fields that ends exactly
    at its end (None if it is), checked by reading only the field headers: a multi-GB file of
    zeros, or a valid message followed by padding, is refused before it is read whole (an ONNX
    graph can only be parsed from memory)."""
    path = Path(path)
    fd, size = _open_regular(path, what)
    try:
        if size > limit:
            raise InvalidArtifactError(path, f"is {size} bytes, over the limit of {limit} for {what}")
        offset, fields = 0, 0
        while offset < size:
            fields += 1
            if fields > MAX_TOP_LEVEL_FIELDS:
                return f"more than {MAX_TOP_LEVEL_FIELDS} top-level fields"
            tag = _varint(fd, offset, size)
            if tag is None or tag[0] >> 3 == 0:
                return f"no valid field at byte {offset}"
            wire, offset = tag[0] & 7, tag[1]
            if wire == 0:
                value = _varint(fd, offset, size)
                if value is None:
                    return f"a malformed number at byte {offset}"
                offset = value[1]
            elif wire == 1 or wire == 5:
                offset += 8 if wire == 1 else 4
            elif wire == 2:
                length = _varint(fd, offset, size)
                if length is None:
                    return f"a malformed length at byte {offset}"
                offset = length[1] + length[0]
            else:
                return f"an unsupported field encoding at byte {offset}"
            if offset > size:
                return f"a field that runs past the end of the file ({size} bytes)"
        return None
    except OSError as error:
        raise UsageError(path, f"cannot read ({error.strerror})") from None
    finally:
        os.close(fd)


def check_regular_input(path: str | Path, what: str = "a file") -> None:
    """Refuse (without blocking) a path that is missing or not a regular file."""
    fd, _ = _open_regular(Path(path), what)
    os.close(fd)
