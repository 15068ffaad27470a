"""The device check (benchmarks/gpu_check.sh and its driver benchmarks/gpu_check.py).

The dry mode runs every step's plumbing on the CPU at tiny sizes and must write a raw JSON of the
steps and a results table in the generic format whose every figure reads "not run: no GPU". A
real run's raw JSON (the dry run's, relabelled as a GPU run's, so every step's result has the
shape the steps really write) must turn into a table of figures through ``--from-raw``, which the
results page generator renders; the committed table is the dry mode's.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import ROOT
from lassi.experiments.report import load_table, render_table

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
DRIVER = ROOT / "benchmarks" / "gpu_check.py"
COMMITTED = ROOT / "docs" / "results" / "gpu_check.json"


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_table(table: dict, path: Path) -> None:
    assert set(table) == {"title", "order", "intro", "columns", "rows", "provenance", "notes"}
    assert isinstance(table["order"], int) and 10 <= table["order"] <= 90
    assert set(table["provenance"]) == {"command", "commit", "results_file", "hardware"}
    assert all(len(row) == len(table["columns"]) for row in table["rows"])
    assert all(isinstance(note, str) for note in table["notes"])
    path.write_text(json.dumps(table))
    render_table(load_table(path))  # what `lassi-experiments report` accepts


def _as_gpu_run(raw: dict) -> dict:
    """A dry run's raw report relabelled as a GPU run's: the demo and paper sizes are the tiny
    size's entry, a TF32 variant a copy of the baseline, pytest a junit summary."""
    gpu = copy.deepcopy(raw)
    gpu["dry_run"] = False
    del gpu["note"]
    gpu["environment"].update(cuda_available=True, gpu="GPU X", gpu_count=1, cuda="13.0")
    steps = {s["step"]: s for s in gpu["steps"]}
    steps["pytest_gpu"].update(status="ok", returncode=0, seconds=90.0,
                               summary={"tests": 8, "failures": 0, "errors": 0, "skipped": 0})  # fmt: skip
    image = steps["image_path"]["result"]
    tiny = image["sizes"][0]
    tiny["variants"].append({**tiny["variants"][0], "name": "tf32 (not float32)", "tf32": True})
    image["sizes"] = [{**copy.deepcopy(tiny), "size": size} for size in ("demo", "paper")]
    return gpu


@pytest.mark.slow  # four subprocesses that each import torch
def test_dry_run_writes_both_files_and_a_gpu_run_fills_the_table(tmp_path: Path) -> None:
    gpu_check = _driver()
    out, results = tmp_path / "raw.json", tmp_path / "table.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--results", str(results)])

    raw = json.loads(out.read_text())
    assert raw["dry_run"] is True
    assert "CUDA is absent" in raw["note"] or "--dry-run given" in raw["note"]
    steps = {s["step"]: s for s in raw["steps"]}
    assert list(steps) == list(gpu_check.STEPS)
    assert steps["pytest_gpu"]["status"].startswith("skipped")
    for name in ("image_path", "latent_path", "glow_train"):
        assert steps[name]["status"] == "ok", steps[name].get("output_tail")
    image = steps["image_path"]["result"]
    assert image["device"] == "cpu" and image["sizes"][0]["size"] == "tiny"
    assert not image["sizes"][0]["certify"]["abstained"]
    assert steps["latent_path"]["result"]["certified"] == 1
    assert steps["glow_train"]["result"]["images_per_s"] > 0

    table = json.loads(results.read_text())
    _check_table(table, tmp_path / "check.json")
    assert all(row[1] == gpu_check.NOT_RUN for row in table["rows"])
    assert any("No GPU" in note for note in table["notes"])
    committed = json.loads(COMMITTED.read_text())
    assert {k: v for k, v in table.items() if k != "provenance"} == {
        k: v for k, v in committed.items() if k != "provenance"
    }

    # --from-raw on a GPU run's report: every "not run: no GPU" cell becomes a figure
    gpu_raw, gpu_table = tmp_path / "gpu-raw.json", tmp_path / "gpu-table.json"
    gpu_raw.write_text(json.dumps(_as_gpu_run(raw)))
    gpu_check.main(["--from-raw", str(gpu_raw), "--results", str(gpu_table)])
    table = json.loads(gpu_table.read_text())
    _check_table(table, tmp_path / "check.json")
    measured = {row[0]: row[1] for row in table["rows"]}
    assert gpu_check.NOT_RUN not in measured.values()
    assert measured["pytest -m gpu (tests/spec/test_device.py)"] == "8 passed, 0 failed, 0 skipped"
    figures = [v for k, v in measured.items() if not k.startswith(("pytest", "image path, paper size: decode GFLOP/s"))]
    assert all(isinstance(v, float) and v > 0 for v in figures), measured
    assert measured["image path, paper size: decode GFLOP/s (float32) / matmul peak GFLOP/s"].count(" / ") == 1
    assert table["provenance"]["hardware"].startswith("GPU X")
    assert not any("No GPU" in note for note in table["notes"])


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
            {"step": "latent_path", "status": "timeout after 40 s"},
        ],
    }  # fmt: skip
    table = gpu_check.results_table(report, "cmd", "raw.json")
    measured = {row[0]: row[1] for row in table["rows"]}
    assert measured["pytest -m gpu (tests/spec/test_device.py)"] == "6 passed, 1 failed, 0 skipped"
    assert measured["image path, paper size: s per certified sample, n0 = 5000, n = 2000 (float32)"] == 30.0
    assert measured["image path, paper size: decode ms / image (float32)"] == 2.0
    assert measured["image path, paper size: ms / image with TF32 (not the certified float32 function)"] == 1.0
    assert measured["latent path: s per certified sample, n0 = n = 10⁴"] == "timeout after 40 s"
    # a run stopped before its last step: the cell says so, and a note names the step
    assert measured["Glow training, paper size, batch 64: images / s"] == "not run"
    assert any("stopped before these steps ran: glow_train" in note for note in table["notes"])
    assert table["provenance"]["hardware"].startswith("GPU X")
    assert table["provenance"]["commit"] == "abc"
    report["environment"]["commit"] = ""  # a device machine's copy has no git repository
    assert gpu_check.results_table(report, "cmd", "raw.json")["provenance"]["commit"]


def test_from_raw_refuses_what_is_not_a_raw_report(tmp_path: Path) -> None:
    results = tmp_path / "table.json"
    for content, expected in [
        ("{", "not a readable JSON file"),
        ("[]", "a JSON object expected"),
        ('{"dry_run": false, "environment": {}, "steps": [{"step": "x", "status": "ok"}]}', "unknown steps"),
        ('{"dry_run": false, "environment": {}, "steps": [{"step": "image_path"}]}', "'step' and 'status'"),
        ('{"dry_run": "no", "environment": {}, "steps": []}', "boolean 'dry_run'"),
    ]:  # fmt: skip
        raw = tmp_path / "raw.json"
        raw.write_text(content)
        done = subprocess.run(
            [sys.executable, str(DRIVER), "--from-raw", str(raw), "--results", str(results)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and str(raw) in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert not results.exists()

    # a GPU run stopped before its first step, brought back from a copy of the tree without git
    raw.write_text('{"dry_run": false, "environment": {"commit": ""}, "steps": []}')
    done = subprocess.run(
        [sys.executable, str(DRIVER), "--from-raw", str(raw), "--results", str(results)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = json.loads(results.read_text())
    _check_table(table, tmp_path / "check.json")
    assert {row[1] for row in table["rows"]} == {"not run"}
    assert any("stopped before these steps ran: pytest_gpu, image_path" in n for n in table["notes"])
    assert table["provenance"]["commit"]


def test_requirements_are_the_packages_runtime_needs_besides_torch() -> None:
    gpu_check = _driver()
    lines = gpu_check.requirements()
    names = {gpu_check._name(line) for line in lines}
    assert {"pydantic", "safetensors", "numpy", "click", "onnx", "onnxruntime", "pytest"} <= names
    assert not names & {"torch", "ruff", "ray"} and not any(n.startswith("lassi") for n in names)
    assert len(names) == len(lines)
    # this test's interpreter runs the project: it lacks none of them
    assert gpu_check.requirements(missing_only=True) == []
    assert not gpu_check._satisfied("pydantic>=999")
    assert not gpu_check._satisfied("no-such-distribution-of-lassi")


def _machine_interpreter(root: Path, leave_out: tuple[str, ...]) -> Path:
    """A device machine's situation: its python3 is a venv whose packages (torch among them)
    the project does not list, and the project is not installed. Here: a venv whose path holds a
    view of this interpreter's site-packages without the project and without ``leave_out``."""
    view = root / "view" / "site-packages"
    view.mkdir(parents=True)
    (site,) = {p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir()}
    for entry in Path(site).iterdir():
        name = entry.name.lower()
        if name.startswith(("lassi", "__editable__", *leave_out)) or name.endswith(".pth"):
            continue
        (view / entry.name).symlink_to(entry)
    base = root / "machine"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base)], check=True)
    purelib = subprocess.run(
        [str(base / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "machine.pth").write_text(f"{view}\n")
    return base / "bin" / "python"


@pytest.mark.slow  # a copy of the tree, two venvs, an editable install and the dry run
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash, git")
def test_offline_install_over_the_machines_interpreter(tmp_path: Path) -> None:
    """gpu_check.sh on a copy of the tree as a device machine gets it (tracked and untracked
    files that git does not ignore), over an interpreter that has torch but not the project nor
    h5py, offline and without a wheelhouse: it names h5py in one line, installs the project
    beside that interpreter's packages (never into them), keeps its torch, and runs the steps."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    tree = tmp_path / "tree"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    python = _machine_interpreter(tmp_path, leave_out=("h5py",))
    assert subprocess.run([str(python), "-c", "import lassi.spec"], capture_output=True).returncode != 0
    torch_file = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__file__)"], capture_output=True, text=True, check=True
    ).stdout.strip()  # fmt: skip

    env = {**os.environ, "PYTHON": str(python), "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"),
           "GPU_CHECK_VENV": str(tmp_path / "overlay"), "OMP_NUM_THREADS": "1",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": str(tmp_path)}  # fmt: skip
    out, results = tmp_path / "raw.json", tmp_path / "table.json"
    done = subprocess.run(
        ["bash", str(tree / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--results", str(results)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    missing = [line for line in log.splitlines() if line.startswith("gpu_check: missing")]
    assert len(missing) == 1 and "h5py>=3.8" in missing[0] and "no-wheels" in missing[0], log
    assert f"from {torch_file} " in log  # the machine's torch, not another
    installed = {p.name for p in Path(tmp_path / "overlay").glob("lib/python*/site-packages/*")}
    assert any(n.startswith("__editable__.lassi_spec") for n in installed), installed
    assert not any(n.startswith("torch") for n in installed)
    assert not any(p.name.startswith("lassi") for p in (tmp_path / "view" / "site-packages").iterdir())
    raw = json.loads(out.read_text())
    assert [s["status"] for s in raw["steps"][1:]] == ["ok", "ok", "ok"], raw["steps"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_script_syntax_and_usage() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    for bad in (["--bogus"], ["--out"], ["--dry-run", "extra"]):
        done = subprocess.run(["bash", str(SCRIPT), *bad], capture_output=True, text=True, check=False)
        assert done.returncode == 2 and "usage" in done.stderr.lower(), bad
