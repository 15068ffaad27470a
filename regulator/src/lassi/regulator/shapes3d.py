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
once (lazily, with 3x3 supersampling and soft shadows) into per-pixel weight maps, one per
material (floor, wall, object): the fraction of the pixel covered by the material times its
Lambert + ambient shading. An image is then just these three maps times the three HSV colours
of the hue triple, which is cheap enough to render tens of thousands of images per second.

Why one long module: the renderer (geometry cast once, coloured per hue triple), the factor
indexing and the correlated splits share the factor tables and are read together.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

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

FLOOR, WALL, OBJECT = 0, 1, 2
MATERIAL_NAMES: tuple[str, ...] = ("floor", "wall", "object")

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

# Scene (world units, y up). The object stands on the floor y = 0, centred on the y axis. The
# walls' corner edge is the vertical line x = 0, z = _CORNER_DISTANCE; each wall makes 45
# degrees with the z axis. The camera orbits the y axis at orientation 0 on the -z side.
_CAMERA_DISTANCE = 4.4
_CAMERA_HEIGHT = 1.7
_LOOK_AT = np.array([0.0, 0.72, 0.0])
_FIELD_OF_VIEW = math.radians(46.0)
_CORNER_DISTANCE = 2.9
_LIGHT = np.array([-0.45, 1.0, -0.8]) / np.linalg.norm([-0.45, 1.0, -0.8])  # towards the light
_LIGHT_RADIUS = 0.07  # angular radius (radians) of the disc light that makes soft shadows
_LIGHT_SAMPLES = 8
_AMBIENT = 0.38
_SUPERSAMPLE = 3  # 3x3 rays per pixel: anti-aliased edges
_EPS = 1e-6
_N_GEOMETRIES = FACTOR_SIZES[3] * FACTOR_SIZES[4] * FACTOR_SIZES[5]  # 480
_RENDER_CHUNK = 512


def hsv_to_rgb(hue: np.ndarray, saturation: float = SATURATION, value: float = VALUE) -> np.ndarray:
    """RGB in [0, 1], shape ``hue.shape + (3,)``, of hues in [0, 1) at a fixed saturation/value."""
    hue = np.asarray(hue, dtype=np.float64)[..., None]
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Ray casting (float64, vectorised over rays)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """Nearest intersection of a batch of rays: distance (inf = miss) and unit normal."""

    t: np.ndarray  # [M]
    normal: np.ndarray  # [M, 3]


def _closer(a: _Hit, b: _Hit) -> _Hit:
    take_b = b.t < a.t
    return _Hit(np.where(take_b, b.t, a.t), np.where(take_b[:, None], b.normal, a.normal))


def _sphere(origin: np.ndarray, direction: np.ndarray, center: np.ndarray, radius: float) -> _Hit:
    oc = origin - center
    b = np.einsum("ij,ij->i", oc, direction)
    c = np.einsum("ij,ij->i", oc, oc) - radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    ok = (disc >= 0) & (t > _EPS)
    point = origin + np.where(ok, t, 0.0)[:, None] * direction
    return _Hit(np.where(ok, t, np.inf), (point - center) / radius)


def _cylinder(
    origin: np.ndarray, direction: np.ndarray, radius: float, y0: float, y1: float, top: bool
) -> _Hit:
    """Side of the vertical cylinder around the y axis between heights y0..y1 (+ top disc)."""
    ox, oy, oz = origin.T
    dx, dy, dz = direction.T
    a = np.maximum(dx * dx + dz * dz, 1e-12)
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - radius**2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y = oy + t * dy
    ok = (disc >= 0) & (t > _EPS) & (y >= y0) & (y <= y1)
    safe_t = np.where(ok, t, 0.0)
    normal = np.stack([ox + safe_t * dx, np.zeros_like(t), oz + safe_t * dz], -1) / radius
    hit = _Hit(np.where(ok, t, np.inf), normal)
    if top:
        safe_dy = np.where(np.abs(dy) < 1e-12, 1e-12, dy)
        t_top = (y1 - oy) / safe_dy
        x_top, z_top = ox + t_top * dx, oz + t_top * dz
        ok_top = (t_top > _EPS) & (x_top * x_top + z_top * z_top <= radius**2)
        up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), normal.shape)
        hit = _closer(hit, _Hit(np.where(ok_top, t_top, np.inf), up))
    return hit


def _box(origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> _Hit:
    """Axis-aligned box by the slab method."""
    safe_dir = np.where(np.abs(direction) < 1e-12, 1e-12, direction)
    t1 = (lo - origin) / safe_dir
    t2 = (hi - origin) / safe_dir
    t_near = np.minimum(t1, t2)
    axis = np.argmax(t_near, axis=1)
    t_enter = t_near.max(axis=1)
    ok = (t_enter <= np.maximum(t1, t2).min(axis=1)) & (t_enter > _EPS)
    rows = np.arange(len(origin))
    normal = np.zeros_like(t_near)
    normal[rows, axis] = -np.sign(safe_dir[rows, axis])
    return _Hit(np.where(ok, t_enter, np.inf), normal)


def _object_size(shape: int, scale: float) -> tuple[float, float]:
    """(radius or half width, height) of the object: bounds for the ray pre-filter."""
    if shape == 0:
        return 0.55 * scale, 1.1 * scale
    if shape == 1:
        return 0.56 * scale, 1.12 * scale
    if shape == 2:
        return 0.66 * scale, 1.32 * scale
    return 0.4 * scale, 1.95 * scale


def _object(origin: np.ndarray, direction: np.ndarray, shape: int, scale: float) -> _Hit:
    """Rays against the object: cube, cylinder, sphere or upright capsule."""
    width, height = _object_size(shape, scale)
    if shape == 0:
        return _box(
            origin, direction, np.array([-width, 0, -width]), np.array([width, height, width])
        )
    if shape == 1:
        return _cylinder(origin, direction, width, 0.0, height, top=True)
    if shape == 2:
        return _sphere(origin, direction, np.array([0.0, width, 0.0]), width)
    low, high = width, height - width  # centres of the two hemispherical ends
    hit = _cylinder(origin, direction, width, low, high, top=False)
    hit = _closer(hit, _sphere(origin, direction, np.array([0.0, low, 0.0]), width))
    return _closer(hit, _sphere(origin, direction, np.array([0.0, high, 0.0]), width))


def _bounding_sphere(shape: int, scale: float) -> tuple[np.ndarray, float]:
    width, height = _object_size(shape, scale)
    return np.array([0.0, height / 2.0, 0.0]), math.hypot(width * math.sqrt(2.0), height / 2.0)


def _primary_object_hits(
    position: np.ndarray, direction: np.ndarray, shape: int, scale: float
) -> _Hit:
    """Camera rays against the object; only rays through its bounding sphere are traced."""
    center, radius = _bounding_sphere(shape, scale)
    to_center = center - position
    along = direction @ to_center
    near = np.flatnonzero(to_center @ to_center - along**2 <= radius**2 * 1.01)
    hit = _Hit(np.full(len(direction), np.inf), np.zeros_like(direction))
    origin = np.broadcast_to(position, (len(near), 3))
    sub = _object(origin, direction[near], shape, scale)
    hit.t[near] = sub.t
    hit.normal[near] = sub.normal
    return hit


def _light_visibility(points: np.ndarray, shape: int, scale: float) -> np.ndarray:
    """Fraction of the disc light's sample directions not blocked by the object, per point."""
    center, radius = _bounding_sphere(shape, scale)
    rel = points - center
    along = rel @ _LIGHT
    dist2 = np.einsum("ij,ij->i", rel, rel)
    reach = radius * 1.01 + _LIGHT_RADIUS * np.sqrt(dist2)
    near = np.flatnonzero((dist2 - along**2 <= reach**2) & (along < radius))
    seen = np.zeros(len(near))
    for light in _light_directions():
        rays = np.broadcast_to(light, (len(near), 3))
        seen += np.isinf(_object(points[near], rays, shape, scale).t)
    visibility = np.ones(len(points))
    visibility[near] = seen / _LIGHT_SAMPLES
    return visibility


def _room(origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit with the floor or a wall: distance, material id, normal."""
    m = len(origin)
    dy = direction[:, 1]
    t_floor = -origin[:, 1] / np.where(dy < -_EPS, dy, -1.0)
    best = np.where((dy < -_EPS) & (t_floor > _EPS), t_floor, np.inf)
    material = np.full(m, FLOOR)
    normal = np.tile(np.array([0.0, 1.0, 0.0]), (m, 1))
    for side in (1.0, -1.0):
        outward = np.array([side, 0.0, 1.0]) / math.sqrt(2.0)  # wall: outward . p = offset
        offset = _CORNER_DISTANCE / math.sqrt(2.0)
        speed = direction @ outward
        t = (offset - origin @ outward) / np.where(speed > _EPS, speed, 1.0)
        t = np.where((speed > _EPS) & (t > _EPS), t, np.inf)
        closer = t < best
        best = np.where(closer, t, best)
        material[closer] = WALL
        normal[closer] = -outward
    return best, material, normal


def _camera_rays(
    orientation_deg: float, size: int, supersample: int
) -> tuple[np.ndarray, np.ndarray]:
    """Camera position [3] and unit ray directions [(size*ss)^2, 3], row-major from the top."""
    angle = math.radians(orientation_deg)
    position = np.array(
        [-_CAMERA_DISTANCE * math.sin(angle), _CAMERA_HEIGHT, -_CAMERA_DISTANCE * math.cos(angle)]
    )
    forward = _LOOK_AT - position
    forward /= np.linalg.norm(forward)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    n = size * supersample
    coords = ((np.arange(n) + 0.5) / n * 2.0 - 1.0) * math.tan(_FIELD_OF_VIEW / 2.0)
    directions = forward + coords[None, :, None] * right - coords[:, None, None] * up
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return position, directions.reshape(-1, 3)


def _light_directions() -> np.ndarray:
    """Fixed directions spread over the disc light (deterministic soft shadows)."""
    e1 = np.cross(_LIGHT, np.array([0.0, 0.0, 1.0]))
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(_LIGHT, e1)
    k = np.arange(_LIGHT_SAMPLES)
    angle = k * 2.399963  # golden-angle spiral
    radius = _LIGHT_RADIUS * np.sqrt((k + 0.5) / _LIGHT_SAMPLES)
    dirs = _LIGHT + radius[:, None] * (np.cos(angle)[:, None] * e1 + np.sin(angle)[:, None] * e2)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _geometry_id(factors: np.ndarray) -> np.ndarray:
    """Index 0..479 of the (scale, shape, orientation) combination of each factor row."""
    return (factors[:, 3] * FACTOR_SIZES[4] + factors[:, 4]) * FACTOR_SIZES[5] + factors[:, 5]


def cast_geometry(geometry: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one (scale, shape, orientation) combination at ``size`` x ``size`` pixels.

    Returns ``(weights, coverage)``, both float32 [size*size, 3] with one column per material
    (floor, wall, object): ``coverage`` is the fraction of the pixel's sub-rays that see the
    material, ``weights`` the same fraction times the shading (ambient + Lambert, soft shadows
    on floor and walls). A pixel's colour is ``weights @ material_colours``.
    """
    scale_i, rest = divmod(int(geometry), FACTOR_SIZES[4] * FACTOR_SIZES[5])
    shape, orientation_i = divmod(rest, FACTOR_SIZES[5])
    scale = float(SCALES[scale_i])
    position, direction, t_room, room_material, room_normal = _view(orientation_i, size)

    obj = _primary_object_hits(position, direction, shape, scale)
    on_object = obj.t < t_room
    material = np.where(on_object, OBJECT, room_material)
    normal = np.where(on_object[:, None], obj.normal, room_normal)

    lit = np.ones(len(direction))
    background = np.flatnonzero(~on_object)
    points = position + t_room[background, None] * direction[background]
    lit[background] = _light_visibility(points + normal[background] * 1e-4, shape, scale)
    shade = _AMBIENT + (1.0 - _AMBIENT) * np.clip(normal @ _LIGHT, 0.0, None) * lit

    one_hot = (material[:, None] == np.arange(3)).astype(np.float32)
    return _pool(one_hot * shade[:, None].astype(np.float32), size), _pool(one_hot, size)


@functools.lru_cache(maxsize=FACTOR_SIZES[5] + 1)
def _view(orientation_i: int, size: int) -> tuple[np.ndarray, ...]:
    """Camera rays of one orientation and their hits with the room (shared by 32 geometries)."""
    position, direction = _camera_rays(float(ORIENTATIONS[orientation_i]), size, _SUPERSAMPLE)
    t, material, normal = _room(np.broadcast_to(position, direction.shape), direction)
    arrays = (position, direction, t, material, normal)
    for array in arrays:
        array.flags.writeable = False  # shared through the cache
    return arrays


def _pool(values: np.ndarray, size: int) -> np.ndarray:
    """Average the supersampled [(size*ss)^2, 3] values to float32 [size*size, 3] pixels."""
    ss = _SUPERSAMPLE
    pooled = values.reshape(size, ss, size, ss, 3).sum(axis=3).sum(axis=1)
    return (pooled / (ss * ss)).reshape(-1, 3).astype(np.float32)


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
            self.coverage[gid] = np.rint(coverage * _SUPERSAMPLE**2).astype(np.uint8)
            self.ready[gid] = True
        if missing.size:
            _view.cache_clear()  # the per-orientation rays are only needed while casting


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
        return counts.astype(np.float32) / np.float32(_SUPERSAMPLE**2)

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
