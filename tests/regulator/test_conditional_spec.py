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

pytestmark = pytest.mark.slow  # every test reads the session's chain


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


TRAIN = ["--task", "object_hue", "--hidden", "64,32", "--k", "16", "--epochs", "2", "--batch-size", "64",
         "--attack-points", "4", "--lambda-contr", "0.1", "--delta", "1", "--quiet"]  # build_chain's  # fmt: skip


def test_an_encoder_trained_against_the_extension_stays_the_specs(chain, conditional, tmp_path: Path) -> None:
    """``train --spec PAIRS --attack-spec CONDITIONAL``: the attack draws t in the 57-dimensional
    ball, so the weights are exactly those of the encoder trained on the conditional spec, but the
    encoder is the pairs spec's: its parent, and center smoothing over the 49 pair vectors."""
    from factories import DATA

    out = tmp_path / "encoder.safetensors"
    result = CliRunner().invoke(
        producer, ["train", "--spec", str(chain["spec"]), "--attack-spec", str(conditional["spec"]), *DATA,
                   *TRAIN, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from lassi.spec import EncoderCard

    mine = read_artifact(out, expect=EncoderCard)
    twin = read_artifact(conditional["encoder"], expect=EncoderCard)
    pairs_sha = read_artifact(chain["spec"]).sha256
    assert mine.meta.parents["similarity_spec"] == pairs_sha
    attack = mine.meta.training.attack_set
    assert attack is not None and attack.spec == read_artifact(conditional["spec"]).sha256
    assert attack.extra_vectors == [f"orientation_given_scale_{g}" for g in range(8)]
    assert mine.tensors.keys() == twin.tensors.keys()
    for name in mine.tensors:
        np.testing.assert_array_equal(mine.tensors[name], twin.tensors[name], err_msg=name)
    assert read_artifact(chain["encoder"], expect=EncoderCard).meta.training.attack_set is None
    bundle = tmp_path / "test.safetensors"
    result = CliRunner().invoke(
        producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(out), *DATA, "--split", "test",
                   "--limit", "2", "--certify", "--n0", "500", "--n", "500", "--delta", "0.1", "--quiet",
                   "--out", str(bundle)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_artifact(bundle, expect=RepresentationBundle).meta
    assert meta.certificate.m == 49 and meta.parents["similarity_spec"] == pairs_sha


def _tampered(source: Path, out: Path, *, meta: dict | None = None, tensor: str | None = None) -> Path:
    """A copy of the spec ``source`` with metadata fields replaced or one tensor's first element changed."""
    from lassi.spec import write_artifact

    artifact = read_artifact(source, expect=SimilaritySpec)
    tensors = {k: v.copy() for k, v in artifact.tensors.items()}
    if tensor is not None:
        tensors[tensor].reshape(-1)[0] += 0.5
    write_artifact(out, artifact.meta.model_copy(update=meta or {}), tensors)
    return out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("itself", "adds no attribute vector"),
        ("reversed", "first 57 attribute vectors are not the spec's"),
        ("epsilon", "epsilon 2, not 1"),
        ("vector", "first 49 attribute vectors are not the spec's"),
        ("glow", "another Glow (its weights differ)"),
    ],
)
def test_train_refuses_an_attack_spec_that_does_not_extend_the_spec(
    chain, conditional, tmp_path: Path, case: str, message: str
) -> None:
    from factories import DATA

    spec, attack = chain["spec"], conditional["spec"]
    if case == "itself":
        attack = spec
    elif case == "reversed":
        spec, attack = attack, spec
    elif case == "epsilon":
        attack = _tampered(attack, tmp_path / "attack.safetensors", meta={"epsilon": 2.0})
    elif case == "vector":
        attack = _tampered(attack, tmp_path / "attack.safetensors", tensor="attribute_vectors")
    else:
        glow_tensor = next(k for k in read_artifact(attack).tensors if k.startswith("glow."))
        attack = _tampered(attack, tmp_path / "attack.safetensors", tensor=glow_tensor)
    out = tmp_path / "encoder.safetensors"
    result = CliRunner().invoke(
        producer, ["train", "--spec", str(spec), "--attack-spec", str(attack), *DATA, *TRAIN, "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert message in result.output and str(attack) in result.output and not out.exists()


def test_train_refuses_to_write_over_its_attack_spec(chain, conditional, tmp_path: Path) -> None:
    from factories import DATA

    attack = tmp_path / "attack.safetensors"
    attack.write_bytes(conditional["spec"].read_bytes())
    before = attack.read_bytes()
    result = CliRunner().invoke(
        producer, ["train", "--spec", str(chain["spec"]), "--attack-spec", str(attack), *DATA, *TRAIN,
                   "--out", str(attack)],
    )  # fmt: skip
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert "is also an input" in result.output and attack.read_bytes() == before
