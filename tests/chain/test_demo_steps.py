"""`make demo` reuses a finished step's output only when the same command made it from the same
input files (its ``.made`` record); anything else is refused with the file to delete."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from factories import ROOT


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """scripts/demo.py with its folder in tmp_path and each CLI step faked: it writes its
    output (the last argument) from the options, and counts the runs."""
    monkeypatch.setenv("LASSI_DEMO_DIR", str(tmp_path / "demo"))
    spec = importlib.util.spec_from_file_location("lassi_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs: list[list[str]] = []

    def fake_run(command: list[str], check: bool) -> None:
        runs.append(command)
        Path(command[-1]).write_text(" ".join(command[1:-1]))

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    module.runs = runs
    return module


def test_a_step_is_reused_only_when_made_by_its_command_from_its_inputs(demo, tmp_path: Path) -> None:
    glow, spec = tmp_path / "glow.safetensors", tmp_path / "spec.safetensors"
    demo.step("regulator", ["train-glow", "--steps", "1600", "--out", str(glow)], glow, "glow")
    define = ["define", "--glow", str(glow), "--epsilon", "0.14", "--out", str(spec)]
    demo.step("regulator", define, spec, "spec")
    assert len(demo.runs) == 2 and glow.with_name("glow.safetensors.made").is_file()
    demo.step("regulator", ["train-glow", "--steps", "1600", "--out", str(glow)], glow, "glow")
    demo.step("regulator", define, spec, "spec")
    assert len(demo.runs) == 2  # the same commands, the same inputs: reused

    # other options (e.g. LASSI_DEMO_GLOW_STEPS) for an existing output: refused, not reused
    with pytest.raises(demo.StaleOutput, match="made by another command or from other inputs"):
        demo.step("regulator", ["train-glow", "--steps", "200", "--out", str(glow)], glow, "glow")
    # a redone input (another Glow) makes the file made from it stale
    glow.write_text("another Glow")
    with pytest.raises(demo.StaleOutput, match=r"spec\.safetensors was made by another command or from other inputs"):
        demo.step("regulator", define, spec, "spec")
    # an output without a record (an earlier demo's) is not trusted either
    glow.with_name("glow.safetensors.made").unlink()
    with pytest.raises(demo.StaleOutput, match="made by an earlier demo: delete it"):
        demo.step("regulator", ["train-glow", "--steps", "1600", "--out", str(glow)], glow, "glow")
    assert len(demo.runs) == 2


def test_the_demo_stops_in_one_line_on_a_stale_output(demo, capsys: pytest.CaptureFixture[str]) -> None:
    regulator = demo.RUN / "regulator"
    regulator.mkdir(parents=True)
    (regulator / "glow.safetensors").write_text("a Glow of an earlier demo")
    assert demo.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("demo stopped: ") and "glow.safetensors was made by an earlier demo" in err[-1]
    assert demo.runs == []
