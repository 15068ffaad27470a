"""Attribute vectors (halves and pairs), the spec's record of them, and ball-constrained least
squares for the coverage figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lassi.regulator.attributes import attribute_vectors, value_pairs
from lassi.regulator.coverage import ball_least_squares
from lassi.regulator.glow import preprocess
from lassi.regulator.training import build_glow
from lassi.spec import AttributeInfo, GlowConfig, SimilaritySpec, UsageError

FLOW = GlowConfig(image_size=8, n_levels=2, n_steps=1, hidden=8)


class TinySource:
    """In-memory labelled images: 'pose' has 5 values, 'smile' 2; value 0 of 'pose' can be
    left out to test the error."""

    name = "tiny"
    attribute_file = None
    attribute_names = ["pose", "smile"]
    image_size = 8

    def __init__(self, n: int = 40, seed: int = 0, skip_pose: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.pose = rng.integers(0, 5, size=n)
        if skip_pose is not None:
            self.pose[self.pose == skip_pose] = (skip_pose + 1) % 5
        else:
            self.pose[:5] = np.arange(5)  # every value present
        self.smile = rng.integers(0, 2, size=n)
        self.smile[:2] = [0, 1]
        base = rng.integers(0, 256, size=(n, 8, 8, 3))
        shade = (self.pose * 30 + self.smile * 50)[:, None, None, None]
        self.pixels = np.clip(base // 2 + shade, 0, 255).astype(np.uint8)

    def check_attribute(self, attribute: str) -> None:
        if attribute not in self.attribute_names:
            raise UsageError(None, f"unknown attribute {attribute!r}")

    def split_ids(self, split: str) -> np.ndarray:
        return np.arange(len(self.pose), dtype=np.int64)

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {"pose": self.pose[ids], "smile": self.smile[ids]}

    def num_classes(self, attribute: str) -> int:
        return {"pose": 5, "smile": 2}[attribute]

    def images(self, ids: np.ndarray) -> np.ndarray:
        return self.pixels[ids]


@pytest.fixture(scope="module")
def glow():
    torch.manual_seed(0)
    g = build_glow(FLOW).eval()
    source = TinySource()
    with torch.no_grad():  # data-dependent init, so latents are not all alike
        g.encode(preprocess(source.images(np.arange(16)), g.n_bits))
    return g


def one_by_one_latents(glow, source) -> np.ndarray:
    with torch.no_grad():
        return np.stack(
            [
                glow.encode(preprocess(source.images(np.array([i])), glow.n_bits))[0].double().numpy()
                for i in source.split_ids("train")
            ]
        )


def test_value_pairs_straddle_the_middle() -> None:
    pairs = value_pairs(15)
    assert len(pairs) == 49
    assert {b for b, _ in pairs} == set(range(7)) and {e for _, e in pairs} == set(range(8, 15))
    assert value_pairs(4) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert value_pairs(2) == [(0, 1)]


def test_pair_vectors_are_the_mean_differences_per_value(glow) -> None:
    source = TinySource()
    ids = source.split_ids("train")
    vectors, infos = attribute_vectors(glow, source, ["pose", "smile"], ids, batch_size=7, progress=False)
    z = one_by_one_latents(glow, source)
    expected = []
    for b in (0, 1):  # 5 values: low half 0, 1; high half 3, 4; 2 is the middle
        for e in (3, 4):
            expected.append(z[source.pose == e].mean(axis=0) - z[source.pose == b].mean(axis=0))
    expected.append(z[source.smile == 1].mean(axis=0) - z[source.smile == 0].mean(axis=0))
    assert vectors.shape == (5, FLOW.latent_dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, np.stack(expected), rtol=1e-4, atol=1e-5)
    pose, smile = infos
    assert pose.vectors == "pairs" and pose.names == ["pose_0_3", "pose_0_4", "pose_1_3", "pose_1_4"]
    assert pose.value_counts == np.bincount(source.pose, minlength=5).tolist()
    assert smile.vectors == "halves" and smile.names == ["smile"]  # binary: one vector
    assert pose.n_negative == int((source.pose < 2).sum())
    assert pose.n_positive == int((source.pose > 2).sum())


def test_halves_vector_is_high_half_minus_low_half(glow) -> None:
    source = TinySource()
    ids = source.split_ids("train")
    vectors, infos = attribute_vectors(glow, source, ["pose"], ids, vectors="halves", progress=False)
    z = one_by_one_latents(glow, source)
    expected = z[source.pose >= 3].mean(axis=0) - z[source.pose <= 1].mean(axis=0)
    assert vectors.shape == (1, FLOW.latent_dim) and infos[0].names == ["pose"]
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-4, atol=1e-5)


def test_pairs_need_every_value(glow) -> None:
    source = TinySource(skip_pose=4)
    with pytest.raises(UsageError, match="no train images with value 4"):
        attribute_vectors(glow, source, ["pose"], source.split_ids("train"), progress=False)
    # halves still works without value 4
    vectors, _ = attribute_vectors(
        glow, source, ["pose"], source.split_ids("train"), vectors="halves", progress=False
    )
    assert vectors.shape == (1, FLOW.latent_dim)


def _spec(attrs: list[AttributeInfo]) -> SimilaritySpec:
    from factories import PROVENANCE
    from lassi.spec import Preprocessing

    return SimilaritySpec(
        tool="t 0",
        flow=FLOW,
        preprocessing=Preprocessing(image_size=8),
        data=PROVENANCE,
        attributes=attrs,
        epsilon=1.0,
    )


def test_spec_names_every_vector_as_computed() -> None:
    """Every attribute names each of its vectors, one per row of the tensor: a file without
    names, with an empty list, or with names other than those define computes (a halves vector
    is the attribute's name; pairs are <attr>_<b>_<e>, low b outer, high e inner) is refused."""
    common = dict(num_values=15, positive="high", negative="low", n_positive=3, n_negative=3, vector_norm=1.0)
    names = [f"orientation_{b}_{e}" for b, e in value_pairs(15)]
    pairs = AttributeInfo(name="orientation", vectors="pairs", vector_names=names, **common)
    scale = AttributeInfo(**{**common, "name": "scale", "num_values": 8, "vector_names": ["scale"]})
    spec = _spec([pairs, scale])
    assert spec.vector_names == [*names, "scale"]
    assert spec.tensor_specs()[0].shape == (50, FLOW.latent_dim)
    assert SimilaritySpec.model_validate_json(spec.model_dump_json()) == spec
    for fields, match in [
        ({"vectors": "halves"}, "vector_names"),  # written without names
        ({"vectors": "halves", "vector_names": []}, "at least 1"),
        ({"vectors": "halves", "vector_names": ["pose"]}, "named orientation"),
        ({"vectors": "pairs"}, "vector_names"),
        ({"vectors": "pairs", "vector_names": names[::-1]}, "orientation_0_8 .. orientation_6_14"),
        ({"vectors": "pairs", "vector_names": names[:-1]}, "named orientation_0_8"),
        ({"vectors": "pairs", "vector_names": ["orientation"], "num_values": 10**6}, "pair vectors"),
    ]:
        with pytest.raises(ValueError, match=match):
            AttributeInfo.model_validate({"name": "orientation", **common, **fields})


def _projected_gradient(a: np.ndarray, d: np.ndarray, eps: float, steps: int = 20_000) -> np.ndarray:
    """An independent solver: projected gradient descent on ||d − tA||² over the ball."""
    gram = a @ a.T
    step = 1.0 / np.linalg.eigvalsh(gram).max()
    t = np.zeros(len(a))
    for _ in range(steps):
        t = t - step * (t @ gram - a @ d)
        norm = np.linalg.norm(t)
        if norm > eps:
            t *= eps / norm
    return t


@pytest.mark.parametrize("m", [1, 3, 6])
@pytest.mark.slow
def test_ball_least_squares_matches_projected_gradient(m: int) -> None:
    rng = np.random.default_rng(m)
    a = rng.normal(size=(m, 20)) * rng.uniform(0.2, 3.0, size=(m, 1))
    targets = rng.normal(size=(8, 20)) * np.array([0.05, 0.2, 1, 2, 4, 8, 16, 32])[:, None]
    eps = 1.0
    t, active = ball_least_squares(a, targets, eps)
    for k, d in enumerate(targets):
        reference = _projected_gradient(a, d, eps)
        best = np.linalg.norm(d - reference @ a)
        assert np.linalg.norm(t[k]) <= eps * (1 + 1e-9)
        assert np.linalg.norm(d - t[k] @ a) <= best + 1e-7 * (1 + best)
        np.testing.assert_allclose(t[k], reference, atol=1e-5)
        assert active[k] == (np.linalg.norm(np.linalg.lstsq(a.T, d, rcond=None)[0]) > eps)
    assert active.any() and not active.all()


@pytest.mark.slow
def test_ball_least_squares_brute_force_in_the_plane_and_rank_deficient() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(2, 5))
    radius, angle = np.meshgrid(np.linspace(0, 0.8, 801), np.linspace(0, 2 * np.pi, 2001))
    grid = np.stack([(radius * np.cos(angle)).ravel(), (radius * np.sin(angle)).ravel()], 1)
    for d in rng.normal(size=(4, 5)) * 3:
        t, _ = ball_least_squares(a, d[None], 0.8)
        brute = np.linalg.norm(d[None] - grid @ a, axis=1).min()
        assert np.linalg.norm(d - t[0] @ a) <= brute + 1e-12
        assert np.linalg.norm(d - t[0] @ a) >= brute - 1e-3
    # duplicated vectors (49 pair vectors are far from independent): the same optimum
    doubled = np.concatenate([a, a])
    d = rng.normal(size=5) * 5
    t2, _ = ball_least_squares(doubled, d[None], 0.8)
    reference = _projected_gradient(doubled, d, 0.8)
    np.testing.assert_allclose(
        np.linalg.norm(d - t2[0] @ doubled), np.linalg.norm(d - reference @ doubled), rtol=1e-6
    )
    assert np.linalg.norm(t2[0]) <= 0.8 * (1 + 1e-9)


def test_reach_of_the_pairs_ball_against_the_high_minus_low_move() -> None:
    """define's size figure: max over ||t|| <= eps of ||t A|| = eps · s_max(A), computed here by hand
    for latents that move linearly with the value (mean of value v = v · u): every pair vector is
    (e − b) u, so s_max = sqrt(sum (e − b)^2) = 7 sqrt(72) for 15 values (e − b has mean 8 and
    variance 8 over the 49 pairs), and the high-minus-low move is 8 u."""
    from lassi.regulator.attributes import ValueMeans
    from lassi.regulator.similarity import describe_reach

    u = np.zeros(6)
    u[2] = 3.0  # ||u|| = 3
    values = np.arange(15)
    counts = np.full(15, 4)
    stats = ValueMeans("orientation", sums=(values[:, None] * u) * counts[:, None], counts=counts)
    matrix, _ = stats.pairs()
    assert matrix.shape == (49, 6)
    line = describe_reach(matrix.astype(np.float32), 1 / 7, [stats])
    assert f"{np.sqrt(72) * 3:.3f}" in line  # eps · 7 sqrt(72) · ||u||
    assert f"{np.sqrt(72) / 8:.2f} x the high-minus-low move of orientation" in line  # 1.06
    line = describe_reach(matrix.astype(np.float32), 1.0, [stats])
    assert f"{7 * np.sqrt(72) / 8:.2f} x" in line  # eps = 1: 7.42 times the move


def test_conditional_vectors_are_the_halves_within_each_group(glow) -> None:
    """``--condition-on``: after the attribute's own vectors, one high-minus-low vector per value
    of the conditioning attribute, over that group's images only (hand-computed here)."""
    source = TinySource()
    ids = source.split_ids("train")
    plain, _ = attribute_vectors(glow, source, ["pose"], ids, batch_size=7, progress=False)
    vectors, infos = attribute_vectors(
        glow, source, ["pose"], ids, batch_size=7, progress=False, given="smile"
    )
    z = one_by_one_latents(glow, source)
    expected = [
        z[(source.pose >= 3) & (source.smile == g)].mean(axis=0)
        - z[(source.pose <= 1) & (source.smile == g)].mean(axis=0)
        for g in (0, 1)
    ]
    assert vectors.shape == (4 + 2, FLOW.latent_dim)
    np.testing.assert_allclose(vectors[:4], plain, rtol=1e-5, atol=1e-6)  # own vectors unchanged
    np.testing.assert_allclose(vectors[4:], np.stack(expected), rtol=1e-4, atol=1e-5)
    (pose,) = infos
    assert pose.names == ["pose_0_3", "pose_0_4", "pose_1_3", "pose_1_4", "pose_given_smile_0", "pose_given_smile_1"]
    assert pose.given == "smile" and pose.given_counts == np.bincount(source.smile).tolist()
    assert pose.value_counts == np.bincount(source.pose, minlength=5).tolist()
    # the same from latents already computed (the experiments' cached latents)
    from lassi.regulator.attributes import ValueMeans

    cached = ValueMeans.of_latents("pose", z, source.pose, 5, "smile", source.smile, 2)
    np.testing.assert_allclose(cached.conditional()[0], np.stack(expected), rtol=1e-10)
    np.testing.assert_allclose(cached.pairs()[0], plain, rtol=1e-4, atol=1e-5)
    assert ValueMeans.of_latents("pose", z, source.pose, 5).group_sums is None
    # halves + conditional: the attribute's own name first
    vectors, (pose,) = attribute_vectors(
        glow, source, ["pose"], ids, vectors="halves", progress=False, given="smile"
    )
    assert pose.names == ["pose", "pose_given_smile_0", "pose_given_smile_1"] and len(vectors) == 3
    np.testing.assert_allclose(vectors[1:], np.stack(expected), rtol=1e-4, atol=1e-5)


def test_conditional_vectors_refuse_a_sensitive_or_one_sided_group(glow) -> None:
    source = TinySource()
    ids = source.split_ids("train")
    with pytest.raises(UsageError, match="it is one of the sensitive attributes"):
        attribute_vectors(glow, source, ["pose", "smile"], ids, progress=False, given="smile")
    with pytest.raises(UsageError, match="unknown attribute"):
        attribute_vectors(glow, source, ["pose"], ids, progress=False, given="age")
    source.pose[source.smile == 1] = 0  # no smiling image in the high half of pose
    source.pose[:5] = np.arange(5) * (source.smile[:5] == 0)
    with pytest.raises(UsageError, match="no images with it in the images with smile = 1"):
        attribute_vectors(glow, source, ["pose"], ids, vectors="halves", progress=False, given="smile")


def test_spec_checks_conditional_vector_names() -> None:
    common = dict(num_values=15, positive="high", negative="low", n_positive=3, n_negative=3, vector_norm=1.0)
    pairs = [f"orientation_{b}_{e}" for b, e in value_pairs(15)]
    given = [f"orientation_given_scale_{g}" for g in range(8)]
    info = AttributeInfo(
        name="orientation", vectors="pairs", vector_names=pairs + given, given="scale",
        given_counts=[5] * 8, **common,
    )  # fmt: skip
    assert info.given_values == 8 and _spec([info]).tensor_specs()[0].shape == (57, FLOW.latent_dim)
    halves = AttributeInfo(name="orientation", vector_names=["orientation", *given], given="scale",
                           given_counts=[5] * 8, **common)  # fmt: skip
    assert _spec([halves]).vector_names == ["orientation", *given]
    bad = [
        dict(vector_names=pairs + given, given="scale", given_counts=[5] * 7),  # 7 groups, 8 names
        dict(vector_names=pairs + given[::-1], given="scale", given_counts=[5] * 8),
        dict(vector_names=given, given="scale", given_counts=[5] * 8),  # no own vectors
        dict(vector_names=pairs + given, given="scale"),  # no counts
        dict(vector_names=pairs, given_counts=[5] * 8),  # counts without given
        dict(vector_names=pairs + given, given="scale", given_counts=[5] * 7 + [1]),
        dict(vector_names=pairs + [f"orientation_given_orientation_{g}" for g in range(15)],
             given="orientation", given_counts=[5] * 15),  # fmt: skip
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            AttributeInfo(name="orientation", vectors="pairs", **{**common, **fields})
    with pytest.raises(ValueError):  # halves: the own vector must carry the attribute's name
        AttributeInfo(name="orientation", vector_names=["x", *given], given="scale", given_counts=[5] * 8, **common)
    scale = AttributeInfo(**{**common, "name": "scale", "num_values": 8, "vector_names": ["scale"]})
    with pytest.raises(ValueError, match="itself sensitive"):
        _spec([info, scale])


def test_conditioning_on_a_many_valued_attribute_is_refused_before_the_pass(glow) -> None:
    class ManyGroups(TinySource):
        attribute_names = ["pose", "smile", "id"]

        def num_classes(self, attribute: str) -> int:
            return 10**6 if attribute == "id" else super().num_classes(attribute)

        def attributes(self, ids):
            return {**super().attributes(ids), "id": np.asarray(ids)}

        def images(self, ids):
            raise AssertionError("no image may be read")

    source = ManyGroups()
    with pytest.raises(UsageError, match="GiB .* over the 2 GiB limit"):
        attribute_vectors(glow, source, ["pose"], source.split_ids("train"), progress=False, given="id")
