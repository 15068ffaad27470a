"""Binding and policy: a producer's bundle checked against the regulator's spec (the spec
header read without torch, the certification policy, the dimension of the t-noise, what a
report says its certificates cover), a file swapped after its signature was checked, and the
audit's replay of a center."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from factories import forge, one_line
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, LassiError, read_artifact
from lassi.spec.contract.binding import check_binding, read_spec_header
from lassi.spec.contract.files import pinned_reads, read_file
from lassi.spec.contract.models import (
    CertificateScope,
    CertificationPolicy,
    Coverage,
    RepresentationBundle,
    SimilaritySpec,
    VerificationReport,
)

USAGE, INTEGRITY = (EXIT_CODES[k] for k in ("usage", "integrity"))


# --------------------------------------------------------------------------- races


@pytest.mark.slow
def test_signature_vouches_for_the_bytes_that_are_parsed(chain: dict[str, Path], tmp_path: Path) -> None:
    """A file swapped after the signature check is not what the command parses."""
    from lassi.spec.contract.signing import sign_file, verify_file

    key = tmp_path / "p.key"
    assert CliRunner().invoke(producer, ["keygen", "--out", str(key)]).exit_code == 0
    path = tmp_path / "bundle.safetensors"
    path.write_bytes(chain["test"].read_bytes())
    sign_file(path, key)
    genuine = read_artifact(path).sha256
    forged = forge(chain["test"], tmp_path / "forged.safetensors",
                   tensor_edit=lambda t: t.__setitem__("r_cs", (t["r_cs"] * 0.5).astype(np.float32)))
    with pinned_reads():
        verify_file(path, [f"{key}.pub"])  # streamed through the hash: the content is pinned
        os.replace(forged, path)  # the swap on a shared folder
        for read in (lambda: read_artifact(path), lambda: read_file(path, 1 << 30)):
            with pytest.raises(LassiError, match="changed while this command was reading it") as error:
                read()
            assert error.value.exit_code == INTEGRITY
    with pinned_reads():  # a file read whole keeps its bytes: a second reader gets the first read
        first = read_file(path, 1 << 30)
        path.write_bytes(chain["test"].read_bytes())
        assert read_file(path, 1 << 30) == first != path.read_bytes()
    assert read_artifact(path).sha256 == genuine  # outside a command, the file is read anew


# --------------------------------------------------------------------------- binding and policy


@pytest.mark.slow
def test_spec_header_is_read_without_torch_and_hashes_the_file(chain: dict[str, Path]) -> None:
    code = (
        "import sys; from lassi.spec.contract.binding import read_spec_header; "
        f"m, h = read_spec_header({str(chain['spec'])!r}); "
        "print(h, m.epsilon, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    digest, epsilon, torch_loaded = out.stdout.split()
    assert digest == read_artifact(chain["spec"]).sha256
    assert float(epsilon) == read_artifact(chain["spec"]).meta.epsilon and torch_loaded == "False"


@pytest.mark.slow
def test_policy_is_enforced(chain: dict[str, Path]) -> None:
    spec, digest = read_spec_header(chain["spec"])
    bundle = read_artifact(chain["test"], expect=RepresentationBundle).meta
    check_binding(spec, digest, bundle, "b")  # the honest chain passes
    c = bundle.certificate
    for policy, fragment in (
        (CertificationPolicy(min_n=c.n + 1), "n = "),
        (CertificationPolicy(sigma_enc_min=c.sigma * 2), "sigma_enc"),
        (CertificationPolicy(sigma_enc_max=c.sigma / 2), "sigma_enc"),
        (CertificationPolicy(max_alpha=(c.alpha1 + c.alpha2) / 2), r"alpha1 \+ alpha2"),
    ):
        strict = spec.model_copy(update={"policy": policy})
        with pytest.raises(LassiError, match=fragment) as error:
            check_binding(strict, digest, bundle, "b")
        assert error.value.exit_code == INTEGRITY
    assert SimilaritySpec.model_validate_json(
        spec.model_copy(update={"policy": CertificationPolicy(min_n=5)}).model_dump_json()
    ).policy.min_n == 5


@pytest.mark.slow
def test_binding_checks_the_recorded_dimension_of_the_t_noise(chain: dict[str, Path]) -> None:
    spec, digest = read_spec_header(chain["spec"])
    bundle = read_artifact(chain["test"], expect=RepresentationBundle).meta
    assert bundle.certificate.m == len(spec.vector_names) == 49  # encode --certify records it
    for m in (1, 48, 50):
        other = bundle.model_copy(update={"certificate": bundle.certificate.model_copy(update={"m": m})})
        with pytest.raises(LassiError, match=f"t-noise in {m} dimensions") as error:
            check_binding(spec, digest, other, "b")
        assert error.value.exit_code == INTEGRITY


@pytest.mark.slow
def test_consumer_report_names_the_spec_or_the_producers_word(chain: dict[str, Path], tmp_path: Path) -> None:
    base = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n", "20",
            "--n0", "10", "--quiet"]
    digest = read_artifact(chain["spec"]).sha256
    bound = CliRunner().invoke(consumer, [*base, "--spec", str(chain["spec"]), "--out", str(tmp_path / "a.safetensors")])
    assert bound.exit_code == 0, bound.output
    assert f"bound to similarity spec sha256 {digest}" in bound.output
    loose = CliRunner().invoke(consumer, [*base, "--out", str(tmp_path / "b.safetensors")])
    assert loose.exit_code == 0 and "taken on the producer's word" in loose.output


@pytest.mark.slow
def test_report_records_what_the_certificates_cover(chain: dict[str, Path], tmp_path: Path) -> None:
    """The report file, not only the terminal, says which set the certificates speak for: the
    bound spec's hash, m and the regulator's coverage of real siblings, or the producer's word."""
    base = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n", "20",
            "--n0", "10", "--quiet"]
    spec = read_artifact(chain["spec"], expect=SimilaritySpec)
    assert spec.meta.coverage is not None  # define measured it (3D Shapes, orientation)
    bound = CliRunner().invoke(consumer, [*base, "--spec", str(chain["spec"]), "--out", str(tmp_path / "a.safetensors")])
    assert bound.exit_code == 0, bound.output
    scope = read_artifact(tmp_path / "a.safetensors", expect=VerificationReport).meta.scope
    assert scope is not None and scope.spec_sha256 == spec.sha256
    assert scope.m == len(spec.meta.vector_names) and scope.coverage == spec.meta.coverage
    assert scope.vectors == {a.name: a.vectors for a in spec.meta.attributes}
    text = (tmp_path / "a.md").read_text()
    assert "## What the certificates cover" in text and f"m = {scope.m} attribute vectors" in text
    assert f"leaves {spec.meta.coverage.latent_residual:.3f} of a real sibling's latent move" in text
    assert "coverage (the regulator's measurement" in bound.output
    assert json.loads((tmp_path / "a.json").read_text())["scope"]["spec_sha256"] == spec.sha256

    loose = CliRunner().invoke(consumer, [*base, "--out", str(tmp_path / "b.safetensors")])
    assert loose.exit_code == 0, loose.output
    scope = read_artifact(tmp_path / "b.safetensors", expect=VerificationReport).meta.scope
    assert scope is not None and scope.spec_sha256 is None and scope.coverage is None
    assert "taken on the producer's word" in (tmp_path / "b.md").read_text()


def test_scope_without_a_spec_cannot_claim_coverage() -> None:
    """m, vectors and coverage come from the regulator's spec; a report cannot state them unbound."""
    cov = Coverage(vectors="pairs", m=49, epsilon=1.0, latent_residual=0.9, latent_residual_span=0.8,
                   pixel_ratio=0.95, per_shape={}, on_boundary=0.5, n_images=4, n_siblings=40)
    with pytest.raises(ValidationError, match="need spec_sha256"):
        CertificateScope(attributes=["orientation"], epsilon=1.0, coverage=cov)
    with pytest.raises(ValidationError, match="need spec_sha256"):
        CertificateScope(attributes=["orientation"], epsilon=1.0, m=49)
    with pytest.raises(ValidationError, match="exactly the scope's attributes"):
        CertificateScope(spec_sha256="a" * 64, attributes=["orientation"], epsilon=1.0, vectors={"scale": "pairs"})


# --------------------------------------------------------------------------- the audit


@pytest.mark.slow
def test_audit_flags_a_center_far_from_the_replay(chain, base_function, tmp_path) -> None:
    bundle = read_artifact(chain["test"], expect=RepresentationBundle)
    certified = bundle.tensors["ids"][bundle.tensors["status"] == 0][:1]
    bad = forge(chain["test"], tmp_path / "far.safetensors",
                tensor_edit=lambda t: t.__setitem__("z_cs", (t["z_cs"] + 200).astype(np.float32)))
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(bad),
            "--ids", str(int(certified[0]))]
    result = CliRunner().invoke(regulator, args)
    assert result.exit_code == INTEGRITY and "center_mismatch" in result.output, result.output


@pytest.mark.slow
def test_auditing_nothing_is_an_error(chain, base_function) -> None:
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function),
            "--bundle", str(chain["test"]), "--ids", ","]
    one_line(CliRunner().invoke(regulator, args), USAGE, chain["test"].name, "no sample to audit", warnings=True)
