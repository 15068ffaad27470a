"""A regulator-side diagnostic for Table 2's last misses: would attribute vectors *conditional on
the object* (its scale, or its shape and scale) cover the real orientation siblings better than
the 49 pair vectors, and does an encoder trained against such a set read the siblings right?

    python experiments/conditional_probe.py --glow GLOW --by scale|shape-scale [--train]
        [sibling_probe.py's options with --train: --seed 0 --epochs 40 --threads 2 ...]

The authors' set (paper Sec. 4.1, their all-pairs vectors) moves every image along the same
directions a_{b,e} = mean E_G(x | orientation e) − mean E_G(x | orientation b), averaged over all
objects; a large object's latent move dominates those means. This probe adds one high-minus-low
vector per object group g (the 8 scales, or the 32 shape × scale combinations),

    a_g = mean E_G(x | group g, orientation 8..14) − mean E_G(x | group g, orientation 0..6),

computed over the regulator's plain (uncorrelated) train split without the 150 test samples'
siblings (the same 9 964 images as ``pixel_probe.py --split plain``; their latents come from that
probe's cache), and keeps ε = 1 over all m = 49 + |groups| coefficients.

1. Coverage (always): for the 150 test samples of Table 2 and their siblings ≥ 20° away, the best
   t with ||t|| ≤ ε (the library's ball-constrained least squares) and the relative latent residual
   ||d − tA|| / ||d|| for the pairs set and for the extended set: mean, per object scale, and per
   test sample, with the rank of the samples named by ``--watch`` (default 131, the sample whose
   siblings every LASSI seed at 64×64 misreads).
2. ``--train``: the sibling probe (``sibling_probe.py``) with the extended set as the encoder's
   training attack set (only while it trains; the probe itself is unsmoothed, and no spec is
   written: a regulator would publish such a set as its spec).

Writes <--out>/conditional-probe/<by>.json (and the sibling probe's folder with --train) and
prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import run
import sibling_probe
import torch
from ground_truth import _siblings
from run import PROTOCOLS, data_config, protocol_spec, regulator_data

from lassi.producer.encode import select_ids
from lassi.producer.latents import glow_latents
from lassi.regulator.attributes import ValueMeans
from lassi.regulator.coverage import COVERAGE_MIN_ANGLE, ball_least_squares
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.shapes3d import ORIENTATIONS, Shapes3D
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.io import atomic_write_bytes

SCALE, SHAPE, ORIENTATION = 3, 4, 5  # factor columns


def group_of(factors: np.ndarray, by: str) -> np.ndarray:
    """The object group of each factor row: its scale (8), or shape × scale (32)."""
    return factors[:, SCALE] if by == "scale" else factors[:, SHAPE] * 8 + factors[:, SCALE]


def conditional_vectors(z: np.ndarray, factors: np.ndarray, by: str) -> np.ndarray:
    """[G, D] per group: mean latent at orientations 8..14 − mean latent at 0..6 (the library's
    ``define --condition-on`` vectors, here over cached latents and possibly shape × scale)."""
    stats = ValueMeans.of_latents(
        "orientation", z, factors[:, ORIENTATION], len(ORIENTATIONS), by, group_of(factors, by),
        8 if by == "scale" else 32,
    )  # fmt: skip
    return stats.conditional()[0]


def residuals(
    vectors: np.ndarray, z_sib: np.ndarray, own: np.ndarray, epsilon: float
) -> np.ndarray:
    """[N, 15] relative latent residual ||d − t*A|| / ||d|| of each sibling ≥ 20° away from its
    test sample (orientation ``own[i]``) under the set's best t; NaN for the nearer ones."""
    a = vectors.astype(np.float64)
    out = np.full(z_sib.shape[:2], np.nan)
    for i, o in enumerate(own):
        far = np.flatnonzero(np.abs(ORIENTATIONS - ORIENTATIONS[o]) >= COVERAGE_MIN_ANGLE - 1e-6)
        d = z_sib[i, far].astype(np.float64) - z_sib[i, o].astype(np.float64)[None]
        t, _ = ball_least_squares(a, d, epsilon)
        out[i, far] = np.linalg.norm(d - t @ a, axis=1) / np.linalg.norm(d, axis=1)
    return out


def summary(res: np.ndarray, factors: np.ndarray, watch: list[int]) -> dict:
    """Mean residual, per object scale, and each watched sample's mean residual and rank (1 = the
    worst covered of the N samples)."""
    per_sample = np.nanmean(res, axis=1)
    rank = (-per_sample).argsort().argsort() + 1
    scales = factors[:, 0, SCALE]
    return {
        "latent_residual": float(np.nanmean(res)),
        "per_scale": {int(s): float(np.nanmean(res[scales == s])) for s in np.unique(scales)},
        "watch": {
            int(w): {
                "residual": float(per_sample[w]),
                "rank": int(rank[w]),
                "per_orientation": [None if np.isnan(r) else round(float(r), 4) for r in res[w]],
            }
            for w in watch
        },
    }


def plain_latents(
    sim: SimilaritySet, glow: Path, siblings: np.ndarray, cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """E_G(x) [N, D] and factors [N, 6] of the regulator's plain train split without the given
    siblings' images (``pixel_probe.py --split plain``'s images, from the same cache)."""
    data = regulator_data(glow)
    source = make_source(data)
    ids = source.split_ids("train")
    ids = ids[~np.isin(ids, Shapes3D.factors_to_index(siblings.reshape(-1, 6)))]
    z = glow_latents(sim, source, data, ids, cache, desc="glow latents (plain train)")
    return z.numpy(), Shapes3D.index_to_factors(ids)


def extended_set(extra: torch.Tensor):
    """A sibling-probe training variant: the spec's vectors with ``extra`` appended while the
    encoder trains (the attack then samples the (49 + G)-dimensional ε-ball)."""

    def variant(
        sim: SimilaritySet, data: DatasetConfig, cache: Path
    ) -> contextlib.AbstractContextManager:
        vectors = torch.cat([sim.vectors, extra.to(sim.vectors)])
        return mock.patch.object(sim, "vectors", vectors)

    return variant


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="With --train, also sibling_probe.py's options.",
    )
    parser.add_argument("--glow", type=Path, required=True)
    parser.add_argument("--by", choices=["scale", "shape-scale"], required=True)
    parser.add_argument(
        "--train", action="store_true", help="then run the sibling probe on the set"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sibling probe's (with --train)")
    parser.add_argument("--watch", type=int, nargs="+", default=[131])
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument(
        "--out", type=Path, default=run.OUT, help="experiments folder (one per Glow)"
    )
    args, rest = parser.parse_known_args()
    protocol = PROTOCOLS["authors"]
    spec = protocol_spec(args.glow, "authors", args.out)
    sim = SimilaritySet.load(spec)
    cache = args.out / ".cache"
    ids = select_ids(
        make_source(data_config(args.glow, protocol["correlate"])), "test", args.test, 1
    )
    factors = np.stack([_siblings(int(i))[0] for i in ids])  # [N, 15, 6], Table 2's samples
    own = Shapes3D.index_to_factors(ids)[:, ORIENTATION]
    z_plain, f_plain = plain_latents(sim, args.glow, factors, cache)
    extra = conditional_vectors(z_plain, f_plain, args.by)
    del z_plain
    _, z_sib = sibling_probe.sibling_latents(sim, ids)
    z_sib = z_sib.numpy().reshape(*factors.shape[:2], -1)
    pairs = sim.vectors.numpy()
    result = {
        "by": args.by,
        "m": {"pairs": len(pairs), "extended": len(pairs) + len(extra)},
        "norms": {
            "pairs_median": float(np.median(np.linalg.norm(pairs, axis=1))),
            "extra_median": float(np.median(np.linalg.norm(extra, axis=1))),
        },
        "pairs": summary(residuals(pairs, z_sib, own, sim.epsilon), factors, args.watch),
        "extended": summary(
            residuals(np.concatenate([pairs, extra]), z_sib, own, sim.epsilon), factors, args.watch
        ),
    }
    folder = args.out / "conditional-probe"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{args.by}.json", json.dumps(result, indent=1).encode())
    print(json.dumps(result))
    if not args.train:
        return 0
    variant = extended_set(torch.from_numpy(extra.astype(np.float32)))
    name = [] if "--name" in rest else ["--name", f"conditional-{args.by}-seed{args.seed}"]
    argv = ["--glow", str(args.glow), "--out", str(args.out), "--seed", str(args.seed), *name]
    return sibling_probe.main(argv + rest, variant)


if __name__ == "__main__":
    sys.exit(main())
