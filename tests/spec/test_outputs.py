"""Every writing command refuses, before any work, an output that is one of its inputs or a
named pipe: one-line error, exit 2, every input byte-identical, nothing written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import DATA

pytestmark = pytest.mark.slow  # every test reads the session's chain


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


def test_a_failed_write_names_the_file_it_was_writing(tmp_path: Path) -> None:
    """A write that the file system refuses (here: past RLIMIT_FSIZE, as on a full disk) is one
    line naming the output, not "a file: ...", exit 2, and leaves no temporary behind."""
    import resource
    import signal
    import subprocess
    import sys

    from lassi.consumer.cli import main as consumer

    key = tmp_path / "k.key"
    assert CliRunner().invoke(consumer, ["keygen", "--out", str(key)]).exit_code == 0
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 64)
    listing = sorted(p.name for p in tmp_path.iterdir())

    def small_files() -> None:  # in the child: files may not grow past 100 bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed

    code = "from lassi.consumer.cli import main; main()"
    run = subprocess.run([sys.executable, "-c", code, "sign", str(data), "--key", str(key)],
                         capture_output=True, text=True, preexec_fn=small_files, timeout=120)  # fmt: skip
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0] == f"error: {data}.sig: cannot write (File too large)", lines
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
