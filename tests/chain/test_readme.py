"""The front door: README.md shows the two commands first and own data right after, carries no
dates, its Python example runs as written, its figures are the results files', the packages
export what it uses, and LICENSE and CITATION.cff exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from factories import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_two_commands_come_first_and_own_data_right_after() -> None:
    lines = README.splitlines()
    first_screen = "\n".join(lines[:40])
    assert "make demo" in first_screen and "make test" in first_screen
    own_data = next(i for i, line in enumerate(lines) if line.startswith("## Your own data"))
    assert own_data < 80
    assert len(lines) <= 170


def test_no_dates_or_development_history() -> None:
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README)
    for phrase in ("session", "retrained", "earlier", "this machine"):
        assert phrase not in README.lower(), phrase


def test_license_and_citation() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] and cff["type"] == "software"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Latent Space Smoothing for Individually Fair Representations"
    assert [a["family-names"] for a in paper["authors"]] == [
        "Peychev", "Ruoss", "Balunović", "Baader", "Vechev",
    ]  # fmt: skip
    assert "Latent Space Smoothing for Individually Fair Representations" in README


def test_every_exported_name_resolves() -> None:
    import importlib

    for name in ("lassi.spec", "lassi.regulator", "lassi.producer", "lassi.consumer"):
        module = importlib.import_module(name)
        for export in module.__all__:
            assert getattr(module, export) is not None, f"{name}.{export}"


def test_the_readme_results_are_the_results_files() -> None:
    """Every figure of the README's results table is in the Table 2 results file."""
    table = json.loads((ROOT / "docs" / "results" / "table2-authors-64.json").read_text())
    cells = {str(cell) for row in table["rows"] for cell in row}
    section = README[README.index("## Results") : README.index("## The paper's experiments")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    figures = [cell.strip() for row in rows[1:] for cell in row.strip("|").split("|")[1:]]
    assert figures and all(f in cells or f == "—" for f in figures), figures


def _python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.slow
def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _python_block()], cwd=tmp_path, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "certified_fairness=" in proc.stdout
    out = tmp_path / "runs" / "api-example"
    for name in ("glow", "spec", "encoder", "train", "test", "classifier", "report"):
        assert (out / f"{name}.safetensors").is_file(), name
