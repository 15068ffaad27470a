"""Does the consumer's classifier (how long it trains) change Table 2's sibling outcomes?

    python experiments/consumer_probe.py --out runs/experiments-64-h256 --method baseline
        --sigma 5 [--epochs 1 25] [--seeds 0 1 2] [--threads 2]

For each seed's Table 2 run (authors' protocol, `run.py table2 ... --epochs 40 --keep last`, whose
encoder and bundles it reuses), trains the consumer's σ_cls classifier for each ``--epochs`` (1 is
Table 2's; the authors train one epoch on their correlated split, up to 224 000 images or ≈ 1750
steps of 128 if their train split were all of 3D Shapes, which 25 epochs of our 9000 training
representations match) and reports:

- the consumer's own verification of the 150 certified test samples (accuracy, certified fair);
- the 15 orientation siblings of each test sample read at their *plain* representations
  E_L(E_G(x_j)), without center smoothing: the head's argmax, and PREDICT (Cohen et al., 2019;
  n = 10⁴, α = 0.001) of the σ_cls-smoothed head. Wrong siblings, confusions, ground-truth unfair
  and abstentions as in `sibling_probe.py`.

The plain reading skips the siblings' center smoothing (the expensive part of the ground-truth
check), so it separates what the head and the representation do from what center smoothing adds.
Writes <out>/consumer-probe/<method>-sigma<S>.json and prints one JSON line per seed and epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import run
import torch
from ground_truth import probe_figures
from safetensors.torch import load_file, save
from sibling_probe import sibling_latents

from lassi.consumer.classifier import load_classifier
from lassi.consumer.randomized_smoothing import Smooth
from lassi.producer.base_function import load_encoder
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import read_artifact
from lassi.spec.io import atomic_write_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="experiments folder (one per Glow)")
    parser.add_argument("--method", default="baseline", choices=sorted(run.METHODS))
    parser.add_argument("--sigma", type=float, required=True, help="the consumer's sigma_cls")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suffix", default="-epochs40-keeplast", help="Table 2 run folder suffix")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run.OUT = args.out
    folder = args.out / run.PROTOCOLS["authors"]["folder"]
    spec = folder / "spec-orientation-pairs.safetensors"
    sim = SimilaritySet.load(spec)
    cache = args.out / "consumer-probe" / "siblings.safetensors"  # E_G of the siblings, all seeds
    stored = load_file(str(cache)) if cache.exists() else {}
    rows = []
    for seed in args.seeds:
        folder_run = folder / f"{args.method}-seed{seed}{args.suffix}"
        ids = np.asarray(read_artifact(folder_run / "test.safetensors").tensors["ids"])
        if "ids" not in stored or not np.array_equal(stored["ids"].numpy(), ids):
            factors, z_g = sibling_latents(sim, ids)
            stored = {
                "z": z_g.contiguous(),
                "factors": torch.from_numpy(factors),
                "ids": torch.from_numpy(ids),
            }
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, save(stored))
        factors, z_g = stored["factors"].numpy(), stored["z"]
        base, _, _ = load_encoder(folder_run / "encoder.safetensors", sim)
        with torch.no_grad():
            rep = base(z_g)
        for epochs in args.epochs:
            verified = run.consumer_run(
                spec, folder_run / "train.safetensors", folder_run / "test.safetensors", "object_hue",
                args.sigma, folder_run, seed, epochs=epochs,
            )  # fmt: skip
            model, _ = load_classifier(Path(verified["classifier"]))
            with torch.no_grad():
                plain = model(rep).argmax(1).numpy().reshape(factors.shape[:2])
            smooth = Smooth.for_linear_head(model, args.sigma)
            predicted = np.array(
                [smooth.predict(rep[i], 10_000, 0.001, seed, i) for i in range(len(rep))]
            ).reshape(factors.shape[:2])
            row = {"seed": seed, "epochs": epochs, "accuracy": verified["accuracy"],
                   "certified_fairness": verified["certified_fairness"]}  # fmt: skip
            for name, pred in (("argmax", plain), ("predict", predicted)):
                figures = probe_figures(pred, factors)
                row[name] = {k: figures[k] for k in (
                    "wrong_siblings", "confusions", "ground_truth_unfair", "sibling_abstain",
                    "sibling_accuracy",
                )}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = args.out / "consumer-probe" / f"{args.method}-sigma{args.sigma}.json"
    atomic_write_bytes(result, json.dumps(rows, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
