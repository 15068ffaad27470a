"""The audit on the shared per-sample loop (stop and resume) and ``--device`` on define and audit.

On this CPU machine ``--device cpu`` and ``--device auto`` must give the outputs of no option at
all; ``--device cuda`` without CUDA is a one-line usage error (exit 2) before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import DATA, run
from lassi.regulator.cli import main as regulator


@pytest.fixture(scope="module")
def onnx(chain: dict[str, Path], tmp_path_factory) -> Path:
    from lassi.producer.cli import main as producer

    out = tmp_path_factory.mktemp("onnx")
    run(producer, ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--out-dir", str(out)])  # fmt: skip
    return out / "base_function.onnx"


def _audit_args(chain, onnx: Path) -> list[str]:
    return ["audit", "--spec", str(chain["spec"]), "--base-function", str(onnx), "--bundle", str(chain["test"]),
            "--count", "3"]  # fmt: skip


def test_an_interrupted_audit_resumes_with_its_finished_samples(
    chain, onnx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lassi.regulator import audit

    want = tmp_path / "want.json"
    run(regulator, [*_audit_args(chain, onnx), "--quiet", "--out", str(want)])
    replay, calls, stop = audit.ReplayOne.__call__, [], [True]

    def interrupted(self, i: int):
        calls.append(i)
        if i == 1 and stop:
            stop.pop()
            raise KeyboardInterrupt  # the first run is stopped during the second sample
        return replay(self, i)

    monkeypatch.setattr(audit.ReplayOne, "__call__", interrupted)
    out = tmp_path / "findings.json"
    stopped = CliRunner().invoke(regulator, [*_audit_args(chain, onnx), "--out", str(out)])
    assert stopped.exit_code != 0 and not out.exists(), stopped.output
    assert (tmp_path / "findings.json.ckpt").exists(), "the finished sample was not checkpointed"
    calls.clear()
    resumed = CliRunner().invoke(regulator, [*_audit_args(chain, onnx), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the audit at sample 1/3" in resumed.output
    assert calls == [1, 2], "the resumed run recomputed a finished sample"
    assert json.loads(out.read_text()) == json.loads(want.read_text())
    assert not (tmp_path / "findings.json.ckpt").exists()


def _spec_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_define_and_audit_cpu_and_auto_equal_no_option(
    chain, onnx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto = cpu, also on a GPU
    define = ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA, "--max-images", "64",
              "--fidelity-images", "2", "--quiet"]  # fmt: skip
    specs, findings = {}, {}
    for label, extra in (("none", []), ("cpu", ["--device", "cpu"]), ("auto", ["--device", "auto"])):
        out = tmp_path / f"{label}.safetensors"
        run(regulator, [*define, *extra, "--out", str(out)])
        specs[label] = _spec_tensors(out)
        result = CliRunner().invoke(regulator, [*_audit_args(chain, onnx), "--json", "--quiet", *extra])
        assert result.exit_code == 0, result.output
        findings[label] = json.loads(result.output[result.output.index("[") : result.output.rindex("]") + 1])
    assert "attribute_vectors" in specs["none"] and len(findings["none"]) == 3
    for label in ("cpu", "auto"):
        assert specs[label].keys() == specs["none"].keys()
        for key, value in specs["none"].items():
            np.testing.assert_array_equal(specs[label][key], value, err_msg=f"{label}: {key}")
        assert findings[label] == findings["none"]


@pytest.mark.parametrize("command", ["define", "audit"])
def test_device_cuda_without_cuda_is_one_line(
    command: str, chain, onnx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.safetensors"
    args = {
        "define": ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA, "--quiet",
                   "--out", str(out)],
        "audit": [*_audit_args(chain, onnx), "--out", str(out)],
    }[command]  # fmt: skip
    result = CliRunner().invoke(regulator, [*args, "--device", "cuda:0"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == ["error: --device cuda:0: CUDA is not available on this machine"]
    assert not out.exists()
