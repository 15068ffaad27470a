"""The Ray executor: certification and verification through Ray equal the local executor's output.

One local Ray cluster serves the whole test session (``ray.init(num_cpus=2)``); the CLIs run
in-process and join it. Per-sample seeds make every certificate independent of the process that
computed it, so the files must agree bit for bit (all but the wall-time tensor ``seconds``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from factories import DATA, run
from lassi.spec import read_artifact
from lassi.spec.runtime.executors import RayExecutor
from lassi.spec.runtime.per_sample import LocalExecutor, PerSampleLoop

ray = pytest.importorskip("ray")

CERTIFICATE_TENSORS = ("z", "ids", "z_cs", "r_cs", "status", "center_shift")
REPORT_TENSORS = ("ids", "prediction", "radius", "r_cs", "status", "draws")


def _tensors(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    tensors = read_artifact(path).tensors
    return {name: np.asarray(tensors[name]) for name in names}


def _assert_identical(a: Path, b: Path, names: tuple[str, ...]) -> None:
    ta, tb = _tensors(a, names), _tensors(b, names)
    for name in names:
        assert ta[name].dtype == tb[name].dtype, name
        assert np.array_equal(ta[name], tb[name]), f"tensor '{name}' differs"


@pytest.mark.slow
def test_certify_and_verify_through_ray_equal_local(
    chain: dict[str, Path], tmp_path: Path, ray_cluster
) -> None:
    from lassi.consumer.cli import main as consumer
    from lassi.producer.cli import main as producer

    encode = ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
              "--split", "test", "--limit", "5", "--certify", "--n0", "1500", "--n", "2000",
              "--delta", "0.1", "--threads", "1", "--quiet"]  # fmt: skip
    local, remote = tmp_path / "local.safetensors", tmp_path / "ray.safetensors"
    run(producer, [*encode, "--out", str(local)])
    run(producer, [*encode, "--executor", "ray", "--workers", "2", "--out", str(remote)])
    _assert_identical(local, remote, CERTIFICATE_TENSORS)

    verify = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(local),
              "--n0", "100", "--n", "2000", "--threads", "1", "--quiet"]  # fmt: skip
    report_local, report_ray = tmp_path / "r-local.safetensors", tmp_path / "r-ray.safetensors"
    run(consumer, [*verify, "--out", str(report_local)])
    run(consumer, [*verify, "--executor", "ray", "--workers", "2", "--out", str(report_ray)])
    _assert_identical(report_local, report_ray, REPORT_TENSORS)
    assert read_artifact(report_local).meta.summary == read_artifact(report_ray).meta.summary


class _CrashOnce:
    """A sample function whose actor dies (os._exit) the first time it reaches ``position``."""

    def __init__(self, position: int, marker: Path) -> None:
        self.position, self.marker = position, marker

    def __call__(self, i: int) -> dict[str, object]:
        if i == self.position and not self.marker.exists():
            self.marker.write_text("crashed once")
            os._exit(1)
        rng = np.random.default_rng([7, i])  # a per-sample seed, as in certification
        return {"value": rng.normal(size=3).astype(np.float32), "count": int(rng.integers(100))}


@pytest.mark.slow
def test_a_crashed_actor_is_restarted_and_its_samples_retried(tmp_path: Path, ray_cluster) -> None:
    def fresh() -> dict[str, np.ndarray]:
        return {"value": np.zeros((12, 3), np.float32), "count": np.zeros(12, np.int64)}

    fn = _CrashOnce(position=5, marker=tmp_path / "marker")
    common = dict(tool="test", stage="ray", key="k", desc="test", what="test", progress=False)
    want = PerSampleLoop(fresh(), tmp_path / "local.ckpt", **common).run(
        _CrashOnce(position=-1, marker=tmp_path / "unused"), LocalExecutor()
    )
    with RayExecutor(workers=2, threads=1) as executor:
        got = PerSampleLoop(fresh(), tmp_path / "ray.ckpt", **common).run(fn, executor)
    assert (tmp_path / "marker").exists(), "the actor never crashed: the test tests nothing"
    for name in want:
        assert np.array_equal(want[name], got[name]), name


@pytest.mark.slow
def test_executor_ray_without_ray_names_the_extra(chain: dict[str, Path], tmp_path: Path) -> None:
    # a child process in which `import ray` fails, as in an install without the [ray] extra
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from lassi.consumer.cli import main\n"
        "sys.argv = ['lassi-consumer'] + sys.argv[1:]\n"
        "main()\n"
    )
    out = tmp_path / "report.safetensors"
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--executor", "ray", "--quiet", "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "[ray]" in errors[0] and "Traceback" not in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- no hangs


def _consumer_child(args: list[str], env: dict[str, str] | None = None, timeout: float = 120):
    code = "from lassi.consumer.cli import main; main()"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip
    return result, time.monotonic() - started


def _one_error_line(result, fragment: str) -> None:
    __tracebackhide__ = True
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0] and "Traceback" not in lines[0]


@pytest.mark.slow
def test_an_unreachable_ray_address_fails_fast_in_one_line(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    """``--ray-address garbage:1`` used to hang for minutes with a flood of Ray warnings."""
    out = tmp_path / "report.safetensors"
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--executor", "ray", "--ray-address", "garbage:1", "--quiet", "--out", str(out)]  # fmt: skip
    result, seconds = _consumer_child(args, timeout=60)
    _one_error_line(result, "cannot reach Ray at garbage:1")
    assert seconds < 30 and not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_port_that_is_not_a_ray_cluster_is_refused_within_the_timeout() -> None:
    """A closed port, and a listener that answers in another protocol (HTTP/1), are refused
    by the probe without Ray, within its timeout."""
    from lassi.spec import LassiError
    from lassi.spec.runtime.executors import probe_ray_address

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(LassiError, match="does not answer as a Ray cluster") as error:
        probe_ray_address(f"127.0.0.1:{port}", timeout=5)
    assert error.value.exit_code == 2 and time.monotonic() - started < 5
    server.close()
    with pytest.raises(LassiError, match="cannot reach Ray") as error:
        probe_ray_address(f"127.0.0.1:{port}", timeout=5)  # now closed
    for bad in ("garbage", "host:0", "host:99999", ":80"):
        with pytest.raises(LassiError, match="must be HOST:PORT"):
            probe_ray_address(bad)


@pytest.mark.slow
def test_a_local_ray_node_that_cannot_start_is_one_line(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    """Ray's temporary folder cannot be created: exit 2 naming the cause, Ray's log hidden."""
    out = tmp_path / "report.safetensors"
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--executor", "ray", "--workers", "1", "--quiet", "--out", str(out)]  # fmt: skip
    env = {"RAY_TMPDIR": str(tmp_path / "file" / "ray"), "RAY_ADDRESS": ""}
    (tmp_path / "file").write_text("a file where Ray wants a folder")
    result, seconds = _consumer_child(args, env=env, timeout=120)
    _one_error_line(result, "cannot start a local Ray node")
    assert seconds < 60 and not out.exists()


def test_workers_of_a_local_ray_node_are_bounded() -> None:
    from lassi.spec import LassiError
    from lassi.spec.runtime.executors import max_workers

    with pytest.raises(LassiError, match="--workers") as error:
        RayExecutor(workers=max_workers() + 1)
    assert error.value.exit_code == 2
