"""The audit and the ground-truth check through Ray equal the local executor's findings.

Reuses the session's one local Ray cluster (tests/conftest.py) (``ray.init(num_cpus=2)``).
Per-sample seeds make every replay independent of the process that computed it, so the
findings must agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import run

pytestmark = pytest.mark.slow  # every test reads the session's chain and starts Ray

pytest.importorskip("ray")


def _findings(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("[") : result.output.rindex("]") + 1])


def test_audit_through_ray_equals_local(chain: dict[str, Path], tmp_path: Path, ray_cluster) -> None:
    from lassi.producer.cli import main as producer
    from lassi.regulator.cli import main as regulator

    run(producer, ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
                   "--out-dir", str(tmp_path / "onnx")])  # fmt: skip
    audit = ["audit", "--spec", str(chain["spec"]), "--base-function", str(tmp_path / "onnx" / "base_function.onnx"),
             "--bundle", str(chain["test"]), "--count", "4", "--threads", "1", "--json"]  # fmt: skip
    local = _findings(CliRunner().invoke(regulator, audit))
    remote = _findings(CliRunner().invoke(regulator, [*audit, "--executor", "ray", "--workers", "2"]))
    assert len(local) == 4 and [r["verdict"] for r in local] == ["confirmed"] * 4
    assert remote == local


def test_ground_truth_siblings_through_ray_equal_local(chain: dict[str, Path], ray_cluster) -> None:
    from lassi.experiments.ground_truth import siblings_certified
    from lassi.spec.runtime.executors import RayExecutor

    args = (chain["spec"], chain["encoder"], chain["classifier"], chain["test"], chain["report"])
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray actor: float rounding depends on the thread count
    try:
        local = siblings_certified(*args, progress=False)
    finally:
        torch.set_num_threads(threads)
    with RayExecutor(workers=2, threads=1) as executor:
        remote = siblings_certified(*args, executor=executor, progress=False)
    assert local["factors"].shape == (6, 15, 6) and (local["r_cs"] > 0).any()
    for name, value in local.items():
        assert value.dtype == remote[name].dtype, name
        assert np.array_equal(value, remote[name]), f"'{name}' differs"
