"""`lassi-<role> inspect`: valid files print a table; bad files one line and a class exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import make
from lassi.consumer.cli import main as consumer_main
from lassi.producer.cli import main as producer_main
from lassi.regulator.cli import main as regulator_main
from lassi.spec import EXIT_CODES, write_artifact

ROLES = [regulator_main, producer_main, consumer_main]


@pytest.mark.parametrize("main", ROLES)
def test_inspect_valid_file(tmp_path: Path, main) -> None:
    meta, tensors = make("representations")
    path = tmp_path / "bundle.safetensors"
    write_artifact(path, meta, tensors)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "kind:    representations" in result.output
    assert "z_cs" in result.output and "[5, 4]" in result.output
    as_json = CliRunner().invoke(main, ["inspect", "--json", str(path)])
    assert json.loads(as_json.output)["metadata"]["kind"] == "representations"


@pytest.mark.parametrize("main", ROLES)
def test_inspect_bad_file_is_one_line_with_exit_code(tmp_path: Path, main) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == EXIT_CODES["invalid_artifact"]
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "not valid JSON" in lines[0]
    missing = CliRunner().invoke(main, ["inspect", str(tmp_path / "none.safetensors")])
    assert missing.exit_code == EXIT_CODES["usage"] and "no such file" in missing.output


def test_schema_export_and_version() -> None:
    result = CliRunner().invoke(regulator_main, ["inspect", "--schema", "similarity_spec"])
    schema = json.loads(result.output)
    assert (
        "epsilon" in schema["properties"]
        and schema["properties"]["epsilon"]["exclusiveMinimum"] == 0
    )
    version = CliRunner().invoke(consumer_main, ["--version"])
    assert version.exit_code == 0 and "lassi-consumer" in version.output


@pytest.mark.slow
def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"abc")
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "lassi-producer"), "inspect", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == EXIT_CODES["invalid_artifact"]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "truncated" in proc.stderr
