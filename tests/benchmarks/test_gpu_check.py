"""The device check (benchmarks/gpu_check.sh and its driver benchmarks/gpu_check.py).

The dry mode runs every step's plumbing on the CPU at tiny sizes and must write a raw JSON of the
steps and a results table in the generic format whose every figure reads "not run: no GPU". The
table's GPU path is checked on a hand-made report shaped like a GPU run's (format only).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from factories import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_table(table: dict) -> None:
    assert set(table) == {"title", "order", "intro", "columns", "rows", "provenance", "notes"}
    assert isinstance(table["order"], int) and 10 <= table["order"] <= 90
    assert set(table["provenance"]) == {"command", "commit", "results_file", "hardware"}
    assert all(len(row) == len(table["columns"]) for row in table["rows"])
    assert all(isinstance(note, str) for note in table["notes"])
    json.dumps(table)


@pytest.mark.slow  # three subprocesses that each import torch
def test_dry_run_writes_both_files_without_figures(tmp_path: Path) -> None:
    gpu_check = _driver()
    out, results = tmp_path / "raw.json", tmp_path / "table.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--results", str(results)])

    raw = json.loads(out.read_text())
    assert raw["dry_run"] is True
    assert "CUDA is absent" in raw["note"] or "--dry-run given" in raw["note"]
    steps = {s["step"]: s for s in raw["steps"]}
    assert list(steps) == ["pytest_gpu", "image_path", "latent_path", "glow_train"]
    assert steps["pytest_gpu"]["status"].startswith("skipped")
    for name in ("image_path", "latent_path", "glow_train"):
        assert steps[name]["status"] == "ok", steps[name].get("output_tail")
    image = steps["image_path"]["result"]
    assert image["device"] == "cpu" and image["sizes"][0]["size"] == "tiny"
    assert not image["sizes"][0]["certify"]["abstained"]
    assert steps["latent_path"]["result"]["certified"] == 1
    assert steps["glow_train"]["result"]["images_per_s"] > 0

    table = json.loads(results.read_text())
    _check_table(table)
    measured = [row[1] for row in table["rows"]]
    assert measured and all(value == gpu_check.NOT_RUN for value in measured)
    assert not any(isinstance(v, (int, float)) for row in table["rows"] for v in row[1:2])
    assert any("No GPU" in note for note in table["notes"])


def test_table_of_a_gpu_run_reads_each_step() -> None:
    gpu_check = _driver()
    variant = {"name": "baseline", "decode_s": 0.002, "encoder_s": 0.0005, "decode_gflops": 1.0e4,
               "per_image_s": 0.0025}  # fmt: skip
    tf32 = {**variant, "name": "tf32 (not float32)", "per_image_s": 0.001}
    sizes = [
        {"size": size, "variants": [variant, tf32], "certify": {"seconds": seconds}}
        for size, seconds in (("demo", 0.5), ("paper", 30.0))
    ]
    report = {
        "dry_run": False,
        "environment": {"gpu": "GPU X", "torch": "2.x", "cpu_count": 16, "commit": "abc"},
        "steps": [
            {"step": "pytest_gpu", "status": "ok", "summary": {"tests": 7, "failures": 1, "errors": 0, "skipped": 0}},
            {"step": "image_path", "status": "ok", "result": {"sizes": sizes, "matmul_peak_gflops": 5.0e4}},
            {"step": "latent_path", "status": "timeout after 60 s"},
            {"step": "glow_train", "status": "ok", "result": {"images_per_s": 321.0}},
        ],
    }  # fmt: skip
    table = gpu_check.results_table(report, "cmd", "raw.json")
    _check_table(table)
    measured = {row[0]: row[1] for row in table["rows"]}
    assert measured["pytest -m gpu (tests/spec/test_device.py)"] == "6 passed, 1 failed, 0 skipped"
    assert measured["image path, paper size: s per certified sample, n0 = 5000, n = 2000 (float32)"] == 30.0
    assert measured["image path, paper size: decode ms / image (float32)"] == 2.0
    assert measured["image path, paper size: ms / image with TF32 (not the certified float32 function)"] == 1.0
    assert measured["latent path: s per certified sample, n0 = n = 10⁴"] == "timeout after 60 s"
    assert measured["Glow training, paper size, batch 64: images / s"] == 321.0
    assert table["provenance"]["hardware"].startswith("GPU X")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_script_syntax_and_usage() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr.lower()
