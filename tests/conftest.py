"""Test configuration: make tests/factories.py importable and keep torch to few threads."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A whole tiny regulator -> producer -> consumer chain, built once per test session."""
    from factories import build_chain

    return build_chain(tmp_path_factory.mktemp("chain"))
