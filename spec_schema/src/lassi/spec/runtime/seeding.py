"""Per-sample random streams.

A certificate must not depend on which batch, process or machine computed it, and the draws of
different stages (selection, abstain test, estimation) must be independent. Every stream is
therefore derived from ``(seed, sample_id, stage)`` alone with numpy's ``SeedSequence``, which
hashes the entropy words into well-mixed state on every platform.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stage(IntEnum):
    """The independent draw stages of the two smoothing procedures."""

    SELECTION = 0  # center smoothing step 1 / randomized smoothing n0 draws
    ABSTAIN_TEST = 1  # center smoothing step 2
    ESTIMATION = 2  # center smoothing step 4 / randomized smoothing n draws
    TRAINING = 3  # noise augmentation, adversarial sampling


def _check(seed: int, sample_id: int) -> None:
    if seed < 0 or sample_id < 0:
        raise ValueError(f"seed and sample id must be non-negative (got {seed}, {sample_id})")


def seed_sequence(
    seed: int, sample_id: int, stage: Stage | int, purpose: int = 0
) -> np.random.SeedSequence:
    """The SeedSequence of one sample's stage; the root of every per-sample stream.

    ``purpose`` separates several streams of the same stage (e.g. batch order and attack
    draws during training); purpose 0 leaves the entropy words as they are.
    """
    _check(int(seed), int(sample_id))
    words = [int(seed), int(sample_id), int(stage)] + ([int(purpose)] if purpose else [])
    return np.random.SeedSequence(words)


def numpy_rng(
    seed: int, sample_id: int, stage: Stage | int, purpose: int = 0
) -> np.random.Generator:
    """A numpy Generator (PCG64) for one sample's stage: identical on every machine."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, sample_id, stage, purpose)))


def torch_seed(seed: int, sample_id: int, stage: Stage | int, purpose: int = 0) -> int:
    """A 63-bit integer seed for ``torch.Generator.manual_seed`` of one sample's stage."""
    state = seed_sequence(seed, sample_id, stage, purpose).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)
