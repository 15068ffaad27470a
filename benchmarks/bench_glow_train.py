"""Glow training throughput (images/s) of this code and of the baseline, side by side.

Default: the demo configuration (scripts/demo.py: 32x32, L=3, K=8, hidden 128, additive,
batch 32, Adam 1e-3, torch's default threads). The baseline is the single-file Glow of git
commit 45a0d66, materialised into a temporary module; both start from the same weights and
train on the same dequantised 5-bit batches, in alternating rounds, so that the ratio is
measured under the same machine load. Run from the repository root, e.g.

    PYTHONPATH=spec_schema/src:regulator/src python benchmarks/bench_glow_train.py --rounds 4
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from lassi.regulator.glow import Glow, preprocess, validate_inverse

BASELINE_COMMIT = "45a0d66"
ROOT = Path(__file__).resolve().parents[1]


def baseline_module(commit: str = BASELINE_COMMIT) -> ModuleType:
    """The single-file ``lassi/regulator/glow.py`` of ``commit`` as a temporary module."""
    source = subprocess.run(
        ["git", "show", f"{commit}:regulator/src/lassi/regulator/glow.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"glow_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"glow_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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


def throughput(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up
    _synchronize(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    _synchronize(x.device)
    return repeats * x.shape[0] / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Adam on the dequantised bits/dim of one Glow, over a fixed pool of batches."""

    def __init__(self, glow: torch.nn.Module, batches: list[torch.Tensor], lr: float) -> None:
        self.glow = glow.train()
        self.batches = batches
        self.optimiser = torch.optim.Adam(glow.parameters(), lr=lr)
        self.step_index = 0
        self.seconds = 0.0
        self.images = 0
        self.last_bpd = float("nan")

    def step(self, timed: bool = True) -> float:
        x = self.batches[self.step_index % len(self.batches)]
        self.step_index += 1
        start = time.perf_counter()
        loss = self.glow.bits_per_dim(x).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.last_bpd = loss.item()
        _synchronize(x.device)
        if timed:
            self.seconds += time.perf_counter() - start
            self.images += x.shape[0]
        return self.last_bpd

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--depth", type=int, default=8, help="flow steps per level (K)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--coupling", default="additive", choices=["additive", "affine"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="alternating timed rounds")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git commit of the baseline")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 steps (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 3, 1

    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = dict(
        image_size=args.image_size,
        n_levels=args.levels,
        n_steps=args.depth,
        hidden=args.hidden,
        coupling=args.coupling,
    )
    torch.manual_seed(args.seed)
    glow = Glow(**kwargs).to(args.device)
    baseline = baseline_module(args.baseline).Glow(**kwargs).to(args.device)
    baseline.load_state_dict(glow.state_dict())  # the same initial weights
    n_params = sum(p.numel() for p in glow.parameters())

    images = synthetic_images(8 * args.batch, args.image_size, args.seed)
    pool = preprocess(images, n_bits=5)
    generator = torch.Generator().manual_seed(args.seed)
    pool = pool + torch.rand(pool.shape, generator=generator) / 2**5  # dequantised once
    batches = list(pool.to(args.device).split(args.batch))
    trainers = {"baseline": Trainer(baseline, batches, args.lr), "current": Trainer(glow, batches, args.lr)}
    first_bpd = {name: t.step(timed=False) for name, t in trainers.items()}  # ActNorm init
    for _ in range(1, args.warmup):
        for t in trainers.values():
            t.step(timed=False)
    for _ in range(args.rounds):
        for t in trainers.values():
            for _ in range(args.steps):
                t.step()

    glow.eval()
    x = batches[0]
    with torch.no_grad():
        z = glow.encode(x)
        encode_ips = throughput(glow.encode, x, repeats=5)
        with glow.inverse_cached():
            decode_cached_ips = throughput(glow.decode, z, repeats=5)
    error = validate_inverse(glow, x)

    config = (
        f"{args.image_size}x{args.image_size}, L={args.levels}, K={args.depth}, "
        f"hidden {args.hidden}, {args.coupling}, batch {args.batch}, Adam {args.lr:g}"
    )
    base, cur = trainers["baseline"], trainers["current"]
    rows = [
        ("configuration", config),
        ("parameters", f"{n_params / 1e6:.2f} M"),
        ("device / torch threads", f"{args.device} / {torch.get_num_threads()}"),
        ("timed steps (each)", f"{args.rounds} rounds x {args.steps}, after {args.warmup} warm-up"),
        (f"train images/s baseline ({args.baseline})", f"{base.images_per_s:.1f}"),
        ("train images/s current", f"{cur.images_per_s:.1f}"),
        ("speed-up (current / baseline)", f"{cur.images_per_s / base.images_per_s:.2f}x"),
        (
            "bits/dim first -> last (baseline)",
            f"{first_bpd['baseline']:.3f} -> {base.last_bpd:.3f}",
        ),
        ("bits/dim first -> last (current)", f"{first_bpd['current']:.3f} -> {cur.last_bpd:.3f}"),
        ("encode images/s (current)", f"{encode_ips:.1f}"),
        ("decode images/s (current, cached W^-1)", f"{decode_cached_ips:.1f}"),
        ("max |D(E(x)) - x| (float32)", f"{error:.2e}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * len(config)}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
