"""DeepMind's ``3dshapes.h5`` read lazily: the real 3D Shapes data set (paper Sec. 5, Table 2).

The file (github.com/deepmind/3d-shapes) holds ``images`` [480 000, 64, 64, 3] uint8 and
``labels`` [480 000, 6] float64, the factors floor_hue, wall_hue, object_hue, scale, shape and
orientation, "varied one at a time, starting from orientation": row i is the factor combination
``Shapes3D.index_to_factors(i)`` of the built-in renderer, whose factor names and value counts
are those of the real set. So an id means the same scene for both sources, ``--attribute
orientation --task object_hue`` work the same, and the built-in seeded (and ``--correlate``d)
splits apply unchanged.

On opening, the labels are checked chunk by chunk against that order (each factor's value
index must be the rank of its value, one value per index, increasing: the authors turn labels
into category codes the same way), so a reordered or foreign file is refused. Images are read
only when asked for, in bounded chunks of rows: peak memory does not depend on the file's size.
When the folder also holds the authors' split files ``custom_{train,valid,test}_split.npy``
(eth-sri/lassi), they give the splits (``np.load(allow_pickle=False)``, checked: 1-D integer
row numbers in range, no repeats, disjoint), each capped at ``n_train`` / ``n_val`` /
``n_test``; ``--correlate SENSITIVE:TARGET:full`` keeps the authors' correlated train subset.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from lassi.regulator.datasets import DataError, Shapes3DFactors
from lassi.regulator.datasets.source import as_ids
from lassi.regulator.shapes3d import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    N_IMAGES,
    Shapes3D,
    half_of_range,
    make_splits,
)

FILE_NAME = "3dshapes.h5"
IMAGE_SHAPE = (64, 64, 3)
SPLIT_FILES = {"train": "custom_train_split.npy", "val": "custom_valid_split.npy", "test": "custom_test_split.npy"}
LABEL_CHUNK = 32_768  # rows of labels per read (1.5 MB of float64)
IMAGE_CHUNK = 128  # rows of images per read (1.5 MB)
MAX_H5_CHUNK_BYTES = 16 * 1024**2  # a chunk is decompressed whole: bound what one read costs
MAX_SPLIT_FILE_BYTES = 16 * 1024**2
CACHE_BYTES = 4 * 1024**2  # HDF5 chunk cache


class Shapes3DH5Source(Shapes3DFactors):
    """The real 3D Shapes from ``root/3dshapes.h5`` (see the module docstring)."""

    name = "shapes3d-h5"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        seed: int = 0,
        n_train: int = 20_000,
        n_val: int = 1_000,
        n_test: int = 1_000,
        correlate: tuple[str, str, float] | None = None,
    ) -> None:
        import h5py

        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "3D Shapes folder not found")
        self.path = self.attribute_file = self.root / FILE_NAME
        if not self.path.is_file():
            raise DataError(self.path, f"not found (DeepMind's {FILE_NAME} is expected in the folder)")
        if int(image_size) != image_size or not 4 <= image_size <= 1024:
            raise ValueError(f"image_size must be an integer in 4..1024, got {image_size}")
        self.image_size = int(image_size)
        self.attribute_names = list(FACTOR_NAMES)
        self.seed = seed
        self.correlate = correlate
        try:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=CACHE_BYTES)
        except OSError as error:
            raise DataError(self.path, f"not a readable HDF5 file ({' '.join(str(error).split())[:200]})") from None
        self._images = self._dataset("images", (N_IMAGES, *IMAGE_SHAPE), "u")
        labels = self._dataset("labels", (N_IMAGES, len(FACTOR_NAMES)), "f")
        self.factor_values = _check_label_order(labels, self.path)
        self._splits = self._make_splits(seed, n_train, n_val, n_test, correlate)

    # ------------------------------------------------------------------ opening

    def _dataset(self, key: str, shape: tuple[int, ...], kind: str):
        import h5py

        link = self._file.get(key, getlink=True)
        if link is not None and not isinstance(link, h5py.HardLink):
            raise DataError(self.path, f"'{key}' is a link to another place ({type(link).__name__}), not a dataset of the file")
        node = self._file.get(key)
        if not isinstance(node, h5py.Dataset):
            raise DataError(self.path, f"has no dataset '{key}' (expected {key} of shape {list(shape)})")
        if node.external or node.is_virtual:  # its bytes would come from other files
            raise DataError(self.path, f"dataset '{key}' keeps its data in other files (external or virtual storage)")
        if tuple(node.shape) != shape:
            raise DataError(self.path, f"dataset '{key}' has shape {list(node.shape)}, expected {list(shape)}")
        if node.dtype.kind != kind or (kind == "u" and node.dtype.itemsize != 1):
            want = "uint8" if kind == "u" else "float"
            raise DataError(self.path, f"dataset '{key}' has dtype {node.dtype}, expected {want}")
        if node.chunks is not None and int(np.prod(node.chunks)) * node.dtype.itemsize > MAX_H5_CHUNK_BYTES:
            raise DataError(
                self.path,
                f"dataset '{key}' is stored in chunks of {list(node.chunks)}, over "
                f"{MAX_H5_CHUNK_BYTES} bytes each (each read would decompress one whole)",
            )
        return node

    def _make_splits(
        self, seed: int, n_train: int, n_val: int, n_test: int, correlate: tuple[str, str, float] | None
    ) -> dict[str, np.ndarray]:
        present = {split: self.root / name for split, name in SPLIT_FILES.items() if (self.root / name).exists()}
        if not present:
            try:
                return make_splits(seed, n_train, n_val, n_test, correlate)
            except ValueError as error:
                raise DataError(None, str(error)) from None
        if len(present) != len(SPLIT_FILES):
            missing = sorted(set(SPLIT_FILES.values()) - {p.name for p in present.values()})
            raise DataError(self.root, f"has some of the authors' split files but not {', '.join(missing)}")
        splits = {split: read_split_file(path) for split, path in present.items()}
        seen = np.zeros(N_IMAGES, dtype=bool)
        for split, ids in splits.items():
            if seen[ids].any():
                raise DataError(present[split], "shares rows with another split file")
            seen[ids] = True
        if correlate is not None:
            sensitive, target, strength = correlate
            if strength != 1.0:
                raise DataError(
                    present["train"],
                    "with the authors' split files only --correlate SENSITIVE:TARGET:full applies "
                    "(their correlated train subset)",
                )
            splits["train"] = authors_correlated(splits["train"], sensitive, target)
        caps = {"train": n_train, "val": n_val, "test": n_test}
        return {split: ids[: caps[split]] for split, ids in splits.items()}

    # ------------------------------------------------------------------ ImageSource

    def images(self, ids: np.ndarray) -> np.ndarray:
        """uint8 [N, size, size, 3] of rows ``ids``, read IMAGE_CHUNK rows at a time (64x64 rows
        are resized by area averaging when ``image_size`` differs)."""
        ids = as_ids(ids, N_IMAGES)
        out = np.empty((len(ids), self.image_size, self.image_size, 3), dtype=np.uint8)
        block = np.empty((IMAGE_CHUNK, *IMAGE_SHAPE), dtype=np.uint8)
        for start in range(0, len(ids), IMAGE_CHUNK):
            rows = ids[start : start + IMAGE_CHUNK]
            try:  # one row at a time: HDF5 point selections of many rows are far slower
                for k, row in enumerate(rows):
                    block[k] = self._images[int(row)]
            except (OSError, ValueError) as error:
                raise DataError(self.path, f"cannot read images ({' '.join(str(error).split())[:200]})") from None
            out[start : start + len(rows)] = self._resize(block[: len(rows)])
        return out

    def rows_sha256(self, ids: np.ndarray) -> str:
        """SHA-256 over the stored image rows ``ids`` (in the order given): the content identity
        that caches and checkpoints over this file are keyed by, so another file at the same path
        (or the same file at another path) is never served a stale latent or resumed into.
        Reads each row once, IMAGE_CHUNK rows of memory at a time; computed once per set of ids
        for this open file (a run's key, checkpoint and provenance all ask for it)."""
        ids = as_ids(ids, N_IMAGES)
        known = self.__dict__.setdefault("_rows_sha256", {})
        asked = hashlib.sha256(np.ascontiguousarray(ids, np.int64).tobytes()).digest()
        if asked not in known:
            known[asked] = self._hash_rows(ids)
        return known[asked]

    def _hash_rows(self, ids: np.ndarray) -> str:
        digest = hashlib.sha256(len(ids).to_bytes(8, "little"))
        try:
            for row in ids.tolist():
                digest.update(np.ascontiguousarray(self._images[int(row)]).tobytes())
        except (OSError, ValueError) as error:
            raise DataError(self.path, f"cannot read images ({' '.join(str(error).split())[:200]})") from None
        return digest.hexdigest()

    def pipeline_sha256(self) -> str:
        """The identity of the resize from the stored 64 x 64 rows to ``image_size`` (none at
        64): SHA-256 of seeded probe rows resized now."""
        digest = hashlib.sha256(f"lassi 3dshapes.h5 resize probe v1\0{self.image_size}\0".encode())
        probe = np.random.default_rng(0).integers(0, 256, (2, *IMAGE_SHAPE), dtype=np.uint8)
        digest.update(np.ascontiguousarray(self._resize(probe)).tobytes())
        return digest.hexdigest()

    def _resize(self, block: np.ndarray) -> np.ndarray:
        if self.image_size == IMAGE_SHAPE[0]:
            return block
        size = (self.image_size, self.image_size)
        return np.stack([np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BOX)) for im in block])

    @property
    def renderer(self) -> FileRenderer:
        """The images of factor rows read from the file: the real orientation siblings for
        ``define``'s fidelity and coverage and ``show`` (what the built-in source renders)."""
        return FileRenderer(self)

    def close(self) -> None:
        self._file.close()


class FileRenderer:
    """``render(factors)`` of :class:`~lassi.regulator.shapes3d.Shapes3D`, served from the file."""

    def __init__(self, source: Shapes3DH5Source) -> None:
        self.source = source
        self.image_size = source.image_size

    def render(self, factors: np.ndarray) -> np.ndarray:
        return self.source.images(Shapes3D.factors_to_index(factors))


def _check_label_order(labels, path: Path) -> dict[str, np.ndarray]:
    """Each factor's value per value index, having checked LABEL_CHUNK rows at a time that row i
    holds ``index_to_factors(i)``: one value per index, increasing with it."""
    values = [np.full(size, np.nan) for size in FACTOR_SIZES]
    for start in range(0, N_IMAGES, LABEL_CHUNK):
        stop = min(start + LABEL_CHUNK, N_IMAGES)
        try:
            block = np.asarray(labels[start:stop], dtype=np.float64)
        except (OSError, ValueError) as error:
            raise DataError(path, f"cannot read labels ({' '.join(str(error).split())[:200]})") from None
        if not np.isfinite(block).all():
            raise DataError(path, f"labels rows {start}..{stop - 1} hold NaN or Inf")
        codes = Shapes3D.index_to_factors(np.arange(start, stop))
        for column, name in enumerate(FACTOR_NAMES):
            known = values[column]
            first = np.isnan(known[codes[:, column]])
            if first.any():  # values seen for the first time in this chunk
                fresh = codes[first, column]
                _, at = np.unique(fresh, return_index=True)
                known[fresh[at]] = block[first, column][at]
            expected = known[codes[:, column]]
            bad = np.flatnonzero(block[:, column] != expected)
            if bad.size:
                row = start + int(bad[0])
                raise DataError(
                    path,
                    f"labels row {row}: {name} = {float(block[bad[0], column])!r}, but row {row} "
                    f"of {FILE_NAME} is value {codes[bad[0], column]} of {name}, which is "
                    f"{float(expected[bad[0]])!r} elsewhere (the rows are not in the data set's order)",
                )
    for column, name in enumerate(FACTOR_NAMES):
        if not (np.diff(values[column]) > 0).all():
            raise DataError(path, f"labels: the values of {name} do not increase with its value index")
    return dict(zip(FACTOR_NAMES, values, strict=True))


def read_split_file(path: Path) -> np.ndarray:
    """int64 row numbers of one of the authors' ``custom_*_split.npy`` (no pickle, checked)."""
    from lassi.spec.contract.files import read_file

    data = read_file(path, MAX_SPLIT_FILE_BYTES, "a split file")
    try:
        ids = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(path, f"not a .npy array of row numbers ({' '.join(str(error).split())[:200]})") from None
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise DataError(path, f"must be a 1-D integer array, got {getattr(ids, 'dtype', type(ids))} {list(np.shape(ids))}")
    if ids.size == 0:
        raise DataError(path, "is empty")
    if ids.min() < 0 or ids.max() >= N_IMAGES:
        raise DataError(path, f"row numbers must be in 0..{N_IMAGES - 1}")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(path, "repeats a row number")
    return ids


def authors_correlated(train: np.ndarray, sensitive: str, target: str) -> np.ndarray:
    """The authors' correlated train subset (eth-sri/lassi ``Shapes3dDataset``): the rows with
    target in its low half and sensitive in its low half, then those with both high; a middle
    sensitive value (orientation 0 degrees) is dropped."""
    for name in (sensitive, target):
        if name not in FACTOR_NAMES:
            raise DataError(None, f"--correlate: unknown factor {name!r}; valid: {', '.join(FACTOR_NAMES)}")
    factors = Shapes3D.index_to_factors(train)
    s, t = FACTOR_NAMES.index(sensitive), FACTOR_NAMES.index(target)
    t_size = FACTOR_SIZES[t]
    target_high = factors[:, t] >= t_size // 2  # their label_1s: values (n >> 1)..n-1
    sens_half = half_of_range(factors[:, s], FACTOR_SIZES[s])
    low = train[~target_high & (sens_half == -1)]
    high = train[target_high & (sens_half == 1)]
    return np.concatenate([low, high])
