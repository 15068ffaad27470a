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

pytestmark = pytest.mark.slow  # every test reads the session's chain


def _audit_args(chain, base_function: Path) -> list[str]:
    return ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(chain["test"]),
            "--count", "3"]  # fmt: skip


def test_an_interrupted_audit_resumes_with_its_finished_samples(
    chain, base_function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lassi.regulator import audit

    want = tmp_path / "want.json"
    run(regulator, [*_audit_args(chain, base_function), "--quiet", "--out", str(want)])
    replay, calls, stop = audit.ReplayOne.__call__, [], [True]

    def interrupted(self, i: int):
        calls.append(i)
        if i == 1 and stop:
            stop.pop()
            raise KeyboardInterrupt  # the first run is stopped during the second sample
        return replay(self, i)

    monkeypatch.setattr(audit.ReplayOne, "__call__", interrupted)
    out = tmp_path / "findings.json"
    stopped = CliRunner().invoke(regulator, [*_audit_args(chain, base_function), "--out", str(out)])
    assert stopped.exit_code != 0 and not out.exists(), stopped.output
    assert (tmp_path / "findings.json.ckpt").exists(), "the finished sample was not checkpointed"
    calls.clear()
    resumed = CliRunner().invoke(regulator, [*_audit_args(chain, base_function), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the audit at sample 1/3" in resumed.output
    assert calls == [1, 2], "the resumed run recomputed a finished sample"
    assert json.loads(out.read_text()) == json.loads(want.read_text())
    assert not (tmp_path / "findings.json.ckpt").exists()


def _spec_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_define_and_audit_cpu_and_auto_equal_no_option(
    chain, base_function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto = cpu, also on a GPU
    define = ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA, "--max-images", "64",
              "--fidelity-images", "2", "--quiet"]  # fmt: skip
    specs, findings = {}, {}
    for label, extra in (("none", []), ("cpu", ["--device", "cpu"]), ("auto", ["--device", "auto"])):
        out = tmp_path / f"{label}.safetensors"
        run(regulator, [*define, *extra, "--out", str(out)])
        specs[label] = _spec_tensors(out)
        result = CliRunner().invoke(regulator, [*_audit_args(chain, base_function), "--json", "--quiet", *extra])
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
    command: str, chain, base_function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.safetensors"
    args = {
        "define": ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA, "--quiet",
                   "--out", str(out)],
        "audit": [*_audit_args(chain, base_function), "--out", str(out)],
    }[command]  # fmt: skip
    result = CliRunner().invoke(regulator, [*args, "--device", "cuda:0"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == ["error: --device cuda:0: CUDA is not available on this machine"]
    assert not out.exists()


def _rewritten(chain, tmp_path: Path, options: dict | None = None, ids=None) -> Path:
    """The chain's certified bundle with other recorded data options or sample ids."""
    import json as json_

    from factories import write_raw
    from lassi.spec import RepresentationBundle, read_artifact

    artifact = read_artifact(chain["test"], expect=RepresentationBundle)
    meta = json_.loads(artifact.meta.model_dump_json())
    meta["data"]["options"].update(options or {})
    tensors = dict(artifact.tensors)
    if ids is not None:
        tensors["ids"] = np.asarray(ids, dtype=np.int64)
    out = tmp_path / "rewritten.safetensors"
    write_raw(out, json_.dumps(meta), tensors)
    return out


@pytest.mark.parametrize(
    "change, words",
    [
        ({"ids": "beyond"}, ("records sample id 480000", "beyond the rendered 3D Shapes data set", "0–479999")),
        ({"options": {"n_test": 10**7}}, ("cannot be made here", "at most 480000")),
        ({"requested": "479999"}, ("no sample with id 479999 (ids are ",)),
    ],
)
def test_ids_or_split_sizes_beyond_the_data_set_are_one_line_usage_errors(
    chain, base_function, tmp_path: Path, change: dict, words: tuple[str, ...]
) -> None:
    """Issue 38: the audit exits 2 with one line (not 1) on sample ids or split sizes beyond
    the data set; an unknown --ids lists the valid ids."""
    from lassi.spec import RepresentationBundle, read_artifact

    n = read_artifact(chain["test"], expect=RepresentationBundle).meta.n_samples
    bundle = chain["test"]
    if change.get("ids") == "beyond":
        bundle = _rewritten(chain, tmp_path, ids=[480_000 + i for i in range(n)])
    elif "options" in change:
        bundle = _rewritten(chain, tmp_path, options=change["options"])
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(bundle)]
    args += ["--ids", change.get("requested", "")] if "requested" in change else ["--count", "1"]
    result = CliRunner().invoke(regulator, [*args, "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
