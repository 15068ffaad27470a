"""Test configuration: the session's shared fixtures (tests/factories.py is importable because
pytest puts this folder, which has no __init__.py, on the import path)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A whole tiny regulator -> producer -> consumer chain, built once per test session."""
    from factories import build_chain

    return build_chain(tmp_path_factory.mktemp("chain"))
