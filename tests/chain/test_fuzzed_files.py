"""Fuzzed artifacts: random byte flips, overwrites, truncations and insertions of valid files
(hypothesis, derandomized) are either still valid or refused as invalid or damaged, in one line,
never with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lassi.consumer.cli import main as consumer
from lassi.spec import EXIT_CODES, LassiError, read_artifact

INVALID, INTEGRITY = EXIT_CODES["invalid_artifact"], EXIT_CODES["integrity"]
pytestmark = pytest.mark.slow  # every test reads the session's chain


@st.composite
def mutations(draw) -> tuple[str, list]:
    base = draw(st.sampled_from(["classifier", "test", "report", "encoder"]))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "set", "truncate", "insert"]),
                st.integers(0, 2**31),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return base, ops


def mutate(data: bytes, ops: list) -> bytes:
    buf = bytearray(data)
    for op, where, value in ops:
        if not buf:
            break
        i = where % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value
        elif op == "truncate":
            del buf[i:]
        else:
            buf[i:i] = bytes([value])
    return bytes(buf)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutations())
def test_fuzzed_files_are_rejected_cleanly(
    case: tuple[str, list], chain: dict[str, Path], tmp_path: Path
) -> None:
    base, ops = case
    original = chain[base].read_bytes()
    data = mutate(original, ops)
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(data)
    try:
        read_artifact(path)
    except LassiError as error:
        assert error.exit_code in (INVALID, INTEGRITY) and "\n" not in str(error)
    else:
        # a mutation that leaves a valid artifact must leave its content intact
        assert read_artifact(path).sha256 == read_artifact(path).sha256
    result = CliRunner().invoke(consumer, ["inspect", str(path)])
    assert result.exit_code in (0, INVALID, INTEGRITY), result.output
    assert "Traceback" not in result.output
