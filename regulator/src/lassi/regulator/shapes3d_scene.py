"""The 3D Shapes scene, ray-cast: a room corner (floor and two walls), one object standing on
the floor, a disc light fixed in the world and a camera orbiting the object (the orientation
factor). :func:`cast` gives per-pixel weight maps, one per material, that
:class:`lassi.regulator.shapes3d.Shapes3D` colours with each hue triple."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

FLOOR, WALL, OBJECT = 0, 1, 2
MATERIAL_NAMES: tuple[str, ...] = ("floor", "wall", "object")

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
SUPERSAMPLE = 3  # 3x3 rays per pixel: anti-aliased edges
_EPS = 1e-6


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


def cast(scale: float, shape: int, orientation: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the object ``shape`` (0 cube, 1 cylinder, 2 sphere, 3 capsule) at ``scale``,
    seen from ``orientation`` degrees, at ``size`` x ``size`` pixels.

    Returns ``(weights, coverage)``, both float32 [size*size, 3] with one column per material
    (floor, wall, object): ``coverage`` is the fraction of the pixel's sub-rays that see the
    material, ``weights`` the same fraction times the shading (ambient + Lambert, soft shadows
    on floor and walls). A pixel's colour is ``weights @ material_colours``.
    """
    position, direction, t_room, room_material, room_normal = _view(orientation, size)

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


@functools.lru_cache(maxsize=16)  # the 15 orientations of the data set, and one more
def _view(orientation: float, size: int) -> tuple[np.ndarray, ...]:
    """Camera rays of one orientation and their hits with the room (shared by 32 geometries)."""
    position, direction = _camera_rays(orientation, size, SUPERSAMPLE)
    t, material, normal = _room(np.broadcast_to(position, direction.shape), direction)
    arrays = (position, direction, t, material, normal)
    for array in arrays:
        array.flags.writeable = False  # shared through the cache
    return arrays


def _pool(values: np.ndarray, size: int) -> np.ndarray:
    """Average the supersampled [(size*ss)^2, 3] values to float32 [size*size, 3] pixels."""
    ss = SUPERSAMPLE
    pooled = values.reshape(size, ss, size, ss, 3).sum(axis=3).sum(axis=1)
    return (pooled / (ss * ss)).reshape(-1, 3).astype(np.float32)



def clear_views() -> None:
    """Drop the cached camera rays (only needed while geometries are being cast)."""
    _view.cache_clear()
