"""Glow training throughput (images/s) of this code, and optionally of a baseline side by side.

Default: the demo configuration (scripts/demo.py: 32x32, L=3, K=8, hidden 128, additive,
batch 32, Adam 1e-3, gradient clipping 50, torch's default threads). ``--baseline-file``: also
time the single-file Glow of commit 45a0d66, the reference of tests/regulator/test_glow.py
(which checks that today's Glow computes what it computed, from tests/data/glow_single_file),
saved to a file first as its make_reference.py says:

    git show 45a0d66:regulator/src/lassi/regulator/glow.py > /tmp/glow_baseline.py

Both then start from the same weights (ActNorm initialised on the same batch) and train on the
same dequantised 5-bit batches, in alternating rounds (the order flips every round), so both see
the same machine load; the figure to quote is the median of the per-round ratios.

It also prints a compute bound: the floating-point operations of one training step (forward
and backward, counted by torch's FlopCounterMode; Adam's few element-wise operations are left
out) and this machine's dense matrix-multiply rate at the same thread count, on the shape of the
largest layer (the 1x1 convolution of the first level's coupling networks as a [N*H*W, hidden]
x [hidden, hidden] product). A training step cannot run faster than FLOPs / that rate, so
``batch * rate / FLOPs`` images/s bounds any rewrite that keeps the architecture, the batch
and float32. Run from the repository root, e.g.

    .venv/bin/python benchmarks/bench_glow_train.py [--baseline-file /tmp/glow_baseline.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.training import optimisation_step


def baseline_module(path: Path) -> ModuleType:
    """A single-file Glow module (e.g. commit 45a0d66's glow.py), imported from ``path``;
    ValueError naming what is wrong otherwise."""
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    spec = importlib.util.spec_from_file_location("glow_baseline", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["glow_baseline"] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "Glow"):
        raise ValueError(f"{path} defines no Glow class")
    return module


def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Random colour gradients with a square blob and pixel noise, uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    yy, xx = ramp[:, None], ramp[None, :]
    base = rng.uniform(0, 1, (n, 1, 1, 3))
    slope = rng.uniform(-0.5, 0.5, (n, 1, 1, 3))
    img = base + slope * ((yy + xx) / 2)[None, :, :, None]
    centre = rng.uniform(0.25, 0.75, (n, 2))
    inside = (np.abs(yy[None] - centre[:, 0, None, None]) < 0.15) & (
        np.abs(xx[None] - centre[:, 1, None, None]) < 0.15
    )
    img = np.where(inside[..., None], rng.uniform(0, 1, (n, 1, 1, 3)), img)
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def baseline_step(glow, optimiser, x: torch.Tensor, grad_clip: float) -> float:
    """The inner training step as it was at the baseline commit."""
    loss = glow.bits_per_dim(x).mean()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(glow.parameters(), grad_clip)
    optimiser.step()
    return float(loss.detach())


def step_flops(glow, x: torch.Tensor) -> int:
    """Floating-point operations of the forward and backward pass of one training step."""
    with FlopCounterMode(display=False) as counter:
        glow.bits_per_dim(x).mean().backward()
    glow.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_rate(rows: int, width: int, repeats: int = 50) -> float:
    """Measured float32 GEMM rate (FLOP/s) of a [rows, width] x [width, width] product."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, width, generator=generator)
    b = torch.randn(width, width, generator=generator)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * width * width * repeats / (time.perf_counter() - start)


def layer_rates(batch: int, image_size: int, levels: int, hidden: int, repeats: int = 30) -> None:
    """Print forward + backward GFLOP/s of each coupling-network convolution (channels-last)."""
    import torch.nn.functional as F

    channels, size = 3, image_size
    print("coupling convolutions, forward + backward, channels-last:")
    for level in range(1, levels + 1):
        channels, size = channels * 4, size // 2  # squeeze
        half = channels // 2
        cells = []
        for c_in, c_out, k in ((half, hidden, 3), (hidden, hidden, 1), (hidden, half, 3)):
            x = torch.randn(batch, c_in, size, size).contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            w = torch.randn(c_out, c_in, k, k, requires_grad=True)
            for i in range(repeats + 5):
                if i == 5:
                    start = time.perf_counter()
                out = F.conv2d(x, w, padding=k // 2)
                out.backward(torch.ones_like(out))
            seconds = (time.perf_counter() - start) / repeats
            flops = 3 * 2 * batch * size * size * c_in * c_out * k * k
            cells.append(f"{k}x{k} {c_in}->{c_out}: {flops / seconds / 1e9:.0f} GFLOP/s "
                         f"({seconds * 1e3:.1f} ms)")  # fmt: skip
        print(f"  level {level} ({size}x{size}): " + "; ".join(cells))
        channels //= 2  # split


class Trainer:
    """Adam on the dequantised bits/dim of one Glow over a fixed pool of batches, timed."""

    def __init__(self, glow, step_fn, batches: list[torch.Tensor], lr: float, clip: float):
        self.glow = glow.train()
        self.step_fn = step_fn
        self.batches = batches
        self.optimiser = torch.optim.Adam(glow.parameters(), lr=lr)
        self.clip = clip
        self.index = 0
        self.last_bpd = float("nan")

    def run(self, steps: int) -> float:
        """Train ``steps`` steps; return images/s."""
        start = time.perf_counter()
        images = 0
        for _ in range(steps):
            x = self.batches[self.index % len(self.batches)]
            self.index += 1
            self.last_bpd = self.step_fn(self.glow, self.optimiser, x, self.clip)
            images += x.shape[0]
        return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--depth", type=int, default=8, help="flow steps per level (K)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--coupling", default="additive", choices=["additive", "affine"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6, help="alternating timed rounds")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each model")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=50.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-file", type=Path, default=None,
                        help="a single-file Glow module to time beside this code")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps (smoke run)")
    parser.add_argument(
        "--layers", action="store_true", help="also time each coupling convolution alone"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1
    try:
        baseline_glow = None if args.baseline_file is None else baseline_module(args.baseline_file).Glow
    except ValueError as error:
        parser.error(f"--baseline-file: {error}")

    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = dict(
        image_size=args.image_size,
        n_levels=args.levels,
        n_steps=args.depth,
        hidden=args.hidden,
        coupling=args.coupling,
    )
    images = synthetic_images(16 * args.batch, args.image_size, args.seed)
    pool = preprocess(images, n_bits=5)
    generator = torch.Generator().manual_seed(args.seed)
    pool = pool + torch.rand(pool.shape, generator=generator) / 2**5  # dequantised once
    batches = list(pool.split(args.batch))

    torch.manual_seed(args.seed)
    glow = Glow(**kwargs)
    glow.initialize_actnorm(pool[: 4 * args.batch])
    trainers = {}
    if args.baseline_file is not None:
        baseline = baseline_glow(**kwargs)
        baseline.load_state_dict(glow.state_dict())  # the same initial weights, same keys
        trainers[f"baseline {args.baseline_file.name}"] = Trainer(
            baseline, baseline_step, batches, args.lr, args.grad_clip
        )
    trainers["current"] = Trainer(glow, optimisation_step, batches, args.lr, args.grad_clip)
    # the first step: the same weights and batch, so the same bits/dim up to rounding
    first = {n: t.step_fn(t.glow, t.optimiser, batches[0], t.clip) for n, t in trainers.items()}
    for t in trainers.values():
        t.run(args.warmup)

    names = list(trainers)
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            speeds[name].append(trainers[name].run(args.steps))

    config = (
        f"{args.image_size}x{args.image_size}, L={args.levels}, K={args.depth}, "
        f"hidden {args.hidden}, {args.coupling}, batch {args.batch}, Adam {args.lr:g}"
    )
    print(f"configuration: {config}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{args.rounds} {'alternating ' if len(names) > 1 else ''}rounds x {args.steps} steps "
          f"each, after {args.warmup} warm-up")  # fmt: skip
    if len(names) > 1:
        base_name = names[0]
        ratios = [c / b for c, b in zip(speeds["current"], speeds[base_name], strict=True)]
        print(f"{'round':>5} | {base_name + ' img/s':>24} | {'current img/s':>14} | ratio")
        for r in range(args.rounds):
            b, c = speeds[base_name][r], speeds["current"][r]
            print(f"{r:>5} | {b:>24.1f} | {c:>14.1f} | {c / b:.2f}x")
        print(
            f"median img/s: baseline {statistics.median(speeds[base_name]):.1f}, "
            f"current {statistics.median(speeds['current']):.1f}; "
            f"median ratio {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)"
        )
    else:
        print("img/s per round: " + ", ".join(f"{v:.1f}" for v in speeds["current"]))
        print(f"median img/s: current {statistics.median(speeds['current']):.1f}")
    for name, t in trainers.items():
        print(f"bits/dim {name}: first {first[name]:.4f} -> last {t.last_bpd:.4f}")

    flops = step_flops(glow, batches[0])
    first_level = args.batch * (args.image_size // 2) ** 2
    rates = [matmul_rate(first_level, args.hidden) for _ in range(3)]
    rate = max(rates)
    bound = args.batch * rate / flops
    current = statistics.median(speeds["current"])
    print(
        f"compute bound: {flops / 1e9:.2f} GFLOP per step; GEMM [{first_level}, {args.hidden}] x "
        f"[{args.hidden}, {args.hidden}] at {rate / 1e9:.1f} GFLOP/s (best of 3: "
        f"{', '.join(f'{r / 1e9:.1f}' for r in rates)}) -> at most {bound:.1f} img/s, "
        f"{bound / current:.2f}x the current median; the current code runs at "
        f"{current * flops / args.batch / 1e9:.1f} GFLOP/s"
    )
    if args.layers:
        layer_rates(args.batch, args.image_size, args.levels, args.hidden)


if __name__ == "__main__":
    main()
