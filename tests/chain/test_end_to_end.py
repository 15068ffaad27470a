"""The three CLIs in sequence through files, at tiny sizes: the chain and its provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import DATA, run
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import (
    EXIT_CODES,
    ClassifierCard,
    EncoderCard,
    GlowArtifact,
    ReportStatus,
    RepresentationBundle,
    SimilaritySpec,
    VerificationReport,
    read_artifact,
    sha256_file,
)


@pytest.mark.slow
def test_report_fields_and_decision_rule(chain: dict[str, Path]) -> None:
    report = read_artifact(chain["report"], expect=VerificationReport)
    meta, t = report.meta, report.tensors
    assert meta.n_samples == 6 and meta.task == "object_hue" and meta.has_labels
    status = t["status"]
    certified = status == ReportStatus.CERTIFIED
    np.testing.assert_array_equal(
        certified,
        (t["prediction"] >= 0)
        & (t["r_cs"] < t["radius"])
        & (status != ReportStatus.ABSTAIN_CENTER),
    )
    assert meta.summary.certified_fairness == pytest.approx(certified.mean())
    correct = (t["prediction"] == t["labels"]) & (t["prediction"] >= 0)
    assert meta.summary.accuracy == pytest.approx(correct.mean())
    side = json.loads(chain["report"].with_suffix(".json").read_text())
    assert len(side["samples"]) == 6 and {
        "id",
        "label",
        "prediction",
        "R",
        "r_cs",
        "status",
    } <= set(side["samples"][0])
    assert chain["report"].with_suffix(".png").stat().st_size > 1000
    assert "certified fairness" in chain["report"].with_suffix(".md").read_text()


@pytest.mark.slow
def test_provenance_chain_traces_back_to_the_spec(chain: dict[str, Path]) -> None:
    h = {name: sha256_file(path) for name, path in chain.items()}
    spec = read_artifact(chain["spec"], expect=SimilaritySpec, parents={"glow": chain["glow"]})
    assert spec.meta.attribute_names == ["orientation"]
    read_artifact(chain["glow"], expect=GlowArtifact)
    read_artifact(chain["encoder"], expect=EncoderCard, parents={"similarity_spec": chain["spec"]})
    bundle = read_artifact(
        chain["test"],
        expect=RepresentationBundle,
        parents={"encoder": chain["encoder"], "similarity_spec": chain["spec"]},
    )
    assert bundle.meta.certified and bundle.meta.certificate.n0 == 1500
    read_artifact(
        chain["classifier"],
        expect=ClassifierCard,
        parents={
            "representations": chain["train"],
            "encoder": h["encoder"],
            "similarity_spec": h["spec"],
        },
    )
    report = read_artifact(chain["report"], expect=VerificationReport)
    assert report.meta.parents == {
        "classifier": h["classifier"],
        "representations": h["test"],
        "encoder": h["encoder"],
        "similarity_spec": h["spec"],
    }


@pytest.mark.slow
def test_verify_refuses_mismatched_inputs(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    plain = CliRunner().invoke(
        consumer,
        [
            "verify",
            "--classifier",
            str(chain["classifier"]),
            "--bundle",
            str(chain["train"]),
            "--out",
            str(out),
        ],
    )
    assert (
        plain.exit_code == EXIT_CODES["usage"]
        and "plain bundle" in plain.output
        and not out.exists()
    )
    other = tmp_path / "other_encoder.safetensors"
    run(
        producer,
        [
            "train",
            "--spec",
            str(chain["spec"]),
            *DATA,
            "--task",
            "object_hue",
            "--hidden",
            "32",
            "--k",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "128",
            "--lambda-adv",
            "0",
            "--max-train",
            "128",
            "--seed",
            "1",
            "--quiet",
            "--out",
            str(other),
        ],
    )
    bundle = tmp_path / "other_bundle.safetensors"
    run(
        producer,
        [
            "encode",
            "--spec",
            str(chain["spec"]),
            "--encoder",
            str(other),
            *DATA,
            "--limit",
            "2",
            "--certify",
            "--n0",
            "1500",
            "--n",
            "1500",
            "--quiet",
            "--out",
            str(bundle),
        ],
    )
    result = CliRunner().invoke(
        consumer,
        [
            "verify",
            "--classifier",
            str(chain["classifier"]),
            "--bundle",
            str(bundle),
            "--out",
            str(out),
        ],
    )
    assert (
        result.exit_code == EXIT_CODES["integrity"]
        and "encoder" in result.output
        and not out.exists()
    )


@pytest.mark.slow
def test_export_and_audit_confirms_honest_and_flags_shrunk_claims(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    from factories import write_raw

    onnx_dir = tmp_path / "onnx"
    export = ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"])]
    out = run(producer, [*export, "--out-dir", str(onnx_dir)])
    assert "pipeline.onnx" in out and "base_function.onnx" in out
    bundle = read_artifact(chain["test"], expect=RepresentationBundle)
    certified = bundle.tensors["ids"][bundle.tensors["status"] == 0][:3]
    assert len(certified) == 3, "the chain should certify at least 3 of its 6 test samples"
    audit = [
        "audit",
        "--spec",
        str(chain["spec"]),
        "--base-function",
        str(onnx_dir / "base_function.onnx"),
    ]
    ids = ["--ids", ",".join(str(i) for i in certified)]
    honest = CliRunner().invoke(regulator, [*audit, "--bundle", str(chain["test"]), *ids, "--json"])
    assert honest.exit_code == 0, honest.output
    rows = json.loads(honest.output[: honest.output.rindex("]") + 1])
    assert [r["verdict"] for r in rows] == ["confirmed"] * 3
    # statuses by name in the JSON, not the stored enum codes
    assert {(r["claimed_status"], r["replayed_status"]) for r in rows} == {("certified", "certified")}
    shrunk = dict(bundle.tensors, r_cs=(bundle.tensors["r_cs"] * 0.9).astype(np.float32))
    forged = tmp_path / "forged.safetensors"
    write_raw(forged, bundle.meta.model_dump_json(), shrunk)
    flagged = CliRunner().invoke(regulator, [*audit, "--bundle", str(forged), *ids])
    assert flagged.exit_code == EXIT_CODES["integrity"]
    assert flagged.output.count("| understated |") == 3 and "not confirmed" in flagged.output


def test_report_side_files_keep_dotted_names_apart(tmp_path: Path) -> None:
    from lassi.consumer.report import report_sidecars

    a = report_sidecars(tmp_path / "report-sigma0.5.safetensors")
    b = report_sidecars(tmp_path / "report-sigma0.25.safetensors")
    assert a["json"].name == "report-sigma0.5.json" and a["png"].name == "report-sigma0.5.png"
    assert set(a.values()).isdisjoint(b.values())
    assert report_sidecars(tmp_path / "report.st")["md"] == tmp_path / "report.md"


@pytest.mark.slow
def test_attack_region_cube_is_recorded_and_the_old_default_is_the_ball(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    """producer train --attack-region cube trains and records the region in the encoder card;
    encoders written before the option existed (no field) read as the ball."""
    from lassi.spec import EncoderCard

    assert read_artifact(chain["encoder"], expect=EncoderCard).meta.loss.attack_region == "ball"
    out = tmp_path / "cube.safetensors"
    run(producer, ["train", "--spec", str(chain["spec"]), *DATA, "--task", "object_hue",
                   "--hidden", "32", "--k", "8", "--epochs", "1", "--batch-size", "64",
                   "--attack-points", "4", "--attack-region", "cube", "--quiet",
                   "--out", str(out)])  # fmt: skip
    assert read_artifact(out, expect=EncoderCard).meta.loss.attack_region == "cube"
    from lassi.spec.contract.models import LossWeights

    assert LossWeights.model_validate({"adv": 0.1}).attack_region == "ball"
    with pytest.raises(ValueError):
        LossWeights.model_validate({"attack_region": "sphere"})
