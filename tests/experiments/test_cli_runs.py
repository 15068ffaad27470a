"""lassi-experiments runs each experiment end to end at tiny sizes, writes its results file, and
reuses finished runs: a second invocation computes nothing and reports the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lassi.experiments.cli import main

pytestmark = pytest.mark.slow  # every test reads the session's chain


@pytest.mark.slow
def test_table2_writes_its_results_and_reuses_its_runs(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "experiments"
    args = ["table2", "--glow", str(chain["glow"]), "--out", str(out), "--seeds", "0",
            "--methods", "adversarial+contrastive", "--test", "2", "--epochs", "1",
            "--cert-n", "300", "--verify-n", "1000", "--protocol", "authors", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    results = out / "table2-authors" / "results-authors-epochs1-cert300-rs1000.json"
    first = json.loads(results.read_text())
    (row,) = first["rows"]["adversarial+contrastive"]
    assert row["n"] == 2 and 0 <= row["certified_but_ground_truth_unfair"] <= row["ground_truth_unfair"]
    assert "any_certified_but_unfair" in row and first["command"].startswith("lassi-experiments table2")
    run = out / "table2-authors" / "adversarial+contrastive-seed0-epochs1-cert300-rs1000"
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("*.safetensors")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in run.glob("*.safetensors")} == stamps
    assert json.loads(results.read_text())["rows"] == first["rows"]
