"""The four distributions keep their dependency direction: spec <- regulator <- producer; spec <- consumer."""

from __future__ import annotations

import ast
import subprocess
import sys

import tomllib

from factories import ROOT


def _deps(folder: str) -> set[str]:
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    names = set()
    for dep in project["dependencies"]:
        names.add(dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip())
    return names


def _imported_lassi_packages(folder: str) -> set[str]:
    found = set()
    for path in (ROOT / folder / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("lassi.")
            ):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(
                    a.name.split(".")[1] for a in node.names if a.name.startswith("lassi.")
                )
    return found


def test_declared_dependency_direction() -> None:
    assert not {d for d in _deps("spec_schema") if d.startswith("lassi")}
    assert {d for d in _deps("regulator") if d.startswith("lassi")} == {"lassi-spec"}
    assert {d for d in _deps("producer") if d.startswith("lassi")} == {
        "lassi-spec",
        "lassi-regulator",
    }
    assert {d for d in _deps("consumer") if d.startswith("lassi")} == {"lassi-spec"}


def test_imports_follow_the_declared_direction() -> None:
    assert _imported_lassi_packages("spec_schema") <= {"spec"}
    assert _imported_lassi_packages("regulator") <= {"spec", "regulator"}
    assert _imported_lassi_packages("consumer") <= {"spec", "consumer"}


def test_consumer_imports_without_regulator_or_producer() -> None:
    code = (
        "import sys\n"
        "sys.modules['lassi.regulator'] = None\n"
        "sys.modules['lassi.producer'] = None\n"
        "import pkgutil, importlib, lassi.consumer\n"
        "for m in pkgutil.walk_packages(lassi.consumer.__path__, 'lassi.consumer.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_unpickling_anywhere() -> None:
    """No pickle, allow_pickle=True or torch.load without weights_only=True in the packages,
    scripts or benchmarks (the one torch.load, import-glow's, refuses every non-tensor object)."""
    import re

    pattern = re.compile(r"import pickle|pickle\.loads?\(|torch\.load\(|allow_pickle\s*=\s*True")
    folders = [
        "spec_schema",
        "regulator",
        "producer",
        "consumer",
        "scripts",
        "benchmarks",
        "experiments",
    ]
    offenders = [
        f"{path}:{number}"
        for folder in folders
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not ("torch.load(" in line and "weights_only=True" in line)
    ]
    assert offenders == []
