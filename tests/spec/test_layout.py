"""The four distributions keep their dependency direction: spec <- regulator <- producer; spec <- consumer."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
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


@pytest.mark.slow
def test_imports_follow_the_declared_direction() -> None:
    assert _imported_lassi_packages("spec_schema") <= {"spec"}
    assert _imported_lassi_packages("regulator") <= {"spec", "regulator"}
    assert _imported_lassi_packages("consumer") <= {"spec", "consumer"}


@pytest.mark.slow
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


PACKAGES = ("spec_schema", "regulator", "producer", "consumer", "experiments")


def _module_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, every import statement counted: top level, in
    functions and under ``if TYPE_CHECKING:`` (``from a import b`` is an edge to the module
    ``a.b`` when there is one, else to ``a``; relative imports resolved)."""
    paths = {}
    for folder in PACKAGES:
        src = ROOT / folder / "src"
        for path in src.rglob("*.py"):
            parts = list(path.relative_to(src).with_suffix("").parts)
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package[: len(package) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets.update(
                    f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names
                )
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_even_for_type_checking() -> None:
    graph = _module_graph()
    assert "lassi.spec.contract.models" in graph and len(graph) > 50
    assert _cycles(graph) == []
    # the check finds a cycle where there is one (e.g. a package and a module importing it back)
    assert _cycles(graph | {"lassi.producer.tool": graph["lassi.producer.tool"] | {"lassi.producer"}})
