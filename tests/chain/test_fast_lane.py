"""The fast lane (``pytest -m "not slow"``, ``make test-fast``) stays fast and still covers every
package: checked over the collected tests rather than by timing them (timings are noisy)."""

from __future__ import annotations

PACKAGES = ("spec", "regulator", "producer", "consumer", "experiments")


def test_no_test_outside_the_slow_mark_uses_a_slow_fixture(unmarked_users_of_slow_fixtures) -> None:
    """A test that uses the session's whole chain or its Ray cluster (tests/conftest.py), directly
    or through another fixture, is marked slow: otherwise the fast lane builds them."""
    unmarked = unmarked_users_of_slow_fixtures
    assert not unmarked, (
        f"{len(unmarked)} tests to mark slow (pytestmark = pytest.mark.slow, or @pytest.mark.slow): "
        + ", ".join(unmarked[:10])
        + (", ..." if len(unmarked) > 10 else "")
    )


def test_each_package_keeps_tests_in_the_fast_lane(fast_tests_by_folder) -> None:
    """Every package's folder collected whole keeps some unmarked tests (its cheap unit tests)."""
    empty = [name for name in PACKAGES if fast_tests_by_folder.get(name) == 0]
    assert not empty, f"no test outside the slow mark in tests/{', tests/'.join(empty)}"
