"""The audit's check of the data: the bundle's samples re-created under the auditor's own root.

The bundle's recorded data *paths* are never used: data on disk is read from the auditor's
``data_root`` and must hash as the bundle records (each file's SHA-256, tensor ``file_sha256``, and
``DataProvenance.content_sha256``, see :mod:`lassi.regulator.content_hash`); a sample whose file
differs is named and left out of the replay (:class:`DataMismatch`), the others are decoded from
the very bytes hashed (exit 4 where the data cannot be matched). 3D Shapes is rendered from its
recorded seed and split sizes; a 3dshapes.h5 must hold the very rows encoded (the SHA-256 of the
bundle's rows, ``content_hash = "rows"``; exit 4 otherwise). A bundle of stored images always
records their content hash (the reader refuses one without). The replay itself is :mod:`lassi.regulator.audit`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lassi.regulator.content_hash import decode_sample, has_files, read_samples
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.datasets import DataError
from lassi.regulator.shapes3d import N_IMAGES
from lassi.spec import IntegrityError, RepresentationBundle, UsageError
from lassi.spec.contract.models import DataProvenance


def auditor_data_config(
    data: DataProvenance, data_root: Path | None, where: Path, allow_outside: bool = False
) -> DatasetConfig:
    """The bundle's data identity with the auditor's own root; recorded paths are ignored, and
    links out of the root are read only with ``allow_outside`` (a link farm)."""
    if data.dataset != "shapes3d" and data_root is None:
        raise UsageError(
            None, f"{where.name} was encoded from {data.dataset} data: pass --data-root"
        )
    return DatasetConfig.from_provenance(  # names confined to the root
        data, where=where, root=data_root, allow_symlinks_outside_root=allow_outside
    )


DATA_VERDICTS = ("data_changed", "data_missing", "data_renamed", "data_unreadable")
"""Verdicts of samples whose data under the auditor's root is not what the producer encoded."""


@dataclass(frozen=True)
class DataMismatch:
    """A bundle sample whose image file in the auditor's copy differs from the one encoded."""

    sample_id: int
    file: str  # the name the bundle records
    kind: str  # changed | missing | renamed | unreadable
    detail: str

    @property
    def verdict(self) -> str:
        return f"data_{self.kind}"

    def line(self) -> str:
        return f"sample {self.sample_id} ({self.file}): {self.kind}, {self.detail}"


@dataclass
class CheckedData:
    """The audited samples whose data matches (ids and images) and what does not."""

    ids: list[int]
    images: np.ndarray
    mismatches: list[DataMismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def checked_images(
    meta: RepresentationBundle,
    tensors: dict[str, np.ndarray],
    source: Any,
    ids: list[int],
    data_root: Path | None,
    where: Path,
) -> CheckedData:
    """The images of the audited samples ``ids`` whose files match the bundle, and each sample
    of the bundle whose file does not.

    Bundles with per-file hashes (``file_sha256``): every sample's file is looked up by the name
    the bundle records, hashed and compared; a changed, missing, renamed (the same bytes listed
    under another name at the sample's id) or unreadable file is a :class:`DataMismatch`, and
    the other samples are audited. The audited images are decoded from the very bytes hashed."""
    all_ids = [int(i) for i in tensors["ids"]]
    if not has_files(source):
        beyond = [i for i in all_ids if i >= N_IMAGES]
        if beyond:
            raise UsageError(
                where,
                f"records sample id {beyond[0]}, beyond the rendered 3D Shapes data set "
                f"(ids are 0–{N_IMAGES - 1})",
            )
        return _stored_rows(meta, source, all_ids, ids, where)
    if not meta.per_file_hashes:  # the reader requires them of image files: a caller's bug
        raise ValueError(f"{where.name} records no per-file hashes of its images")
    return _per_file(meta, tensors, source, ids, where)


def _per_file(
    meta: RepresentationBundle, tensors: dict[str, np.ndarray], source: Any, ids: list[int], where: Path
) -> CheckedData:
    all_ids = [int(i) for i in tensors["ids"]]
    names, recorded = meta.file_names or [], tensors["file_sha256"]
    position: dict[str, int] = {}
    for index, name in enumerate(source.files):
        position.setdefault(name, index)
    audited = set(ids)
    listed = [r for r, name in enumerate(names) if name in position]
    read = read_samples(
        source,
        [position[names[r]] for r in listed],
        keep=[position[names[r]] for r in listed if all_ids[r] in audited],
        tolerant=True,
    )
    found: dict[int, bytes] = {}
    mismatches = []
    for j, r in enumerate(listed):
        sample_id, name, here = all_ids[r], names[r], position[names[r]]
        if here in read.problems:
            problem = read.problems[here]
            kind = "missing" if "not found" in problem else "unreadable"
            mismatches.append(DataMismatch(sample_id, name, kind, problem))
        elif not np.array_equal(read.digests[j], recorded[r]):
            mismatches.append(
                DataMismatch(sample_id, name, "changed", "its bytes differ from those encoded")
            )
        elif sample_id in audited:
            found[sample_id] = read.kept[here]
    unlisted = [r for r, name in enumerate(names) if name not in position]
    same_id = [r for r in unlisted if all_ids[r] < len(source.files)]
    moved = read_samples(source, [all_ids[r] for r in same_id], tolerant=True)
    renamed = {
        r: source.files[all_ids[r]]
        for j, r in enumerate(same_id)
        if all_ids[r] not in moved.problems and np.array_equal(moved.digests[j], recorded[r])
    }
    for r in unlisted:
        if r in renamed:
            detail = f"the same bytes are listed here as {renamed[r]}"
            mismatches.append(DataMismatch(all_ids[r], names[r], "renamed", detail))
        else:
            detail = "not listed in the data here"
            mismatches.append(DataMismatch(all_ids[r], names[r], "missing", detail))
    mismatches.sort(key=lambda m: m.sample_id)
    kept_ids = [i for i in ids if i in found]
    row_of = {sample_id: r for r, sample_id in enumerate(all_ids)}
    images = (
        np.stack([decode_sample(source, position[names[row_of[i]]], found[i]) for i in kept_ids])
        if kept_ids
        else np.zeros((0, source.image_size, source.image_size, 3), np.uint8)
    )
    return CheckedData(kept_ids, images, mismatches)


def _stored_rows(
    meta: RepresentationBundle, source: Any, all_ids: list[int], ids: list[int], where: Path
) -> CheckedData:
    """Rendered 3D Shapes (made here from the recorded factors) or a 3dshapes.h5, whose rows of
    the bundle's samples must hash as recorded: one file holds every image, so a different file
    is refused as a whole (exit 4)."""
    data = meta.data
    if data is not None and data.content_hash == "rows":
        here = source.rows_sha256(np.asarray(all_ids, dtype=np.int64))
        if here != data.content_sha256:
            raise IntegrityError(
                getattr(source, "path", None),
                f"holds other images than those {where.name} was encoded from (the SHA-256 of "
                f"its {len(all_ids)} samples' rows is {here}, the bundle records "
                f"{data.content_sha256}): pass the producer's 3dshapes.h5",
            )
    return CheckedData(list(ids), source.images(np.array(ids, dtype=np.int64)))


def open_source(
    data: DataProvenance, data_root: Path | None, where: Path, allow_outside: bool = False
) -> Any:
    """The data source of the bundle's recorded identity under the auditor's own root; recorded
    options the data set cannot satisfy (split sizes beyond it) are exit 2, one line."""
    config = auditor_data_config(data, data_root, where, allow_outside)
    try:
        return make_source(config)
    except DataError:
        raise
    except ValueError as error:
        raise UsageError(
            where, f"records {data.dataset} data that cannot be made here ({error})"
        ) from None
