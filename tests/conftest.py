"""Test configuration: the session's shared fixtures. Tests live in one folder per package
(tests/spec, tests/regulator, tests/producer, tests/consumer, tests/experiments), cross-role tests
in tests/chain; shared builders are in tests/factories.py (on the import path through
``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


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
