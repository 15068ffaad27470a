"""Crash-safe resume: a run killed with SIGKILL and started again finishes with identical output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from factories import DATA
from lassi.spec import Checkpoint, read_artifact
from lassi.spec.contract.io import Artifact

pytestmark = pytest.mark.slow  # every test kills and resumes a real run

BIN = Path(sys.executable).parent
CERTIFICATE_TENSORS = ("z", "ids", "z_cs", "r_cs", "status", "center_shift")


def _run(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(args, check=True, env=env, capture_output=True, timeout=600)


def _kill_midway(args: list[str], out: Path, env: dict[str, str], min_step: int = 2) -> int:
    """Start ``args``, SIGKILL it once its checkpoint has passed ``min_step``; return that step."""
    checkpoint = out.with_name(out.name + ".ckpt")
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.exists():
                try:
                    step = read_artifact(checkpoint, expect=Checkpoint).meta.step
                except Exception:  # being replaced right now: look again
                    step = 0
                if step >= min_step:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists(), "a killed run must leave no output file"
    return step


@pytest.fixture()
def env() -> dict[str, str]:
    return dict(os.environ, LASSI_CHECKPOINT_SECONDS="0", OMP_NUM_THREADS="1")


def _command(tool: str, *args: str) -> Callable[[Path], list[str]]:
    """``tool args --threads 1 --quiet --out OUT``, as a function of OUT."""
    return lambda out: [str(BIN / tool), *args, "--threads", "1", "--quiet", "--out", str(out)]


def _certify(chain: dict[str, Path], limit: int, n: int) -> list[str]:
    """``encode --certify`` arguments of the chain's test split (n0 = 1500, delta = 0.1)."""
    return ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
            "--split", "test", "--limit", str(limit), "--certify", "--n0", "1500", "--n", str(n),
            "--delta", "0.1"]


def _reference_and_resumed(
    command: Callable[[Path], list[str]], tmp_path: Path, env: dict[str, str], min_step: int = 2
) -> tuple[Artifact, Artifact, int]:
    """Run ``command`` to the end (the reference), then again, killed with SIGKILL once past
    ``min_step`` and started once more (the resumed run): both outputs and the step killed at."""
    reference, resumed = tmp_path / "reference.safetensors", tmp_path / "resumed.safetensors"
    _run(command(reference), env)
    step = _kill_midway(command(resumed), resumed, env, min_step)
    _run(command(resumed), env)
    return read_artifact(reference), read_artifact(resumed), step


def test_killed_certification_resumes_bit_identical(
    chain: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    command = _command("lassi-producer", *_certify(chain, 40, 20000))
    a, b, step = _reference_and_resumed(command, tmp_path, env)
    assert 2 <= step < 40
    for name in CERTIFICATE_TENSORS:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
    assert not (tmp_path / "resumed.safetensors.ckpt").exists()


def test_killed_verification_resumes_bit_identical(
    chain: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    bundle = tmp_path / "bundle.safetensors"
    _run([str(BIN / "lassi-producer"), *_certify(chain, 30, 2000), "--quiet", "--out", str(bundle)],
         dict(env, LASSI_CHECKPOINT_SECONDS="20"))
    command = _command("lassi-consumer", "verify", "--classifier", str(chain["classifier"]),
                       "--bundle", str(bundle), "--n0", "100", "--n", "1000000")
    a, b, _ = _reference_and_resumed(command, tmp_path, env)
    for name in ("ids", "prediction", "radius", "r_cs", "status"):
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
    assert a.meta.summary == b.meta.summary


def test_killed_glow_training_resumes_to_identical_weights(
    tmp_path: Path, env: dict[str, str]
) -> None:
    command = _command("lassi-regulator", "train-glow", *DATA, "--levels", "2", "--depth", "2",
                       "--hidden", "16", "--steps", "400", "--batch-size", "16", "--warmup", "5",
                       "--checkpoint-every", "10")
    a, b, step = _reference_and_resumed(command, tmp_path, env, min_step=20)
    assert 20 <= step < 400
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)


def test_killed_encoder_training_resumes_to_identical_weights(
    chain: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    command = _command("lassi-producer", "train", "--spec", str(chain["spec"]), *DATA, "--task",
                       "object_hue", "--hidden", "256,128", "--k", "16", "--epochs", "40",
                       "--batch-size", "64", "--attack-points", "4", "--lambda-contr", "0.1",
                       "--delta", "1")
    a, b, step = _reference_and_resumed(command, tmp_path, env)
    assert 2 <= step < 40
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
    assert a.meta.training.best_epoch == b.meta.training.best_epoch
    assert a.meta.training.val_accuracy == b.meta.training.val_accuracy
