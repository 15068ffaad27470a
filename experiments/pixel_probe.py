"""A diagnostic for Table 2's remaining misses: are the per-image errors on the real orientation
siblings a property of the data (small objects at this image size) or of the representation's
input (the Glow latent)?

    python experiments/pixel_probe.py --glow GLOW [--seed 0] [--model cnn|mlp] [--epochs 40]
        [--n-bits 8] [--input pixels|latent] [--split correlated|plain]

Trains a plain classifier of object hue *on pixels* (no Glow, no fairness terms, no smoothing) on
the same fully correlated producer split that Table 2's encoders train on, and measures it on the
same 150 test samples' 15 siblings as ``sibling_probe.py`` does (wrong siblings, sibling accuracy
per object scale, ground-truth unfair). ``--model cnn`` is a small convolutional network (three
stride-2 3x3 convolutions, 32-64-128 channels, global average pooling), ``--model mlp`` the
encoder's MLP shape (1024-512) on the flattened pixels. The Glow is read only for the data
configuration (image size, splits), so the samples are exactly Table 2's. ``--n-bits n`` feeds
the pixels quantised as the Glow's preprocessing does (floor(x / 2^(8-n)) / 2^n - 0.5; the Glow
sees 5 bits), so the probe can tell what the quantisation alone removes; 8 keeps every level.

``--input latent`` feeds the same MLP the Glow latent E_G(x) instead (12 288 numbers at 64×64, as
the pixels; through the regulator's pairs spec of Table 2, cached like the encoders' latents), and
``--split plain`` trains on the Glow's own *uncorrelated* train split (every hue at every
orientation) instead of the correlated one, leaving out every image that is one of the 150 test
samples' siblings. Together they ask whether the latent MLP can read a sibling's hue when the
training data shows that hue at that orientation: if it still errs, the latent of that image is
the obstacle, not generalisation from the correlated split.

Not a fair encoder and not part of the pipeline: a classifier on pixels cannot be center-smoothed
along the latent similarity set. It says whether an input with the data's full spatial structure
avoids the errors that the latent MLP makes on hue-orientation pairs the split never shows.

Writes <--out, default runs/experiments>/pixel-probe/<name>.json and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import run
import torch
from ground_truth import _siblings, probe_figures
from run import PROTOCOLS, data_config, regulator_data, spec_for
from torch import nn

from lassi.producer.encode import select_ids
from lassi.producer.latents import glow_latents
from lassi.regulator.data_config import make_source
from lassi.regulator.glow import preprocess
from lassi.regulator.shapes3d import Shapes3D
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.io import atomic_write_bytes

TASK = "object_hue"


def model_for(kind: str, size: int, classes: int) -> nn.Module:
    """The probe's classifier on [N, 3, size, size] images in [-0.5, 0.5]."""
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes),
        )  # fmt: skip
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * size * size, 1024), nn.ReLU(),
        nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, classes),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glow", type=Path, required=True, help="only for the data configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--n-bits", type=int, default=8, help="quantise as the Glow does (5: what the Glow sees)"
    )
    parser.add_argument("--input", choices=["pixels", "latent"], default="pixels")
    parser.add_argument("--split", choices=["correlated", "plain"], default="correlated")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=run.OUT, help="experiments folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.input == "latent" and (args.model != "mlp" or args.n_bits != 8):
        parser.error("--input latent reads the Glow latent with --model mlp (no --n-bits)")
    data = data_config(args.glow, PROTOCOLS["authors"]["correlate"])  # Table 2's test samples
    source = make_source(data)
    ids = select_ids(source, "test", args.test, 1)  # the samples Table 2 certifies
    factors = np.stack([_siblings(int(i))[0] for i in ids])  # [N, 15, 6]
    train_data = data if args.split == "correlated" else regulator_data(args.glow)
    train_source = make_source(train_data)
    train_ids = train_source.split_ids("train")
    if args.split == "plain":  # none of the evaluated siblings is seen in training
        train_ids = train_ids[
            ~np.isin(train_ids, Shapes3D.factors_to_index(factors.reshape(-1, 6)))
        ]
    sim = None
    if args.input == "latent":
        spec = spec_for(
            args.glow,
            ["orientation"],
            args.out / PROTOCOLS["authors"]["folder"],
            PROTOCOLS["authors"]["vectors"],
        )
        sim = SimilaritySet.load(spec)
        x = glow_latents(sim, train_source, train_data, train_ids, args.out / ".cache")
    else:
        x = preprocess(train_source.images(train_ids), args.n_bits)
    y = torch.from_numpy(train_source.attributes(train_ids)[TASK].astype(np.int64))

    torch.manual_seed(args.seed)
    model = model_for(args.model, data.image_size, source.num_classes(TASK))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), args.batch_size):
            idx = order[start : start + args.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        images = Shapes3D(data.image_size).render(factors.reshape(-1, 6))
        inputs = preprocess(images, args.n_bits) if sim is None else sim.encode_images(images)
        pred = model(inputs).argmax(1).numpy().reshape(factors.shape[:2])
        train_accuracy = float((model(x).argmax(1) == y).float().mean())
    name = (
        f"{args.model}-seed{args.seed}-epochs{args.epochs}"
        + ("" if args.n_bits == 8 else f"-bits{args.n_bits}")
        + ("" if args.input == "pixels" else "-latent")
        + ("" if args.split == "correlated" else "-plain")
    )
    result = {
        "name": name,
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_images": len(train_ids),
        "train_accuracy": train_accuracy,
        "seconds": seconds,
    } | probe_figures(pred, factors)
    folder = args.out / "pixel-probe"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{name}.json", json.dumps(result, indent=1).encode())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
