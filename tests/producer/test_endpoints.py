"""The authors' endpoints analysis: ``lassi-producer encode --certify --endpoints`` center-smooths
each segment end z_G ± ε·a_i, ``lassi-consumer verify`` predicts there and reports certified
samples that are empirically unfair; known answers by construction and by tampering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import DATA, run
from lassi.consumer.cli import main as consumer
from lassi.consumer.endpoints import empirically_fair, endpoint_check
from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.producer.base_function import load_encoder
from lassi.producer.cli import main as producer
from lassi.producer.endpoints import endpoint_latents, endpoint_seed
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import (
    EXIT_CODES,
    RepresentationBundle,
    VerificationReport,
    read_artifact,
    write_artifact,
)
from lassi.spec.contract.models import CenterStatus, ReportStatus
from lassi.spec.runtime.center_smoothing import CenterSmoothing

CERTIFY = ["--certify", "--n0", "1500", "--n", "2000", "--delta", "0.1", "--quiet"]
VERIFY = ["--n0", "100", "--n", "2000", "--quiet"]


def test_endpoint_latents_are_the_segment_ends_in_order() -> None:
    z = torch.arange(4.0)
    vectors = torch.tensor([[1.0, 0, 0, 0], [0, 0, 2.0, 0]])
    ends = endpoint_latents(z, vectors, 0.5)
    expected = [[-0.5, 1, 2, 3], [0.5, 1, 2, 3], [0, 1, 1, 3], [0, 1, 3, 3]]
    torch.testing.assert_close(ends, torch.tensor(expected))


def test_empirical_fairness_and_the_counts() -> None:
    assert empirically_fair(1, np.array([1, 1, 1, 1]))
    assert not empirically_fair(1, np.array([1, 0, 1, 1]))
    assert not empirically_fair(1, np.array([1, ABSTAIN]))  # an abstained end is another answer
    assert not empirically_fair(ABSTAIN, np.array([ABSTAIN, ABSTAIN]))
    status = np.array([ReportStatus.CERTIFIED, ReportStatus.CERTIFIED, ReportStatus.NOT_CERTIFIED])
    check = endpoint_check(status, np.array([1, 0, 0], np.uint8), 4)
    assert (check.empirically_fair, check.certified_empirically_unfair) == (1, 1)


@pytest.fixture(scope="module")
def ends(chain, tmp_path_factory) -> dict[str, Path]:
    """The chain's first test sample, certified with end points (49 vectors: 98 ends)."""
    d = tmp_path_factory.mktemp("endpoints")
    bundle, report = d / "ends.safetensors", d / "report.safetensors"
    run(producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
                   "--split", "test", "--limit", "1", *CERTIFY, "--endpoints", "--out", str(bundle)])  # fmt: skip
    run(consumer, ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(bundle), *VERIFY,
                   "--out", str(report)])  # fmt: skip
    return {"bundle": bundle, "report": report, "dir": d}


@pytest.mark.slow
def test_encode_endpoints_center_smooths_each_segment_end(chain, ends) -> None:
    bundle = read_artifact(ends["bundle"], expect=RepresentationBundle)
    sim = SimilaritySet.load(chain["spec"])
    assert bundle.meta.endpoints == 2 * sim.m == 98
    z_cs, status = bundle.tensors["endpoint_z_cs"], bundle.tensors["endpoint_status"]
    assert z_cs.shape == (1, 98, bundle.meta.k) and status.shape == (1, 98)
    # the centers at the ends equal center smoothing run directly at z_G -/+ eps a_i
    base, _, _ = load_encoder(chain["encoder"], sim)
    sample_id = int(bundle.tensors["ids"][0])
    z_g = sim.encode_images(sim_images(sim, chain, sample_id))[0]
    params = bundle.meta.certificate
    for j, (i, sign) in ((0, (0, -1)), (97, (48, 1))):
        z_end = z_g + sign * sim.epsilon * sim.vectors[i]
        cert = CenterSmoothing(base.for_latent(z_end), sim.m, params).certify(
            endpoint_seed(bundle.meta.certificate.seed, sample_id, j), sample_id
        )
        np.testing.assert_allclose(z_cs[0, j], cert.center, rtol=1e-5, atol=1e-6)
        assert status[0, j] == cert.status
    # the center's own certificate is the plain encode's (its streams are untouched; the Glow
    # latents of a batch of 6 and of 1 image differ in the last float bits)
    plain = read_artifact(chain["test"], expect=RepresentationBundle)
    np.testing.assert_allclose(bundle.tensors["z_cs"], plain.tensors["z_cs"][:1], atol=1e-5)


def sim_images(sim, chain, sample_id: int) -> np.ndarray:
    """The chain's image ``sample_id`` (DATA: rendered 3D Shapes, 16 x 16, correlated split)."""
    from lassi.regulator.data_config import DatasetConfig, make_source

    data = DatasetConfig(image_size=16, n_train=400, n_val=100, n_test=100,
                         correlate="orientation:object_hue:0.9")  # fmt: skip
    return make_source(data).images(np.array([sample_id]))


@pytest.mark.slow
def test_verify_reports_empirical_fairness_at_the_ends(ends) -> None:
    report = read_artifact(ends["report"], expect=VerificationReport)
    check = report.meta.endpoint_check
    assert check is not None and check.endpoints == 98
    fair = report.tensors["empirically_fair"].astype(bool)
    preds, center = report.tensors["endpoint_prediction"], report.tensors["prediction"]
    for i in range(len(fair)):
        assert fair[i] == (center[i] != ABSTAIN and (preds[i] == center[i]).all())
    certified = report.tensors["status"] == ReportStatus.CERTIFIED
    assert check.certified_empirically_unfair == int((certified & ~fair).sum())
    assert "empirically unfair" in Path(str(ends["report"]).replace(".safetensors", ".md")).read_text()


def confident_point(chain, cls: int) -> np.ndarray:
    """A representation the chain's classifier puts in class ``cls`` far beyond its noise."""
    from lassi.consumer.classifier import load_classifier

    model, _ = load_classifier(chain["classifier"])
    z = torch.zeros(1, model_k(model), requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=0.5)
    for _ in range(200):  # maximise the class margin within a ball of radius 50
        logits = model(z)
        margin = logits[0, cls] - torch.cat([logits[0, :cls], logits[0, cls + 1 :]]).max()
        optimizer.zero_grad()
        (-margin).backward()
        optimizer.step()
        with torch.no_grad():
            z.mul_(min(1.0, 50.0 / float(z.norm())))
    return z.detach()[0].numpy().astype(np.float32)


def model_k(model) -> int:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).in_features


@pytest.fixture(scope="module")
def confident(chain, ends) -> dict:
    """The ends bundle with its sample moved to a confidently classified center (r_CS 1e-3,
    certified), every end point at that center as well: certified and empirically fair."""
    bundle = read_artifact(ends["bundle"], expect=RepresentationBundle)
    a, b = confident_point(chain, 0), confident_point(chain, 1)
    tensors = {k: np.array(v) for k, v in bundle.tensors.items()}
    tensors["z_cs"][0], tensors["r_cs"][0] = a, 1e-3
    tensors["status"][0] = CenterStatus.CERTIFIED
    tensors["endpoint_z_cs"][0] = a[None]
    tensors["endpoint_status"][0] = CenterStatus.CERTIFIED
    return {"meta": bundle.meta, "tensors": tensors, "other": b}


def verify_variant(chain, ends, confident, name: str, change=None):
    tensors = {k: v.copy() for k, v in confident["tensors"].items()}
    if change is not None:
        change(tensors)
    bundle = ends["dir"] / f"{name}.safetensors"
    write_artifact(bundle, confident["meta"], tensors)
    report = ends["dir"] / f"{name}.report.safetensors"
    output = run(consumer, ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(bundle),
                            *VERIFY, "--out", str(report)])  # fmt: skip
    return read_artifact(report, expect=VerificationReport), output


@pytest.mark.slow
def test_ends_at_the_center_itself_are_empirically_fair(chain, ends, confident) -> None:
    report, _ = verify_variant(chain, ends, confident, "same")
    assert report.tensors["status"][0] == ReportStatus.CERTIFIED
    assert report.tensors["prediction"][0] == 0
    assert report.tensors["empirically_fair"][0] and (report.tensors["endpoint_prediction"][0] == 0).all()
    assert report.meta.endpoint_check.certified_empirically_unfair == 0


@pytest.mark.slow
def test_an_end_of_another_class_is_certified_but_empirically_unfair(chain, ends, confident) -> None:
    def move(t):
        t["endpoint_z_cs"][0, 7] = confident["other"]

    report, output = verify_variant(chain, ends, confident, "other", move)
    assert report.tensors["status"][0] == ReportStatus.CERTIFIED  # still certified ...
    assert not report.tensors["empirically_fair"][0]  # ... and empirically unfair
    assert report.tensors["endpoint_prediction"][0, 7] == 1
    assert report.meta.endpoint_check.certified_empirically_unfair == 1
    assert "1 of 1 certified samples are empirically unfair" in output


@pytest.mark.slow
def test_an_abstaining_end_point_is_another_answer(chain, ends, confident) -> None:
    def abstain(t):
        t["endpoint_status"][0, 5] = CenterStatus.ABSTAIN_DELTA

    report, _ = verify_variant(chain, ends, confident, "abstain", abstain)
    assert report.tensors["endpoint_prediction"][0, 5] == ABSTAIN
    assert report.meta.endpoint_check.certified_empirically_unfair == 1


@pytest.mark.slow
def test_encode_endpoints_needs_certify(chain, tmp_path: Path) -> None:
    out = tmp_path / "b.safetensors"
    result = CliRunner().invoke(
        producer, ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
                   "--split", "test", "--limit", "2", "--endpoints", "--quiet", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == EXIT_CODES["usage"] and "--certify" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_a_bundle_with_unknown_end_point_codes_is_refused(chain, ends, confident) -> None:
    tensors = {k: v.copy() for k, v in confident["tensors"].items()}
    tensors["endpoint_status"][0, 0] = 200
    bundle = ends["dir"] / "corrupt.safetensors"
    with pytest.raises(Exception, match="endpoint_status"):
        write_artifact(bundle, confident["meta"], tensors)
    with pytest.raises(ValueError, match="pairs"):
        RepresentationBundle.model_validate({**confident["meta"].model_dump(), "endpoints": 97})
