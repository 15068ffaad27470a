"""Glow training on a 2-core CPU: one process with 2 threads against 2 torchrun ranks of 1 thread.

Both train the demo configuration (scripts/demo.py: 32x32, L=3, K=8, hidden 128, additive,
global batch 32) through the real CLI for ``--steps`` steps; under torchrun each rank trains on
half of every batch and the gradients are averaged (``lassi.spec.runtime.distributed``), so both runs
compute the same model up to float summation order (tests/spec/test_ddp.py). The figure compared is
the training time the artifact records (``training.seconds``: the optimisation steps with their
batch rendering, not start-up, validation or the sample grid), in alternating rounds so both
modes see the same machine load. Run from the repository root:

    .venv/bin/python benchmarks/bench_glow_ddp.py [--steps 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lassi.spec import GlowArtifact, read_artifact

BIN = Path(sys.executable).parent
DATA = ["--dataset", "shapes3d", "--image-size", "32", "--data-seed", "0",
        "--n-train", "10000", "--n-val", "1000", "--n-test", "1000"]  # fmt: skip
GLOW = ["--levels", "3", "--depth", "8", "--hidden", "128", "--batch-size", "32", "--lr", "1e-3",
        "--warmup", "200"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(mode: str, steps: int, folder: Path) -> tuple[float, float]:
    """Train ``steps`` steps in ``mode`` ('single' or 'torchrun'); (img/s, training bits/dim)."""
    out = folder / f"{mode}.safetensors"
    args = ["train-glow", *DATA, *GLOW, "--steps", str(steps), "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if mode == "single":
        command = [str(BIN / "lassi-regulator"), *args]
        env["OMP_NUM_THREADS"] = "2"
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
            str(BIN / "lassi-regulator"), *args,
        ]  # fmt: skip
        env["OMP_NUM_THREADS"] = "1"
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    training = read_artifact(out, expect=GlowArtifact).meta.training
    out.unlink()
    return steps * 32 / training.seconds, float(training.train_bits_per_dim or float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round of 4 steps (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 4, 1
    speeds: dict[str, list[float]] = {"single": [], "torchrun": []}
    bpd: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-glow-ddp-") as tmp:
        for r in range(args.rounds):
            for mode in ("single", "torchrun") if r % 2 == 0 else ("torchrun", "single"):
                speed, bpd[mode] = train(mode, args.steps, Path(tmp))
                speeds[mode].append(speed)
                print(f"round {r} {mode}: {speed:.1f} img/s", flush=True)
    ratios = [t / s for s, t in zip(speeds["single"], speeds["torchrun"], strict=True)]
    print(
        f"median img/s: 1 process x 2 threads {statistics.median(speeds['single']):.1f}, "
        f"2 ranks x 1 thread {statistics.median(speeds['torchrun']):.1f}; ratio "
        f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x); "
        f"training bits/dim after {args.steps} steps: {bpd['single']:.4f} / {bpd['torchrun']:.4f}"
    )


if __name__ == "__main__":
    main()
