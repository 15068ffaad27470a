"""Procedurally rendered 3D Shapes: a deterministic clone of DeepMind's ``3dshapes`` data set.

The six independent factors and their value grids are those of the real data set:

=============  ======  =========================================================
factor         values  grid
=============  ======  =========================================================
floor_hue      10      ``np.linspace(0, 1, 10, endpoint=False)``
wall_hue       10      same
object_hue     10      same
scale          8       ``np.linspace(0.75, 1.25, 8)``
shape          4       0 cube, 1 cylinder, 2 sphere, 3 capsule
orientation    15      ``np.linspace(-30, 30, 15)`` degrees
=============  ======  =========================================================

The scene is a room corner: a floor plane, two walls meeting in a vertical edge behind the
object, and one object standing on the floor in the middle. As in the real data set,
*orientation turns the view around the scene*: the camera orbits the vertical axis through the
object, so the walls' corner slides sideways, the floor/wall boundary tilts, and the object is
seen from another side and under another light angle (the light is fixed in the world). A
sphere therefore looks different at every orientation too.

Geometry depends only on (shape, scale, orientation), 480 combinations. Each one is ray-cast
once (lazily, with 3x3 supersampling and soft shadows; :mod:`lassi.regulator.shapes3d_scene`)
into per-pixel weight maps, one per material (floor, wall, object): the fraction of the pixel
covered by the material times its Lambert + ambient shading. An image is then just these three maps times the three HSV colours
of the hue triple, which is cheap enough to render tens of thousands of images per second.

The images are code, not files: :func:`renderer_sha256`, a hash of a few rendered probe images,
is their identity. Caches, checkpoints and provenance of rendered data carry it, so images that
render differently here (a changed renderer, numpy, a platform's floating point) are never mixed
with images rendered before.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from lassi.regulator import shapes3d_scene
from lassi.regulator.shapes3d_scene import SUPERSAMPLE

FACTOR_NAMES: tuple[str, ...] = (
    "floor_hue",
    "wall_hue",
    "object_hue",
    "scale",
    "shape",
    "orientation",
)
FACTOR_SIZES: tuple[int, ...] = (10, 10, 10, 8, 4, 15)
N_IMAGES = 480_000

HUES = np.linspace(0.0, 1.0, 10, endpoint=False)
SCALES = np.linspace(0.75, 1.25, 8)
SHAPE_NAMES: tuple[str, ...] = ("cube", "cylinder", "sphere", "capsule")
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)

FACTOR_VALUES: dict[str, np.ndarray] = {
    "floor_hue": HUES,
    "wall_hue": HUES,
    "object_hue": HUES,
    "scale": SCALES,
    "shape": np.arange(4),
    "orientation": ORIENTATIONS,
}

# Colours: saturated hues at full value, like the bright MuJoCo renders of the real data set.
SATURATION = 0.9
VALUE = 1.0

_N_GEOMETRIES = FACTOR_SIZES[3] * FACTOR_SIZES[4] * FACTOR_SIZES[5]  # 480
_RENDER_CHUNK = 512


def hsv_to_rgb(hue: np.ndarray, saturation: float = SATURATION, value: float = VALUE) -> np.ndarray:
    """RGB in [0, 1], shape ``hue.shape + (3,)``, of hues in [0, 1) at a fixed saturation/value."""
    hue = np.asarray(hue, dtype=np.float64)[..., None]
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _geometry_id(factors: np.ndarray) -> np.ndarray:
    """Index 0..479 of the (scale, shape, orientation) combination of each factor row."""
    return (factors[:, 3] * FACTOR_SIZES[4] + factors[:, 4]) * FACTOR_SIZES[5] + factors[:, 5]


def cast_geometry(geometry: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one (scale, shape, orientation) combination, by its :func:`_geometry_id`, at
    ``size`` x ``size`` pixels: ``(weights, coverage)`` of :func:`shapes3d_scene.cast`."""
    scale_i, rest = divmod(int(geometry), FACTOR_SIZES[4] * FACTOR_SIZES[5])
    shape, orientation_i = divmod(rest, FACTOR_SIZES[5])
    return shapes3d_scene.cast(float(SCALES[scale_i]), shape, float(ORIENTATIONS[orientation_i]), size)


class _GeometryCache:
    """Lazily ray-cast geometries of one image size (shared by all renderers of that size)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.weights = np.zeros((_N_GEOMETRIES, size * size, 3), dtype=np.float32)
        # coverage in sub-ray counts (0..ss^2): a quarter of the memory of float32
        self.coverage = np.zeros((_N_GEOMETRIES, size * size, 3), dtype=np.uint8)
        self.ready = np.zeros(_N_GEOMETRIES, dtype=bool)

    def ensure(self, geometry_ids: np.ndarray) -> None:
        missing = np.unique(geometry_ids[~self.ready[geometry_ids]])
        for gid in missing:  # sorted: orientation varies fastest, so views are reused
            weights, coverage = cast_geometry(int(gid), self.size)
            self.weights[gid] = weights
            self.coverage[gid] = np.rint(coverage * SUPERSAMPLE**2).astype(np.uint8)
            self.ready[gid] = True
        if missing.size:
            shapes3d_scene.clear_views()  # the per-orientation rays are only needed while casting


_CACHES: dict[int, _GeometryCache] = {}


def _check_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must have shape [N, 6], got {list(factors.shape)}")
    if factors.size and not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer value indices, got dtype {factors.dtype}")
    factors = factors.astype(np.int64)
    for column, (name, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
        bad = (factors[:, column] < 0) | (factors[:, column] >= size)
        if bad.any():
            value = factors[bad, column][0]
            raise ValueError(f"factor {name} must be in 0..{size - 1}, got {value}")
    return factors


class Shapes3D:
    """Renderer of the 480 000 factor combinations (factor *value indices*, not values)."""

    def __init__(self, image_size: int = 64) -> None:
        if int(image_size) != image_size or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {image_size}")
        self.image_size = int(image_size)
        self._cache = _CACHES.setdefault(self.image_size, _GeometryCache(self.image_size))

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Images of factor index rows: int [N, 6] -> uint8 [N, H, W, 3]. Deterministic."""
        factors = _check_factors(factors)
        size = self.image_size
        geometry = _geometry_id(factors)
        self._cache.ensure(geometry)
        palette = (hsv_to_rgb(HUES) * 255.0).astype(np.float32)  # [10, 3]
        out = np.empty((len(factors), size * size, 3), dtype=np.uint8)
        for start in range(0, len(factors), _RENDER_CHUNK):
            part = slice(start, start + _RENDER_CHUNK)
            colours = palette[factors[part, :3]]  # [n, material, rgb]
            pixels = np.matmul(self._cache.weights[geometry[part]], colours)
            pixels += 0.5
            out[part] = pixels.astype(np.uint8)
        return out.reshape(len(factors), size, size, 3)

    def material_coverage(self, factors: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, 3]: per pixel, the fraction showing floor, wall and object."""
        factors = _check_factors(factors)
        geometry = _geometry_id(factors)
        self._cache.ensure(geometry)
        size = self.image_size
        counts = self._cache.coverage[geometry].reshape(len(factors), size, size, 3)
        return counts.astype(np.float32) / np.float32(SUPERSAMPLE**2)

    def precompute(self) -> None:
        """Ray-cast all 480 geometries now (otherwise each is cast on first use)."""
        self._cache.ensure(np.arange(_N_GEOMETRIES))

    @staticmethod
    def index_to_factors(index: np.ndarray) -> np.ndarray:
        """Factor value indices [N, 6] of data set indices [N]; orientation varies fastest."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= N_IMAGES):
            raise ValueError(f"indices must be in 0..{N_IMAGES - 1}")
        factors = np.empty(index.shape + (len(FACTOR_SIZES),), dtype=np.int64)
        rest = index.copy()
        for column in range(len(FACTOR_SIZES) - 1, -1, -1):
            rest, factors[..., column] = np.divmod(rest, FACTOR_SIZES[column])
        return factors

    @staticmethod
    def factors_to_index(factors: np.ndarray) -> np.ndarray:
        """Data set indices [N] of factor value indices [N, 6] (inverse of index_to_factors)."""
        factors = _check_factors(factors)
        index = np.zeros(len(factors), dtype=np.int64)
        for column, size in enumerate(FACTOR_SIZES):
            index = index * size + factors[:, column]
        return index

    @staticmethod
    def siblings(factors: np.ndarray, factor: str = "orientation") -> np.ndarray:
        """[N, size, 6]: each row repeated with ``factor`` running over all its values."""
        factors = _check_factors(factors)
        column = _factor_column(factor)
        out = np.repeat(factors[:, None, :], FACTOR_SIZES[column], axis=1)
        out[:, :, column] = np.arange(FACTOR_SIZES[column])
        return out


PROBE_FACTORS = np.array(
    [
        [0, 1, 2, 0, 0, 0],
        [3, 4, 5, 7, 1, 14],
        [6, 7, 8, 3, 2, 7],
        [9, 0, 1, 5, 3, 3],
        [2, 5, 9, 1, 2, 11],
        [8, 3, 6, 6, 0, 5],
    ],
    dtype=np.int64,
)
"""The factor rows :func:`renderer_sha256` renders: every shape, the extreme scales and
orientations and the middle one, every hue on some material."""


@functools.cache
def renderer_sha256(image_size: int) -> str:
    """The identity of the images this renderer makes at ``image_size``: SHA-256 of the probe
    images (:data:`PROBE_FACTORS`) and their material coverage, rendered now (once per process
    and size). Any change in how images render, whoever made it, changes it."""
    renderer = Shapes3D(image_size)
    digest = hashlib.sha256(b"lassi.regulator.shapes3d probe v1\0")
    digest.update(int(renderer.image_size).to_bytes(4, "little"))
    digest.update(np.ascontiguousarray(renderer.render(PROBE_FACTORS)).tobytes())
    digest.update(np.ascontiguousarray(renderer.material_coverage(PROBE_FACTORS)).tobytes())
    return digest.hexdigest()


def rendered_sha256(renderer, factor_blocks) -> str:
    """SHA-256 of the images ``renderer.render`` gives each block of factor rows, in order (a
    run's data identity where a renderer may be the built-in one or a file's); one block in
    memory at a time."""
    digest = hashlib.sha256(b"lassi rendered images v1\0")
    for factors in factor_blocks:
        images = np.ascontiguousarray(renderer.render(np.asarray(factors)), dtype=np.uint8)
        digest.update(repr(images.shape).encode() + b"\0" + images.tobytes())
    return digest.hexdigest()


def _factor_column(name: str) -> int:
    if name not in FACTOR_NAMES:
        raise ValueError(f"unknown factor {name!r}; valid: {', '.join(FACTOR_NAMES)}")
    return FACTOR_NAMES.index(name)


def half_of_range(values: np.ndarray, size: int) -> np.ndarray:
    """-1 for the low half of ``0..size-1``, +1 for the high half, 0 for an odd middle value.

    Low = ``v < size // 2``, high = ``v >= size // 2 + size % 2``; for orientation (15 values)
    that is 0..6 and 8..14, the middle (0 degrees) belongs to neither, as in the authors' code.
    """
    values = np.asarray(values)
    low = values < size // 2
    high = values >= size // 2 + size % 2
    return high.astype(np.int64) - low.astype(np.int64)


def make_splits(
    seed: int,
    n_train: int,
    n_val: int,
    n_test: int,
    correlate: tuple[str, str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Disjoint, seeded int64 index arrays ``"train"``, ``"val"``, ``"test"`` into the 480k set.

    Each array is in random order, so any prefix is a random sub-sample. ``val`` and ``test``
    are always uniform and depend only on ``seed``, ``n_val`` and ``n_test``.

    ``correlate=(sensitive, target, strength)``, e.g. ``("orientation", "object_hue", 0.9)``,
    makes the *train* split correlated (the paper's correlated-orientation train split): every
    factor is uniform except the sensitive one, which with probability ``strength`` is drawn
    uniformly from the half of its range tied to the target's half, and otherwise uniformly
    from all its values. The target's low half is its first ``size // 2`` values (object hue
    0..4), the rest is its high half (5..9); low target goes with the sensitive factor's low
    half (orientation 0..6), high with high (8..14); the middle orientation (0 degrees) is in
    neither half. ``strength = 1`` reproduces the authors' fully correlated split
    (``src/dataset/shapes3d_dataset.py`` of eth-sri/lassi): only object hue 0..4 with orientation
    0..6 and hue 5..9 with orientation 8..14, orientation 7 dropped. Train
    indices are drawn without replacement with these probabilities from the indices not used
    by ``val`` and ``test``.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, n in sizes.items():
        if int(n) != n or n < 0:
            raise ValueError(f"n_{name} must be a non-negative integer, got {n}")
    if n_train + n_val + n_test > N_IMAGES:
        raise ValueError(f"n_train + n_val + n_test must be at most {N_IMAGES}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(N_IMAGES)
    val = order[:n_val]
    test = order[n_val : n_val + n_test]
    if correlate is None:
        train = order[n_val + n_test : n_val + n_test + n_train]
    else:
        weights = _correlated_weights(*correlate)
        weights[order[: n_val + n_test]] = 0.0
        if np.count_nonzero(weights) < n_train:
            raise ValueError(
                f"correlate={correlate} leaves only {np.count_nonzero(weights)} indices, "
                f"fewer than n_train={n_train}"
            )
        train = rng.choice(N_IMAGES, size=n_train, replace=False, p=weights / weights.sum())
    return {
        "train": np.asarray(train, dtype=np.int64),
        "val": val.astype(np.int64),
        "test": test.astype(np.int64),
    }


def _correlated_weights(sensitive: str, target: str, strength: float) -> np.ndarray:
    """Unnormalised probability of every index under the correlated train distribution."""
    s_col, t_col = _factor_column(sensitive), _factor_column(target)
    if s_col == t_col:
        raise ValueError("the sensitive and target factors must differ")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"correlation strength must be in [0, 1], got {strength}")
    factors = Shapes3D.index_to_factors(np.arange(N_IMAGES))
    s_size, t_size = FACTOR_SIZES[s_col], FACTOR_SIZES[t_col]
    target_high = factors[:, t_col] >= t_size // 2
    s_half = half_of_range(factors[:, s_col], s_size)
    tied = np.where(target_high, s_half == 1, s_half == -1)
    return (1.0 - strength) / s_size + strength * tied / (s_size // 2)
