"""The attribute-vector methods besides the average difference (``define --method``):
perpendicular (Denton et al.), Ramaswamy et al. and discover (Li & Xu), each against a known
answer on a synthetic latent with planted linear directions, then through ``define`` on the tiny
chain's Glow: what the spec records, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import DATA, run
from lassi.regulator.attribute_methods import (
    binary_labels,
    mirror_move,
    perpendicular_vector,
    ramaswamy_vector,
    train_linear_boundary,
)
from lassi.regulator.cli import main as regulator
from lassi.regulator.discover import discover_directions
from lassi.spec import EXIT_CODES, SimilaritySpec, read_artifact

D = 24


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(unit(a) @ unit(b))


@pytest.fixture(scope="module")
def planted():
    """Latents N(0, I) in R^24; the sensitive label follows u_g, the task label u_t, with
    cos(u_g, u_t) = 0.5 (the two correlate, as Ramaswamy et al. assume)."""
    rng = np.random.default_rng(0)
    u_t = unit(rng.normal(size=D))
    other = unit(rng.normal(size=D) - (rng.normal(size=D) @ u_t) * u_t)
    other = unit(other - (other @ u_t) * u_t)
    u_g = 0.5 * u_t + np.sqrt(0.75) * other
    z = rng.normal(size=(3000, D)).astype(np.float32)
    noise = rng.normal(size=(2, len(z))) * 0.1
    y_g = (z @ u_g + 0.2 + noise[0] > 0).astype(np.float32)
    y_t = (z @ u_t - 0.1 + noise[1] > 0).astype(np.float32)
    return {"z": z, "u_g": u_g, "u_t": u_t, "y_g": y_g, "y_t": y_t}


def fit(planted, label: str):
    z, y = planted["z"], planted[label]
    return train_linear_boundary(
        label, z[:2400], y[:2400], z[2400:], y[2400:], epochs=4, lr=0.02, batch_size=64, seed=0
    )


def test_binary_labels_split_a_many_valued_attribute_in_halves() -> None:
    labels, keep = binary_labels(np.arange(15), 15)
    assert keep.sum() == 14 and not keep[7]
    np.testing.assert_array_equal(labels[keep], [0] * 7 + [1] * 7)
    labels, keep = binary_labels(np.array([0, 1, 1]), 2)
    assert keep.all() and labels.tolist() == [0, 1, 1]


def test_perpendicular_finds_the_planted_direction(planted) -> None:
    fitted = fit(planted, "y_g")
    vector = perpendicular_vector(fitted, normalize=True)
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    assert cosine(vector, planted["u_g"]) > 0.9
    assert fitted.record.val_accuracy > 0.9 and fitted.record.n_val == 600
    raw = perpendicular_vector(fitted, normalize=False)
    np.testing.assert_allclose(unit(raw), vector)


@pytest.mark.slow
def test_the_kept_epoch_has_the_lowest_validation_loss(planted) -> None:
    z, y = planted["z"], planted["y_g"]
    losses = []
    for epochs in (1, 2, 3, 4):  # same seed: the first k epochs of one run
        r = train_linear_boundary("g", z[:2400], y[:2400], z[2400:], y[2400:], epochs, 0.02, 64, 0)
        losses.append(r.record.val_loss)
    kept = fit(planted, "y_g").record
    assert kept.val_loss == pytest.approx(min(losses))


@pytest.mark.slow
def test_ramaswamy_is_orthogonal_to_the_task_and_scaled_by_the_mirror_distance(planted) -> None:
    g, t = fit(planted, "y_g"), fit(planted, "y_t")
    z = planted["z"].astype(np.float64)
    vector = ramaswamy_vector(g, t, z)
    move = mirror_move(g, t)
    # orthogonal to the task's (learned) normal, along the planted sensitive move without it
    assert abs(cosine(vector, move.w_t)) < 1e-9
    u_g, u_t = planted["u_g"], planted["u_t"]
    assert cosine(vector, u_g - (u_g @ u_t) * u_t) > 0.9
    # a' mirrors a latent across g's boundary and keeps its task score
    mirrored = move.mirror(z)
    np.testing.assert_allclose(mirrored @ move.w_g + move.b_g, -(z @ move.w_g + move.b_g), atol=1e-9)
    np.testing.assert_allclose(mirrored @ move.w_t, z @ move.w_t, atol=1e-9)
    # the vector's length is the mean distance to the mirror image
    assert np.linalg.norm(vector) == pytest.approx(np.linalg.norm(z - mirrored, axis=1).mean())


def test_ramaswamy_refuses_parallel_boundaries(planted) -> None:
    from lassi.spec import UsageError

    g = fit(planted, "y_g")
    with pytest.raises(UsageError, match="parallel"):
        mirror_move(g, g)


@pytest.mark.slow
def test_discover_finds_the_classifiers_hidden_direction() -> None:
    """A 'biased classifier' driven by the task direction u_t and a hidden direction v: with
    u_t known, the first direction found is v; the second is penalised away from both."""
    rng = np.random.default_rng(1)
    d = 8
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    u_t, v = basis[:, 0], basis[:, 1]
    u_t_t, v_t = torch.tensor(u_t, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)

    def probability(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(2.0 * (z @ u_t_t) + 2.0 * (z @ v_t))

    z = rng.normal(size=(256, d)).astype(np.float32)
    found = discover_directions(
        probability, z, [u_t], directions=2, iterations=400, batch_size=4, lr=0.05,
        lambda_orth=10.0, steps=(-1.0, 0.0, 1.0), seed=0, progress=False,
    )  # fmt: skip
    first, second = found
    assert abs(first.vector @ v) > 0.9
    assert abs(first.vector @ u_t) < 0.2 and first.max_known_cosine < 0.2
    assert np.linalg.norm(first.vector) == pytest.approx(1.0)
    assert abs(second.vector @ first.vector) < 0.3 and abs(second.vector @ u_t) < 0.3
    # the classifier changes along the first direction far more than along the second
    assert first.tv_loss < second.tv_loss


# ---------------------------------------------------------------- through define


def define(chain, out: Path, *options: str) -> SimilaritySpec:
    run(regulator, ["define", "--glow", str(chain["glow"]), *DATA, "--fidelity-images", "2",
                    "--quiet", *options, "--out", str(out)])  # fmt: skip
    return read_artifact(out, expect=SimilaritySpec)


@pytest.mark.slow
def test_define_average_is_todays_default_unchanged(chain, tmp_path: Path) -> None:
    spec = define(chain, tmp_path / "avg.safetensors", "--attribute", "orientation", "--epsilon", "1.0",
                  "--fidelity-images", "4", "--method", "average")  # fmt: skip
    before = read_artifact(chain["spec"], expect=SimilaritySpec)
    np.testing.assert_array_equal(
        spec.tensors["attribute_vectors"], before.tensors["attribute_vectors"]
    )
    assert spec.meta.attribute_method == "average_diff" and spec.meta.method is None
    assert "method" not in json.loads(spec.meta.model_dump_json())  # metadata as before
    assert spec.meta.attributes == before.meta.attributes


@pytest.mark.slow
def test_define_perpendicular_records_the_classifier(chain, tmp_path: Path) -> None:
    spec = define(chain, tmp_path / "perp.safetensors", "--attribute", "orientation",
                  "--method", "perpendicular", "--boundary-epochs", "2")  # fmt: skip
    meta = spec.meta
    assert meta.attribute_method == "perpendicular" and meta.method.name == "perpendicular"
    assert meta.method.normalized and meta.method.epochs == 2 and meta.method.lr == 1e-3
    (boundary,) = meta.method.boundaries
    assert boundary.attribute == "orientation" and 0 <= boundary.val_accuracy <= 1
    assert boundary.best_epoch in (0, 1) and boundary.n_train > 0 and boundary.n_val > 0
    # the validation images its epoch was chosen on: the val split of the spec's data (rendered:
    # no content hash)
    val = meta.method.validation
    assert (val.split, val.n_samples, val.content_sha256) == ("val", 100, None)
    assert (val.dataset, val.seed, val.options) == (meta.data.dataset, meta.data.seed, meta.data.options)
    matrix = spec.tensors["attribute_vectors"]
    assert matrix.shape == (1, meta.flow.latent_dim)
    assert np.linalg.norm(matrix[0]) == pytest.approx(1.0, rel=1e-5)
    assert meta.coverage is not None and meta.coverage.vectors == "perpendicular"
    assert meta.fidelity is None


@pytest.mark.slow
def test_define_ramaswamy_records_both_boundaries(chain, tmp_path: Path) -> None:
    spec = define(chain, tmp_path / "ram.safetensors", "--attribute", "orientation", "--method",
                  "ramaswamy", "--task", "object_hue", "--boundary-epochs", "1")  # fmt: skip
    method = spec.meta.method
    assert method.task == "object_hue" and not method.normalized
    assert [b.attribute for b in method.boundaries] == ["orientation", "object_hue"]
    vector = spec.tensors["attribute_vectors"][0]
    assert np.isfinite(vector).all() and spec.meta.attributes[0].vector_norm == pytest.approx(
        float(np.linalg.norm(vector)), rel=1e-5
    )


@pytest.mark.slow
def test_define_discover_with_a_lassi_encoder_as_the_biased_classifier(chain, tmp_path: Path) -> None:
    spec = define(chain, tmp_path / "disc.safetensors", "--method", "discover", "--task",
                  "object_hue", "--classifier", str(chain["encoder"]), "--directions", "2",
                  "--discover-iterations", "3", "--boundary-epochs", "1", "--epsilon", "2")  # fmt: skip
    meta = spec.meta
    settings = meta.method.discover
    encoder = read_artifact(chain["encoder"])
    assert settings.classifier == encoder.sha256 and settings.classifier_task == "object_hue"
    assert settings.steps == [-1.0, 0.0, 1.0]  # eps / 2
    assert settings.iterations == 3 and settings.batch_size == 4 and settings.lambda_orth == 10
    assert meta.vector_names == ["biased_attr_0", "biased_attr_1"]
    matrix = spec.tensors["attribute_vectors"]
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert meta.coverage is not None and meta.coverage.m == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--attribute", "orientation", "--method", "ramaswamy"], "needs --task"),
        (["--method", "discover", "--task", "object_hue"], "needs --classifier"),
        (["--attribute", "orientation", "--method", "perpendicular", "--condition-on", "scale"],
         "--condition-on"),
        (["--attribute", "orientation", "--method", "ramaswamy", "--task", "orientation"],
         "also a sensitive"),
        (["--method", "perpendicular"], "at least one --attribute"),
        (["--attribute", "orientation", "--method", "perpendicular", "--boundary-epochs", "0"],
         "epochs"),
        (["--attribute", "orientation", "--task", "object_hue"], "not used by --method average"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_define_refuses_bad_method_options(chain, tmp_path: Path, options, message) -> None:
    out = tmp_path / "spec.safetensors"
    result = CliRunner().invoke(
        regulator, ["define", "--glow", str(chain["glow"]), *DATA, "--quiet", *options, "--out", str(out)]
    )
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.slow
def test_define_discover_refuses_a_non_encoder_classifier(chain, tmp_path: Path) -> None:
    out = tmp_path / "spec.safetensors"
    result = CliRunner().invoke(
        regulator,
        ["define", "--glow", str(chain["glow"]), *DATA, "--quiet", "--method", "discover",
         "--task", "object_hue", "--classifier", str(chain["spec"]), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code != 0 and "Traceback" not in result.output and not out.exists()


@pytest.mark.slow
def test_a_spec_naming_a_learned_method_needs_its_record(chain) -> None:
    meta = read_artifact(chain["spec"], expect=SimilaritySpec).meta
    with pytest.raises(ValueError, match="method record"):
        SimilaritySpec.model_validate({**meta.model_dump(), "attribute_method": "perpendicular"})
