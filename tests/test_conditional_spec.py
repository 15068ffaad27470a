"""A spec with vectors conditioned on another attribute (``define --condition-on``) through every
role: define, show, producer train / encode --certify / export, the audit's replay, and the
consumer's report of what the certificates cover."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import DATA, build_chain
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import (
    EXIT_CODES,
    RepresentationBundle,
    SimilaritySpec,
    VerificationReport,
    read_artifact,
)


@pytest.fixture(scope="module")
def conditional(chain: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny chain again on the same Glow, its spec defined with ``--condition-on scale``."""
    return build_chain(tmp_path_factory.mktemp("conditional"), glow=chain["glow"], define=("--condition-on", "scale"))


def test_define_condition_on_scale_adds_one_vector_per_scale(chain, conditional) -> None:
    spec = read_artifact(conditional["spec"], expect=SimilaritySpec)
    pairs = read_artifact(chain["spec"], expect=SimilaritySpec)
    (orientation,) = spec.meta.attributes
    assert orientation.vectors == "pairs" and orientation.given == "scale" and orientation.given_values == 8
    assert spec.meta.vector_names[:49] == pairs.meta.vector_names
    assert spec.meta.vector_names[49:] == [f"orientation_given_scale_{g}" for g in range(8)]
    assert sum(orientation.given_counts) == spec.meta.data.n_samples == sum(orientation.value_counts)
    matrix = spec.tensors["attribute_vectors"]
    assert matrix.shape == (57, spec.meta.flow.latent_dim)
    np.testing.assert_array_equal(matrix[:49], pairs.tensors["attribute_vectors"])  # same Glow, same data
    cov = spec.meta.coverage
    assert cov.m == 57 and cov.vectors == "pairs + halves per scale"
    # the 57-vector ball contains the 49-vector one: its best point can only be closer
    assert cov.latent_residual <= pairs.meta.coverage.latent_residual + 1e-6


@pytest.mark.parametrize(
    ("given", "message"),
    [("orientation", "it is one of the sensitive attributes"), ("mood", "mood")],
)
def test_define_refuses_a_bad_condition(chain, tmp_path: Path, given: str, message: str) -> None:
    out = tmp_path / "spec.safetensors"
    result = CliRunner().invoke(
        regulator,
        ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA,
         "--condition-on", given, "--quiet", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert message in result.output and not out.exists()


def test_show_draws_the_first_and_last_conditional_vector(conditional, tmp_path: Path) -> None:
    from lassi.regulator.show import representative_vectors

    meta = read_artifact(conditional["spec"], expect=SimilaritySpec).meta
    chosen = [meta.vector_names[i] for i in representative_vectors(meta)]
    assert chosen == ["orientation_0_14", "orientation_3_11", "orientation_6_8",
                      "orientation_given_scale_0", "orientation_given_scale_7"]  # fmt: skip
    out = tmp_path / "strips.png"
    result = CliRunner().invoke(regulator, ["show", str(conditional["spec"]), "--out", str(out), "--inputs", "1"])
    assert result.exit_code == 0, result.output and out.exists()


def test_certificates_for_the_conditional_set_are_replayed_and_reported(conditional, tmp_path: Path) -> None:
    bundle = read_artifact(conditional["test"], expect=RepresentationBundle)
    assert bundle.meta.certificate.m == 57  # center smoothing drew t-noise in 57 dimensions
    certified = bundle.tensors["ids"][bundle.tensors["status"] == 0][:2]
    assert len(certified) == 2, "the conditional chain should certify at least 2 of its 6 samples"
    onnx_dir = tmp_path / "onnx"
    result = CliRunner().invoke(
        producer, ["export-onnx", "--spec", str(conditional["spec"]), "--encoder", str(conditional["encoder"]),
                   "--out-dir", str(onnx_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    audit = CliRunner().invoke(
        regulator,
        ["audit", "--spec", str(conditional["spec"]), "--base-function", str(onnx_dir / "base_function.onnx"),
         "--bundle", str(conditional["test"]), "--ids", ",".join(str(i) for i in certified), "--json"],
    )  # fmt: skip
    assert audit.exit_code == 0, audit.output
    rows = json.loads(audit.output[: audit.output.rindex("]") + 1])
    assert [r["verdict"] for r in rows] == ["confirmed"] * 2
    report = tmp_path / "report.safetensors"
    result = CliRunner().invoke(
        consumer,
        ["verify", "--classifier", str(conditional["classifier"]), "--bundle", str(conditional["test"]),
         "--spec", str(conditional["spec"]), "--n0", "100", "--n", "500", "--quiet", "--out", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scope = read_artifact(report, expect=VerificationReport).meta.scope
    assert scope.m == 57 and scope.given == {"orientation": "scale"} and scope.vectors == {"orientation": "pairs"}
    markdown = report.with_suffix(".md").read_text()
    assert "m = 57 attribute vectors (orientation: pairs + one halves vector per value of scale)" in markdown
