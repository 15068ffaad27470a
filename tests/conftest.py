"""Test configuration: the session's shared fixtures. Tests live in one folder per package
(tests/spec, tests/regulator, tests/producer, tests/consumer, tests/experiments), cross-role tests
in tests/chain; shared builders are in tests/factories.py (on the import path through
``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SLOW_FIXTURES = frozenset({"chain", "ray_cluster"})
"""The session fixtures that build something expensive (a whole chain, a Ray cluster). A test
that uses one, directly or through another fixture, is marked ``slow``, so the fast lane
(``pytest -m "not slow"``, ``make test-fast``) never builds them: tests/chain/test_fast_lane.py
fails otherwise."""

_UNMARKED = pytest.StashKey[list[str]]()
_FAST_BY_FOLDER = pytest.StashKey[dict[str, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before ``-m`` deselects anything: record the tests that use a slow fixture without the
    slow mark, and count the unmarked tests of each test folder whose files were all collected."""
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    config.stash[_UNMARKED] = [item.nodeid for item in fast if SLOW_FIXTURES & set(item.fixturenames)]
    collected = {item.path for item in items}
    folders = {p.parent for p in collected if p.parent.parent == TESTS}
    whole = [f for f in folders if set(f.glob("test_*.py")) <= collected]
    config.stash[_FAST_BY_FOLDER] = {
        f.name: sum(item.path.parent == f for item in fast) for f in sorted(whole)
    }


@pytest.fixture
def unmarked_users_of_slow_fixtures(request: pytest.FixtureRequest) -> list[str]:
    """The collected tests, selected or not, that use a slow fixture but are not marked slow."""
    return request.config.stash[_UNMARKED]


@pytest.fixture
def fast_tests_by_folder(request: pytest.FixtureRequest) -> dict[str, int]:
    """Unmarked tests per test folder (tests/spec, ...), for the folders collected whole."""
    return request.config.stash[_FAST_BY_FOLDER]


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A whole tiny regulator -> producer -> consumer chain, built once per test session."""
    from factories import build_chain

    return build_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="session")
def base_function(chain: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chain's base function exported to ONNX (``lassi-producer export-onnx``), for audits."""
    from factories import run
    from lassi.producer.cli import main as producer

    out = tmp_path_factory.mktemp("onnx")
    run(producer, ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--out-dir", str(out)])  # fmt: skip
    return out / "base_function.onnx"


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (``ray.init(num_cpus=2)``) for every test of the session that needs
    it; its workers import the test modules (the sample functions some tests define), so they get
    every test folder on their PYTHONPATH."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        folders = [TESTS, *(p for p in sorted(TESTS.iterdir()) if any(p.glob("test_*.py")))]
        here = {"env_vars": {"PYTHONPATH": os.pathsep.join(map(str, folders))}}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=here)
    yield ray
    ray.shutdown()
