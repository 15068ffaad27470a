"""Every writing command refuses, before any work, an output that is one of its inputs or a
named pipe: one-line error, exit 2, every input byte-identical, nothing written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import DATA


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cases(chain: dict[str, Path]) -> list[tuple[str, str, list[str], Path]]:
    """(role, command, arguments without --out/--out-dir, the input the output collides with)."""
    spec, encoder = str(chain["spec"]), str(chain["encoder"])
    return [
        ("regulator", "show", [spec, "--out"], chain["spec"]),
        ("producer", "train", ["train", "--spec", spec, *DATA, "--task", "object_hue", "--out"], chain["spec"]),
        ("producer", "encode", ["encode", "--spec", spec, "--encoder", encoder, *DATA, "--limit", "2", "--out"],
         chain["encoder"]),
        ("consumer", "train", ["train", "--bundle", str(chain["train"]), "--task", "object_hue", "--sigma", "1",
                               "--out"], chain["train"]),
        ("consumer", "export-onnx", ["export-onnx", "--classifier", str(chain["classifier"]), "--out"],
         chain["classifier"]),
    ]  # fmt: skip


def _main(role: str):
    if role == "regulator":
        from lassi.regulator.cli import main
    elif role == "producer":
        from lassi.producer.cli import main
    else:
        from lassi.consumer.cli import main
    return main


@pytest.mark.parametrize("index", range(5))
def test_output_equal_to_an_input_is_refused(chain: dict[str, Path], index: int) -> None:
    role, command, args, victim = _cases(chain)[index]
    if command == "show":
        args = ["show", *args]
    before = {name: _digest(path) for name, path in chain.items() if path.exists()}
    result = CliRunner().invoke(_main(role), [*args, str(victim)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "input" in lines[0] and "Traceback" not in result.output
    after = {name: _digest(path) for name, path in chain.items() if path.exists()}
    assert before == after


def test_a_named_pipe_as_output_is_refused(chain: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "out.safetensors"
    os.mkfifo(fifo)
    role, _, args, _ = _cases(chain)[3]
    result = CliRunner().invoke(_main(role), [*args, str(fifo)])
    assert result.exit_code == 2, result.output
    assert "not a regular file" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
