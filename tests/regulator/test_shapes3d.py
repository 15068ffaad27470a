"""Procedural 3D Shapes: factor indexing, rendering and seeded (correlated) splits."""

from __future__ import annotations

import numpy as np
import pytest

from lassi.regulator.shapes3d import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    N_IMAGES,
    ORIENTATIONS,
    SCALES,
    Shapes3D,
    half_of_range,
    make_splits,
)
from lassi.regulator.shapes3d_scene import FLOOR, OBJECT, WALL

SIZE = 32  # small images keep the cold geometry cache cheap


@pytest.fixture(scope="module")
def renderer() -> Shapes3D:
    return Shapes3D(SIZE)


def test_factor_grids() -> None:
    assert FACTOR_NAMES == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert FACTOR_SIZES == (10, 10, 10, 8, 4, 15)
    assert N_IMAGES == int(np.prod(FACTOR_SIZES)) == 480_000
    np.testing.assert_allclose(SCALES, np.linspace(0.75, 1.25, 8))
    np.testing.assert_allclose(ORIENTATIONS, np.linspace(-30, 30, 15))


def test_index_round_trip_random_and_extremes() -> None:
    rng = np.random.default_rng(0)
    index = np.concatenate([[0, 1, 14, 15, N_IMAGES - 1], rng.integers(0, N_IMAGES, 2000)])
    factors = Shapes3D.index_to_factors(index)
    assert factors.shape == (len(index), 6) and factors.dtype == np.int64
    assert (factors >= 0).all() and (factors < np.array(FACTOR_SIZES)).all()
    np.testing.assert_array_equal(Shapes3D.factors_to_index(factors), index)
    # last factor (orientation) varies fastest, like the real data set
    np.testing.assert_array_equal(
        factors[:4], [[0] * 6, [0, 0, 0, 0, 0, 1], [0] * 5 + [14], [0] * 4 + [1, 0]]
    )
    np.testing.assert_array_equal(factors[4], np.array(FACTOR_SIZES) - 1)


def test_index_validation() -> None:
    with pytest.raises(ValueError, match="indices"):
        Shapes3D.index_to_factors(np.array([N_IMAGES]))
    with pytest.raises(ValueError, match="orientation"):
        Shapes3D.factors_to_index(np.array([[0, 0, 0, 0, 0, 15]]))
    with pytest.raises(ValueError, match="shape"):
        Shapes3D.factors_to_index(np.zeros((3, 5), dtype=np.int64))


def test_siblings() -> None:
    factors = Shapes3D.index_to_factors(np.array([12345, 401234]))
    sib = Shapes3D.siblings(factors)
    assert sib.shape == (2, 15, 6)
    np.testing.assert_array_equal(sib[:, :, 5], np.tile(np.arange(15), (2, 1)))
    np.testing.assert_array_equal(sib[:, :, :5], np.repeat(factors[:, None, :5], 15, axis=1))
    hue = Shapes3D.siblings(factors, "object_hue")
    assert hue.shape == (2, 10, 6)
    np.testing.assert_array_equal(hue[1, :, 2], np.arange(10))
    with pytest.raises(ValueError, match="valid"):
        Shapes3D.siblings(factors, "colour")


@pytest.mark.parametrize("size", [32, 64])
def test_render_size_dtype_and_determinism(size: int) -> None:
    factors = Shapes3D.index_to_factors(np.array([0, 77777, 250001, N_IMAGES - 1]))
    images = Shapes3D(size).render(factors)
    assert images.shape == (4, size, size, 3) and images.dtype == np.uint8
    assert images.std() > 10  # not blank
    again = Shapes3D(size).render(factors)
    np.testing.assert_array_equal(images, again)
    one_by_one = np.concatenate([Shapes3D(size).render(factors[i : i + 1]) for i in range(4)])
    np.testing.assert_array_equal(images, one_by_one)


def test_render_validation(renderer: Shapes3D) -> None:
    with pytest.raises(ValueError, match="scale"):
        renderer.render(np.array([[0, 0, 0, 8, 0, 0]]))
    with pytest.raises(ValueError, match="integer"):
        renderer.render(np.zeros((1, 6)))
    assert renderer.render(np.zeros((0, 6), dtype=np.int64)).shape == (0, SIZE, SIZE, 3)


@pytest.mark.parametrize("shape", range(4))
@pytest.mark.slow
def test_orientation_is_visible_for_every_shape(renderer: Shapes3D, shape: int) -> None:
    base = np.array([[1, 5, 8, 4, shape, 0]])
    strip = renderer.render(Shapes3D.siblings(base)[0])
    ends = np.abs(strip[0].astype(float) - strip[14]).mean()
    assert ends > 10.0, f"shape {shape}: orientation -30 vs 30 differ by only {ends:.2f}"
    neighbours = np.abs(np.diff(strip.astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert (neighbours > 0.5).all()  # every orientation step changes the image
    # the object itself (not just the walls) is seen differently
    cover = renderer.material_coverage(Shapes3D.siblings(base)[0][[0, 14]])
    on_object = (cover[0, ..., OBJECT] == 1) & (cover[1, ..., OBJECT] == 1)
    assert on_object.sum() > 20
    assert np.abs(strip[0].astype(float) - strip[14])[on_object].mean() > 1.0


@pytest.mark.parametrize(("column", "material"), [(0, FLOOR), (1, WALL), (2, OBJECT)])
def test_hue_changes_only_its_region(renderer: Shapes3D, column: int, material: int) -> None:
    factors = np.array([[2, 4, 6, 3, 1, 9]] * 2)
    factors[1, column] = 7
    images = renderer.render(factors).astype(int)
    changed = np.abs(images[0] - images[1]).sum(axis=-1) > 0
    cover = renderer.material_coverage(factors[:1])[0, ..., material]
    assert not changed[cover == 0].any()
    assert changed[cover == 1].all()
    assert (cover == 1).sum() > 30


def test_scale_and_shape_change_the_object(renderer: Shapes3D) -> None:
    factors = np.array([[0, 3, 6, 0, 0, 7], [0, 3, 6, 7, 0, 7], [0, 3, 6, 7, 2, 7]])
    cover = renderer.material_coverage(factors)[..., OBJECT].sum(axis=(1, 2))
    assert cover[1] > 1.4 * cover[0]  # scale 1.25 vs 0.75
    images = renderer.render(factors).astype(int)
    assert np.abs(images[1] - images[2]).mean() > 2  # cube vs sphere


def test_half_of_range() -> None:
    np.testing.assert_array_equal(half_of_range(np.arange(15), 15), [-1] * 7 + [0] + [1] * 7)
    np.testing.assert_array_equal(half_of_range(np.arange(10), 10), [-1] * 5 + [1] * 5)
    np.testing.assert_array_equal(half_of_range(np.arange(2), 2), [-1, 1])


def test_splits_disjoint_sized_and_seeded() -> None:
    splits = make_splits(3, 1000, 200, 300)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1000, "val": 200, "test": 300}
    every = np.concatenate(list(splits.values()))
    assert every.dtype == np.int64 and len(np.unique(every)) == len(every)
    assert every.min() >= 0 and every.max() < N_IMAGES
    same = make_splits(3, 1000, 200, 300)
    other = make_splits(4, 1000, 200, 300)
    for key in splits:
        np.testing.assert_array_equal(splits[key], same[key])
        assert not np.array_equal(splits[key], other[key])


def _agreement(index: np.ndarray) -> float:
    """Fraction of samples whose orientation half matches the object hue half."""
    factors = Shapes3D.index_to_factors(index)
    orientation = half_of_range(factors[:, 5], 15)
    hue = half_of_range(factors[:, 2], 10)
    keep = orientation != 0
    return float((orientation[keep] == hue[keep]).mean())


def test_correlated_train_split() -> None:
    plain = make_splits(5, 4000, 500, 4000)
    splits = make_splits(5, 4000, 500, 4000, correlate=("orientation", "object_hue", 0.9))
    # val and test do not depend on the correlation and stay uniform
    np.testing.assert_array_equal(plain["val"], splits["val"])
    np.testing.assert_array_equal(plain["test"], splits["test"])
    every = np.concatenate(list(splits.values()))
    assert len(np.unique(every)) == len(every)
    # expected agreement: (0.9 + 0.1 * 7/15) / (0.9 + 0.1 * 14/15) = 0.953
    assert _agreement(splits["train"]) > 0.93
    assert abs(_agreement(splits["test"]) - 0.5) < 0.04
    assert abs(_agreement(plain["train"]) - 0.5) < 0.04
    # the other factors stay uniform in the correlated train split
    floor = Shapes3D.index_to_factors(splits["train"])[:, 0]
    assert np.bincount(floor, minlength=10).min() > 300


def test_fully_correlated_split_matches_the_authors() -> None:
    train = make_splits(1, 3000, 10, 10, correlate=("orientation", "object_hue", 1.0))["train"]
    orientation = Shapes3D.index_to_factors(train)[:, 5]
    assert not (orientation == 7).any()  # the middle orientation is in neither half
    assert _agreement(train) == 1.0


def test_split_errors() -> None:
    with pytest.raises(ValueError, match="at most"):
        make_splits(0, N_IMAGES, 1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        make_splits(0, -1, 1, 1)
    with pytest.raises(ValueError, match="unknown factor"):
        make_splits(0, 10, 1, 1, correlate=("pose", "object_hue", 0.5))
    with pytest.raises(ValueError, match="strength"):
        make_splits(0, 10, 1, 1, correlate=("orientation", "object_hue", 1.5))
    with pytest.raises(ValueError, match="differ"):
        make_splits(0, 10, 1, 1, correlate=("orientation", "orientation", 0.5))
