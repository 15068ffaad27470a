"""Train an existing Glow artifact for more steps (a longer run of the same configuration).

    python experiments/extend_glow.py --glow runs/glow-64-h256/glow.safetensors --steps 3000
        --out runs/glow-64-h256-3000/glow.safetensors [--lr 3e-4] [--threads 2]

The artifact keeps the weights but not Adam's moments, so this script writes a train-glow
checkpoint at the artifact's last step for the longer configuration (same flow, data, batch,
learning rate, warm-up and seed; ``steps`` raised) and lets ``lassi.regulator.training.train_glow``
resume from it: batches and dequantisation noise of the new steps are the ones an uninterrupted
run of ``--steps`` would draw. The one difference from such a run: Adam restarts. Its second
moments are re-estimated from ``--moment-batches`` gradients at the loaded weights (first moments
zero, bias correction off), so the first new steps are not the sign-like jumps of a fresh Adam.
Even so, the original learning rate diverges within five steps on the 64×64 Glow (bits/dim 0.65
→ 10.6; Adam's running moments had remembered the larger gradients of earlier steps), so the new
steps use ``--lr`` (default 3·10⁻⁴: a step decay, stable in a 12-step trial) and the artifact
records that rate.
The written artifact records the total steps and the training seconds of both runs; this
script's work is an experiment, not a library feature (docs/results.md says where it was used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from run import regulator_data

from lassi.regulator import TOOL
from lassi.regulator.data_config import make_source
from lassi.regulator.glow import preprocess
from lassi.regulator.similarity import load_glow
from lassi.regulator.training import GlowTrainConfig, batch_ids, dequantize, train_glow
from lassi.spec.seeding import Stage, torch_seed
from lassi.spec.torch_state import run_key, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glow", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True, help="total steps of the longer run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate of the new steps")
    parser.add_argument("--moment-batches", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    glow, artifact = load_glow(args.glow)
    done = artifact.meta.training
    if args.steps <= done.steps:
        parser.error(f"{args.glow} already has {done.steps} steps; --steps must be more")
    config = GlowTrainConfig(
        flow=artifact.meta.flow, data=regulator_data(args.glow), steps=args.steps,
        batch_size=done.batch_size, lr=args.lr, warmup_steps=done.warmup_steps, seed=done.seed,
    )  # fmt: skip
    checkpoint = args.out.with_name(args.out.name + ".ckpt")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not checkpoint.exists():
        source = make_source(config.data)
        train_ids = source.split_ids("train")
        glow.train()
        optimizer = torch.optim.Adam(glow.parameters(), lr=config.lr)
        squares = [torch.zeros_like(p) for p in glow.parameters()]
        for b in range(args.moment_batches):  # gradients of steps already taken (their batches)
            step = done.steps - 1 - b
            ids = batch_ids(train_ids, config.seed, step, config.batch_size)
            noise = torch.Generator().manual_seed(torch_seed(config.seed, step, Stage.TRAINING))
            x = dequantize(
                preprocess(source.images(ids), config.flow.n_bits), config.flow.n_bits, noise
            )
            glow.zero_grad(set_to_none=True)
            glow.bits_per_dim(x).mean().backward()
            for s, p in zip(squares, glow.parameters(), strict=True):
                s += p.grad.detach() ** 2 / args.moment_batches
        for s, p in zip(squares, glow.parameters(), strict=True):
            # Adam's state as after many steps: bias corrections ~1, v = E[g^2], m = 0
            optimizer.state[p] = {
                "step": torch.tensor(1e6), "exp_avg": torch.zeros_like(p), "exp_avg_sq": s,
            }  # fmt: skip
        glow.zero_grad(set_to_none=True)
        save_checkpoint(
            checkpoint, tool=TOOL, stage="train-glow", key=run_key(config=config.model_dump(mode="json")),
            step=done.steps, modules={"glow": glow}, optimizer=optimizer,
            state={"seconds": float(done.seconds)},
        )  # fmt: skip
    train_glow(config, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
