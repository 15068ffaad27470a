"""The identity of the data an artifact, a cache or a checkpoint was computed from.

Data on disk is identified per file: each sample's image file has a SHA-256 of its bytes, and
the data set's ``content_sha256`` (``DataProvenance``, ``content_hash = "per-file"``) is a
SHA-256 over the list of (relative file name, file SHA-256) in ascending sample-id order, so the
per-file list a bundle carries (tensor ``file_sha256``, uint8 [N, 32]) can be checked against
the header's one hash, and an auditor can name each file that differs. Rendered data (3D
Shapes) has no files: its generator parameters and the renderer's identity are its identity. The
renderer's identity (``DataProvenance.options["renderer_sha256"]``, :data:`RENDERER_OPTION`) is a
SHA-256 of probe images rendered at run time (``lassi.regulator.shapes3d.renderer_sha256``), so
data rendered by one renderer is never taken for data rendered by another; files written before
it was recorded lack it, and are read without that check.

Caches and checkpoints are keyed by the same identity (:func:`data_key`), so a changed input is
never served from a cache and never resumed into.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

DIGEST_SIZE = 32
"""Bytes of one file's SHA-256 (a row of a ``file_sha256`` tensor)."""


def name_bytes(name: str) -> bytes:
    """A relative file name as the bytes hashed (the file system's encoding)."""
    return os.fsencode(name)


def file_list_sha256(ids: Sequence[int], names: Sequence[str], digests: np.ndarray) -> str:
    """SHA-256 over each sample's length-prefixed relative name and 32-byte file SHA-256, in
    ascending id order (so the order a caller lists the samples in does not matter)."""
    digests = np.asarray(digests, dtype=np.uint8).reshape(len(ids), DIGEST_SIZE)
    total = hashlib.sha256()
    for row in sorted(range(len(ids)), key=lambda r: int(ids[r])):
        name = name_bytes(names[row])
        total.update(len(name).to_bytes(8, "little") + name + digests[row].tobytes())
    return total.hexdigest()


RENDERER_OPTION = "renderer_sha256"
"""The ``DataProvenance.options`` entry of rendered data: the renderer's identity."""

_HEX = frozenset("0123456789abcdef")


def recorded_renderer(data: Any, where: Any) -> str | None:
    """The renderer identity a ``DataProvenance`` records (None: not recorded, which the reader
    refuses for an artifact of rendered data); one that is not a SHA-256 in hex is an invalid artifact (exit 3)."""
    from lassi.spec.contract.errors import InvalidArtifactError

    value = (getattr(data, "options", None) or {}).get(RENDERER_OPTION)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise InvalidArtifactError(where, f"records a {RENDERER_OPTION} that is not a SHA-256 in hex")
    return value


def renders_differently(where: Any, recorded: str, here: str, whose: str = "its") -> Exception:
    """The one-line refusal (exit 4) of rendered data whose renderer identity is not ``here``'s."""
    from lassi.spec.contract.errors import IntegrityError

    return IntegrityError(
        where,
        f"{whose} 3D Shapes images were rendered by a renderer with identity {recorded[:12]}…; "
        f"the images render differently here ({here[:12]}…), so they are not the same data",
    )


def data_key(**identity: Any) -> str:
    """A short hash of a run's data identity (content hashes, generator parameters)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def id_ranges(ids: Iterable[int], limit: int = 8) -> str:
    """Sample ids as compact ranges, e.g. ``0–3, 7, 9`` (at most ``limit`` ranges shown)."""
    values = sorted({int(i) for i in ids})
    if not values:
        return "none"
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    shown = [f"{a}" if a == b else f"{a}–{b}" for a, b in runs]
    if len(shown) > limit:
        shown = [*shown[: limit - 1], "…", shown[-1]]
    return ", ".join(shown)
