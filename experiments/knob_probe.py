"""The sibling probe (experiments/sibling_probe.py) with one more producer-side training variant:
diagnostics of what moves the representation's per-image errors on the real orientation siblings.

    python experiments/knob_probe.py --standardise | --oversample-small C | --latent-noise S
        --name NAME  [sibling_probe.py's options: --glow GLOW --seed 0 ...]

- ``--standardise``: the encoder's first Linear reads each latent coordinate divided by its standard
  deviation over the producer's training latents (the Glow's coordinates range over a factor of
  about 50 in scale); trained as W = V / s and written folded (the encoder file is an ordinary
  latent MLP).
- ``--oversample-small C``: the smallest object scale appears C times in the training split
  (C − 1 extra copies of those images; more steps per epoch).
- ``--latent-noise S``: during training only, the encoder's input gets N(0, (S · s_d)²) per latent
  coordinate d (s_d as for ``--standardise``); evaluation and certification are noise-free.

None of these is in the library: none moved the errors (docs/results.md, "Producer-side probes").
The variants are applied only while the encoder trains, by patching the library's functions within
a ``with`` block.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import sibling_probe
import torch
import torch.nn.utils.parametrize as parametrize
from torch import Tensor, nn

import lassi.producer.training as training
from lassi.producer.encoders import LatentMLP
from lassi.producer.latents import glow_latents
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.datasets import Shapes3DSource
from lassi.regulator.similarity import SimilaritySet


def latent_std(sim: SimilaritySet, data: DatasetConfig, cache: Path) -> Tensor:
    """Per-coordinate standard deviation of the producer's training latents [D] (from the cache
    that encoder training fills and reads)."""
    source = make_source(data)
    z = glow_latents(sim, source, data, source.split_ids("train"), cache, progress=False)
    return z.std(0).clamp_min(1e-3)


class ColumnScale(nn.Module):
    """The parametrisation W = V · diag(1/s) of the first Linear's weight."""

    def __init__(self, s: Tensor) -> None:
        super().__init__()
        self.register_buffer("inv", 1.0 / s)

    def forward(self, v: Tensor) -> Tensor:
        return v * self.inv


def _folded_tensors(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """training.module_tensors of a copy with every parametrisation folded into its weight."""
    module = copy.deepcopy(module)
    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return ORIGINAL_MODULE_TENSORS(module, prefix)


ORIGINAL_MODULE_TENSORS = training.module_tensors
ORIGINAL_BUILD = training.build_base_function
ORIGINAL_SPLIT_IDS = Shapes3DSource.split_ids
ORIGINAL_FORWARD = LatentMLP.forward


def standardise(
    sim: SimilaritySet, data: DatasetConfig, cache: Path
) -> contextlib.AbstractContextManager:
    s = latent_std(sim, data, cache)

    def build(config, spec):
        base = ORIGINAL_BUILD(config, spec)
        parametrize.register_parametrization(base.encoder.net[0], "weight", ColumnScale(s))
        return base

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(training, "build_base_function", build))
    stack.enter_context(mock.patch.object(training, "module_tensors", _folded_tensors))
    return stack


def oversample_small(copies: int):
    def variant(
        sim: SimilaritySet, data: DatasetConfig, cache: Path
    ) -> contextlib.AbstractContextManager:
        def split_ids(self: Shapes3DSource, split: str) -> np.ndarray:
            ids = ORIGINAL_SPLIT_IDS(self, split)
            if split != "train":
                return ids
            small = ids[self.attributes(ids)["scale"] == 0]
            return np.concatenate([ids] + [small] * (copies - 1))

        return mock.patch.object(Shapes3DSource, "split_ids", split_ids)

    return variant


def latent_noise(scale: float):
    def variant(
        sim: SimilaritySet, data: DatasetConfig, cache: Path
    ) -> contextlib.AbstractContextManager:
        s = latent_std(sim, data, cache)

        def forward(self: LatentMLP, z: Tensor) -> Tensor:
            z = z.flatten(1)
            if self.training:  # the global generator, seeded by training (torch.manual_seed(seed))
                z = z + scale * s.to(z) * torch.randn_like(z)
            return self.net(z)

        return mock.patch.object(LatentMLP, "forward", forward)

    return variant


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Other options: those of sibling_probe.py."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--standardise", action="store_true")
    group.add_argument("--oversample-small", type=int, metavar="C")
    group.add_argument("--latent-noise", type=float, metavar="S")
    args, rest = parser.parse_known_args()
    if args.standardise:
        variant = standardise
    elif args.oversample_small is not None:
        if args.oversample_small < 2:
            parser.error("--oversample-small must be at least 2")
        variant = oversample_small(args.oversample_small)
    else:
        if not args.latent_noise > 0:
            parser.error("--latent-noise must be positive")
        variant = latent_noise(args.latent_noise)
    return sibling_probe.main(rest, variant=variant)


if __name__ == "__main__":
    sys.exit(main())
