"""Glow training and encode/decode throughput (images/s) on synthetic 5-bit images.

Default: the demo configuration of DESIGN.md sec. 3 (32x32, L=3, K=8, hidden 128, additive,
batch 32, Adam 1e-3). Run from the repository root, e.g.

    PYTHONPATH=spec_schema/src:regulator/src python benchmarks/bench_glow_train.py --steps 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lassi.regulator.glow import Glow, preprocess, validate_inverse


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--depth", type=int, default=8, help="flow steps per level (K)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--coupling", default="additive", choices=["additive", "affine"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="5 timed steps (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.steps = 5

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    glow = Glow(
        image_size=args.image_size,
        n_levels=args.levels,
        n_steps=args.depth,
        hidden=args.hidden,
        coupling=args.coupling,
    ).to(args.device)
    n_params = sum(p.numel() for p in glow.parameters())
    images = synthetic_images(8 * args.batch, args.image_size, args.seed)
    pool = preprocess(images, n_bits=5).to(args.device)
    batches = pool.split(args.batch)
    optimiser = torch.optim.Adam(glow.parameters(), lr=args.lr)

    def train_step(i: int) -> float:
        loss = glow.bits_per_dim(batches[i % len(batches)], dequantize=True).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    glow.train()
    first_bpd = train_step(0)  # includes ActNorm data-dependent initialisation
    for i in range(1, args.warmup):
        train_step(i)
    start = time.perf_counter()
    for i in range(args.steps):
        last_bpd = train_step(args.warmup + i)
    train_time = time.perf_counter() - start
    train_ips = args.steps * args.batch / train_time

    glow.eval()
    x = batches[0]
    with torch.no_grad():
        z = glow.encode(x)
        encode_ips = throughput(glow.encode, x, repeats=5)
        decode_ips = throughput(glow.decode, z, repeats=5)
        with glow.inverse_cached():
            decode_cached_ips = throughput(glow.decode, z, repeats=5)
    error = validate_inverse(glow, x)

    config = (
        f"{args.image_size}x{args.image_size}, L={args.levels}, K={args.depth}, "
        f"hidden {args.hidden}, {args.coupling}, batch {args.batch}, Adam {args.lr:g}"
    )
    rows = [
        ("configuration", config),
        ("parameters", f"{n_params / 1e6:.2f} M"),
        ("device / torch threads", f"{args.device} / {torch.get_num_threads()}"),
        ("train steps timed", f"{args.steps} (after {args.warmup} warm-up)"),
        ("train images/s", f"{train_ips:.1f}"),
        ("train s/step", f"{train_time / args.steps:.3f}"),
        ("bits/dim first -> last", f"{first_bpd:.3f} -> {last_bpd:.3f}"),
        ("encode images/s", f"{encode_ips:.1f}"),
        ("decode images/s", f"{decode_ips:.1f}"),
        ("decode images/s (cached W^-1)", f"{decode_cached_ips:.1f}"),
        ("max |D(E(x)) - x| (float32)", f"{error:.2e}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * len(config)}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
