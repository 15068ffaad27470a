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


def test_transfer_writes_its_results_and_reuses_its_runs(
    chain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The transfer experiment (its producer is no method row) at tiny settings; the rerun
    reuses every file, and settings asking the producer's bundles for another task are refused
    (the train bundle named with its labels), nothing modified."""
    from lassi.experiments import settings as settings_module

    packaged = (Path(settings_module.__file__).parent / "settings.toml").read_text()
    small = {"hidden = [1024, 512]": "hidden = [32]", "\nk = 256": "\nk = 8", "epochs = 4 ": "epochs = 1 ",
             "[center_smoothing]\n": "[center_smoothing]\nn0 = 300\nn = 300\n",
             "[randomized_smoothing]\n": "[randomized_smoothing]\nn0 = 100\nn = 1000\n",
             'tasks = ["object_hue", "shape", "floor_hue"]': 'tasks = ["object_hue", "shape"]',
             "sigmas = [0.5, 1.0]": "sigmas = [1.0]"}  # fmt: skip
    for old, new in small.items():
        assert packaged.count(old) == 1, old
        packaged = packaged.replace(old, new)
    settings = tmp_path / "settings.toml"
    settings.write_text(packaged)
    out = tmp_path / "experiments"
    args = ["--settings", str(settings), "transfer", "--glow", str(chain["glow"]), "--out", str(out),
            "--test", "2", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    (results,) = (out / "transfer").glob("results-*.json")
    first = json.loads(results.read_text())
    assert [(r["task"], r["sigma"], r["n"]) for r in first["rows"]] == [("object_hue", 1.0, 2), ("shape", 1.0, 2)]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    assert json.loads(results.read_text())["rows"] == first["rows"]

    capsys.readouterr()
    settings.write_text(packaged.replace('tasks = ["object_hue", "shape"]', 'tasks = ["object_hue", "floor_hue"]'))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "/train.safetensors: was made with labels ['object_hue', 'shape'], this run asks for" in err[-1], err[-1]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
