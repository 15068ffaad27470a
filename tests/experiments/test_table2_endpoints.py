"""Table 2's endpoints column (the authors' endpoints analysis beside the ground truth) and the
ablation's data-augmentation row: the figures count what they are named for, a tiny run reports
them consistently with the consumer's report, and the augmentation row trains its own encoder."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.experiments.cli import main
from lassi.experiments.ground_truth import endpoint_figures, summarise
from lassi.spec import ReportStatus, read_artifact


def test_a_certified_sample_whose_end_point_predicts_otherwise_is_counted() -> None:
    certified = np.array([True, True, False, True])
    fair = np.array([True, False, False, False])  # sample 1: certified, an end point disagrees
    unfair = np.array([False, True, True, False])  # the siblings: samples 1 and 2 unfair
    figures = endpoint_figures(certified, fair, unfair)
    assert figures["endpoints_empirically_unfair"] == 0.75
    assert figures["endpoints_certified_but_empirically_unfair"] == 0.5  # samples 1 and 3
    assert figures["certified_ground_truth_unfair_found_by_endpoints"] == 0.25  # sample 1
    assert figures["endpoints_flag_ground_truth_fair"] == 0.25  # sample 3


def test_the_endpoints_classes_figure_sets_abstentions_aside() -> None:
    """Two samples flagged: one because an end point abstained, one because an end point got
    another class; only the second differs by two classes."""
    center = np.array([1, 1, 2])
    ends = np.array([[1, ABSTAIN], [1, 3], [2, 2]])
    fair = np.array([False, False, True])
    figures = endpoint_figures(np.array([True, True, True]), fair, None, center, ends)
    assert figures["endpoints_certified_but_empirically_unfair"] == pytest.approx(2 / 3)
    assert figures["endpoints_unfair_classes"] == pytest.approx(1 / 3)
    assert figures["endpoint_abstain"] == pytest.approx(1 / 6)
    assert "certified_ground_truth_unfair_found_by_endpoints" not in figures  # no ground truth


def test_summarise_sets_the_endpoints_beside_the_ground_truth() -> None:
    factors = np.zeros((2, 15, 6), dtype=np.int64)
    predictions = np.zeros((2, 15), dtype=np.int64)
    predictions[1, 3] = 4  # sample 1's siblings disagree
    certified = np.array([True, True])
    without = summarise(predictions, certified, factors)
    assert not any(key.startswith("endpoints") for key in without)
    out = summarise(predictions, certified, factors, empirically_fair=np.array([True, False]))
    assert out["certified_but_ground_truth_unfair"] == 0.5
    assert out["endpoints_certified_but_empirically_unfair"] == 0.5
    assert out["certified_ground_truth_unfair_found_by_endpoints"] == 0.5
    assert out["endpoints_flag_ground_truth_fair"] == 0.0


@pytest.mark.slow
def test_table2_endpoints_column_agrees_with_the_consumers_report(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "experiments"
    args = ["table2", "--glow", str(chain["glow"]), "--out", str(out), "--seeds", "0",
            "--methods", "adversarial+contrastive", "--test", "3", "--epochs", "1",
            "--cert-n", "300", "--verify-n", "1000", "--protocol", "strength0.9", "--threads", "1",
            "--endpoints"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "table2" / "results-epochs1-cert300-rs1000-endpoints.json").read_text())
    (row,) = results["rows"]["adversarial+contrastive"]
    report = read_artifact(Path(row["report"]))
    check = report.meta.endpoint_check
    n = report.meta.n_samples
    assert check is not None and check.endpoints == 2  # the two ends of the one halves vector
    assert row["endpoints_certified_but_empirically_unfair"] == check.certified_empirically_unfair / n
    # recomputed from the report's predictions: a certified sample whose center or any end
    # point predicts otherwise (or abstains) is counted, and no other
    t = report.tensors
    certified = t["status"] == ReportStatus.CERTIFIED
    differs = (t["prediction"] == ABSTAIN) | (t["endpoint_prediction"] != t["prediction"][:, None]).any(1)
    assert row["endpoints_certified_but_empirically_unfair"] == float((certified & differs).mean())
    assert row["endpoints_empirically_unfair"] == float(differs.mean())
    assert row["endpoints_unfair_classes"] <= row["endpoints_empirically_unfair"]
    assert row["certified_ground_truth_unfair_found_by_endpoints"] <= min(
        row["certified_but_ground_truth_unfair"], row["endpoints_certified_but_empirically_unfair"]
    )
    assert "endpoints: certified but empirically unfair %" in results["markdown"]
    test = Path(row["report"]).parent / "test.safetensors"
    assert read_artifact(test).meta.endpoints == 2


@pytest.mark.slow
def test_the_ablations_augmentation_row_trains_its_own_encoder(
    chain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The baseline and the augmentation rows share their loss weights (task loss only): the
    augmentation row must train with --augment (the encoder card says so), never reuse the
    baseline's encoder. A rerun reuses every file; one whose verify settings differ (not in
    any folder name) is refused naming a report, and modifies nothing."""
    settings = resources.files("lassi.experiments").joinpath("settings.toml").read_text()
    settings = settings.replace("sigmas = [0.25, 0.5, 1.0, 2.5, 5.0, 10.0]", "sigmas = [1.0]")
    settings = settings.replace("hidden = [1024, 512]", "hidden = [32]").replace("k = 256", "k = 8")
    assert "sigmas = [1.0]" in settings and "hidden = [32]" in settings
    (tmp_path / "settings.toml").write_text(settings)
    out = tmp_path / "experiments"
    args = ["--settings", str(tmp_path / "settings.toml"), "ablation", "--glow", str(chain["glow"]),
            "--out", str(out), "--sensitive", "orientation", "--methods", "baseline", "augmentation",
            "--test", "2", "--epochs", "1", "--cert-n", "300", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    folder = next(out.glob("ablation*"))
    results = json.loads((folder / "results-orientation-baseline-augmentation.json").read_text())
    assert [row["method"] for row in results["rows"]] == ["baseline", "augmentation"]
    baseline = read_artifact(folder / "orientation-baseline" / "encoder.safetensors")
    augmented = read_artifact(folder / "orientation-augmentation" / "encoder.safetensors")
    assert baseline.meta.training.augment == 0
    assert augmented.meta.training.augment == 10 and augmented.sha256 != baseline.sha256
    assert augmented.meta.loss.adv == 0 and augmented.meta.loss.contr == 0

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    other = tmp_path / "other.toml"
    other.write_text(settings.replace("[randomized_smoothing]\n", "[randomized_smoothing]\nalpha = 0.01\n"))
    capsys.readouterr()
    assert main(["--settings", str(other), *args[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "/report-" in err[-1], err[-1]
    assert "randomized smoothing alpha 0.001, this run asks for 0.01" in err[-1]
    assert main(args) == 0  # unchanged: every run reused
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
