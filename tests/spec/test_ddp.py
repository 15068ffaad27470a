"""Data-parallel training under torchrun: 2 CPU processes (gloo) with global batch B reproduce one
process with batch B, up to float summation order; rank 0 alone writes; resume works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from factories import run
from lassi.spec import read_artifact

pytestmark = pytest.mark.slow  # every test starts torchrun processes

BIN = Path(sys.executable).parent
# float32 parameters after a few Adam steps; the ranks sum gradients (and BatchNorm statistics)
# in another order than one process, which moves the last bits only.
TOLERANCE = 1e-4
DATA = ["--image-size", "8", "--n-train", "120", "--n-val", "40", "--n-test", "20"]
GLOW = ["--levels", "2", "--depth", "1", "--hidden", "8", "--warmup", "2", "--n-bits", "5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return dict(env, OMP_NUM_THREADS="1")


def _single(script: str, args: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / script), *args], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _torchrun(script: str, args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(BIN / script), *args,
    ]  # fmt: skip
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)


def _abs_diffs(a: Path, b: Path) -> dict[str, np.ndarray]:
    """|a - b| of each tensor of two artifacts, element by element."""
    ta, tb = read_artifact(a).tensors, read_artifact(b).tensors
    assert sorted(ta) == sorted(tb)
    return {k: np.abs(ta[k].astype(np.float64) - tb[k]) for k in ta}


def _diffs(a: Path, b: Path) -> dict[str, float]:
    return {k: float(d.max(initial=0.0)) for k, d in _abs_diffs(a, b).items()}


def _max_diff(a: Path, b: Path) -> float:
    return max(_diffs(a, b).values())


def _glow_args(out: Path, steps: int = 6) -> list[str]:
    return ["train-glow", *DATA, *GLOW, "--steps", str(steps), "--batch-size", "16",
            "--checkpoint-every", "2", "--threads", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip


def _two_ranks_and_one(
    script: str, args: Callable[[Path], list[str]], name: str, tmp_path: Path
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``script args(out)`` run by two torchrun ranks (out in ddp/) and by one process (out in
    one/): both outputs and the torchrun result."""
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    ddp, one = tmp_path / "ddp" / name, tmp_path / "one" / name
    result = _torchrun(script, args(ddp))
    assert result.returncode == 0, result.stderr[-3000:]
    _single(script, args(one))
    return ddp, one, result


def test_train_glow_two_ranks_match_one_process(tmp_path: Path) -> None:
    ddp, one, result = _two_ranks_and_one("lassi-regulator", _glow_args, "glow.safetensors", tmp_path)
    # rank 0 alone wrote: the artifact and its sample grid, no checkpoint left behind
    assert sorted(p.name for p in ddp.parent.iterdir()) == ["glow.safetensors", "glow.samples.png"]
    assert result.stdout.count("wrote ") == 1
    assert _max_diff(ddp, one) < TOLERANCE
    first = read_artifact(ddp).meta.training
    assert first.batch_size == 16 and first.train_bits_per_dim is not None
    assert abs(first.train_bits_per_dim - read_artifact(one).meta.training.train_bits_per_dim) < 1e-3


def test_train_glow_resumes_under_torchrun(tmp_path: Path, monkeypatch) -> None:
    """A single-process run stopped after its step-4 checkpoint, finished by two ranks (each
    loads the checkpoint), ends where the uninterrupted single-process run ends."""
    from click.testing import CliRunner

    from lassi.regulator import training
    from lassi.regulator.cli import main as regulator

    out = tmp_path / "glow.safetensors"

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the training loop")

    with monkeypatch.context() as patch:
        patch.setattr(training, "evaluate_bits_per_dim", stop)
        result = CliRunner().invoke(regulator, _glow_args(out, steps=5) + ["--quiet"])
    assert result.exit_code != 0 and not out.exists()
    checkpoint = out.with_name(out.name + ".ckpt")
    assert read_artifact(checkpoint).meta.step == 4
    resumed = _torchrun("lassi-regulator", _glow_args(out, steps=5))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming glow.safetensors from step 4" in resumed.stdout
    assert not checkpoint.exists()
    one = tmp_path / "one" / "glow.safetensors"
    one.parent.mkdir()
    run(regulator, _glow_args(one, steps=5) + ["--quiet"])
    assert _max_diff(out, one) < TOLERANCE


def test_refuses_batch_not_divisible_by_world(tmp_path: Path) -> None:
    out = tmp_path / "glow.safetensors"
    args = _glow_args(out)
    args[args.index("--batch-size") + 1] = "15"
    result = _torchrun("lassi-regulator", args)
    assert result.returncode != 0
    assert "--batch-size 15 (the global batch) is not divisible by the 2 torchrun processes" in (
        result.stderr + result.stdout
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lassi.regulator.cli import main as regulator

    d = tmp_path_factory.mktemp("ddp_spec")
    glow, spec = d / "glow.safetensors", d / "spec.safetensors"
    run(regulator, _glow_args(glow, steps=4) + ["--quiet"])
    run(regulator, ["define", "--glow", str(glow), "--attribute", "orientation", "--epsilon", "1.0",
                    *DATA, "--fidelity-images", "4", "--quiet", "--out", str(spec)])  # fmt: skip
    return spec


def test_producer_train_two_ranks_match_one_process(tmp_path: Path, spec: Path) -> None:
    """λ_adv, λ_contr > 0 (attack draws, batch pairs) and BatchNorm; 99 images in batches of 32:
    the last batch (3 images) splits 1 + 2 over the ranks, weighted by its share."""

    def args(out: Path) -> list[str]:
        return ["train", "--spec", str(spec), *DATA, "--task", "object_hue", "--hidden", "32,16",
                "--k", "8", "--epochs", "2", "--batch-size", "32", "--max-train", "99",
                "--attack-points", "4", "--lambda-adv", "0.1", "--lambda-contr", "0.1",
                "--delta", "1", "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
                "--device", "cpu", "--out", str(out)]  # fmt: skip

    ddp, one, result = _two_ranks_and_one("lassi-producer", args, "encoder.safetensors", tmp_path)
    assert [p.name for p in ddp.parent.iterdir()] == ["encoder.safetensors"]
    assert result.stdout.count("wrote ") == 1
    # A Linear bias right before a BatchNorm has gradient exactly 0 (BN subtracts the batch
    # mean), so what it gets is float rounding noise, and Adam, which divides by a gradient's own
    # RMS, turns that noise into steps of size up to lr in random directions; the same holds for
    # any element whose gradient is small against the rounding of another summation order, and
    # the differences then propagate (on one CPU 13 % of the elements differed by more than
    # TOLERANCE, none by more than 6.5 lr). So no element may differ by more than two runs' worth
    # of Adam steps, and the typical element must agree to TOLERANCE: ranks that did not share
    # their gradients (or trained on other batches) move most elements by O(lr) = 10 TOLERANCE.
    per_tensor = _abs_diffs(ddp, one)
    counters = {k: d for k, d in per_tensor.items() if k.endswith("num_batches_tracked")}
    assert counters and not any(d.any() for d in counters.values()), counters
    diffs = np.concatenate([d.ravel() for k, d in per_tensor.items() if k not in counters])
    steps, lr = 2 * 4, 1e-3  # 2 epochs of ceil(99 / 32) steps at the default lr
    assert diffs.max() <= 2 * steps * lr, diffs.max()
    assert np.median(diffs) < TOLERANCE, np.median(diffs)
    a, b = read_artifact(ddp).meta.training, read_artifact(one).meta.training
    assert (a.best_epoch, a.train_accuracy, a.val_accuracy) == (
        b.best_epoch,
        b.train_accuracy,
        b.val_accuracy,
    )


def test_producer_ranks_share_rank_0s_latent_cache_when_their_arithmetic_differs(
    tmp_path: Path, spec: Path
) -> None:
    """The latent cache's key includes the Glow's latents of probe images; a rank whose device
    computes them in other last bits (simulated: rank 1 sees another identity) still reads the
    cache rank 0 filled, so the ranks train on the same latents and one cache entry per split."""
    script = tmp_path / "rank_differs.py"
    script.write_text(
        "import os, sys\n"
        "import lassi.producer.latents as latents\n"
        "import lassi.producer.training as training\n"
        "if os.environ['RANK'] == '1':\n"
        "    training.glow_identity = latents.glow_identity = lambda sim: 'f' * 64\n"
        "from lassi.producer.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    cache = tmp_path / "cache"
    out = tmp_path / "encoder.safetensors"
    result = _torchrun(str(script), ["train", "--spec", str(spec), *DATA, "--task", "object_hue",
                                     "--hidden", "16", "--k", "8", "--epochs", "1", "--batch-size", "32",
                                     "--max-train", "64", "--cache-dir", str(cache), "--threads", "1",
                                     "--device", "cpu", "--quiet", "--out", str(out)])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(cache.glob("latents-*.safetensors"))) == 2  # train and val, rank 0's only
