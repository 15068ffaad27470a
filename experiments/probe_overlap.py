"""Do sibling-probe encoders fail on the same real siblings? Overlap of their wrong siblings, the
probability-average ensemble, and the siblings most of them get wrong.

    python experiments/probe_overlap.py --glow GLOW NAME [NAME ...] [--out runs/experiments]
        [--protocol authors|authors-given-scale]

NAME: folders under <out>/sibling-probe/ written by sibling_probe.py or knob_probe.py, all on the
same Glow and the same 150 test samples. Prints one JSON object (and writes it to
<out>/sibling-probe/overlap.json): per encoder its wrong siblings, the pairwise overlaps, the union
and intersection, how many siblings k encoders get wrong, the ensemble's wrong siblings and
ground-truth unfair fraction, the factors of the siblings at least half the encoders get wrong, and
whether wrong predictions lean toward the background (wall, floor) hue, and, per encoder, each wrong
sibling: its test sample (position among the test samples and id), factors and predicted hue.
All NAMEs must have been trained on the spec of --protocol (the encoder's card names its spec).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import run
import torch
from run import PAIRS_PROTOCOLS, PROTOCOLS, data_config, protocol_spec
from sibling_probe import sibling_latents

from lassi.consumer.classifier import load_classifier
from lassi.producer.base_function import load_encoder
from lassi.producer.encode import select_ids
from lassi.regulator.data_config import make_source
from lassi.regulator.shapes3d import FACTOR_NAMES
from lassi.regulator.similarity import SimilaritySet
from lassi.spec.io import atomic_write_bytes

N_HUES = 10


def hue_step(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed shortest step from hue a to hue b on the circle of 10 hues (−4..5)."""
    d = (b - a) % N_HUES
    return np.where(d > N_HUES // 2, d - N_HUES, d)


def where(
    wrong: np.ndarray, pred: np.ndarray, flat: np.ndarray, ids: np.ndarray, per_sample: int
) -> list[dict]:
    """Each wrong sibling: its test sample (position among the test samples, id), factors, prediction."""
    return [
        {"sample": int(row // per_sample), "id": int(ids[row // per_sample]),
         **{name: int(flat[row, i]) for i, name in enumerate(FACTOR_NAMES)}, "predicted_hue": int(pred[row])}
        for row in np.flatnonzero(wrong)
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glow", type=Path, required=True)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--out", type=Path, default=run.OUT)
    parser.add_argument(
        "--protocol",
        choices=PAIRS_PROTOCOLS,
        default="authors",
        help="the Table 2 protocol whose spec the encoders were trained on",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    run.OUT = out = args.out
    protocol = PROTOCOLS[args.protocol]
    data = data_config(args.glow, protocol["correlate"])
    spec = protocol_spec(args.glow, args.protocol, out)
    sim = SimilaritySet.load(spec)
    ids = select_ids(make_source(data), "test", args.test, 1)
    factors, z_g = sibling_latents(sim, ids)
    flat = factors.reshape(-1, 6)
    hue = flat[:, FACTOR_NAMES.index("object_hue")]
    probs, wrong = {}, {}
    for name in args.names:
        folder = out / "sibling-probe" / name
        base, _, _ = load_encoder(folder / "encoder.safetensors", sim)
        model, _ = load_classifier(folder / "classifier.safetensors")
        with torch.no_grad():
            probs[name] = model(base(z_g)).softmax(1).numpy()
        wrong[name] = probs[name].argmax(1) != hue
    counts = np.sum(list(wrong.values()), axis=0)
    ensemble = np.mean(list(probs.values()), axis=0).argmax(1)
    hard = np.flatnonzero(counts >= (len(args.names) + 1) // 2)
    toward = {}
    for background in ("wall_hue", "floor_hue"):
        column = flat[:, FACTOR_NAMES.index(background)]
        tally: Counter[str] = Counter()
        for name in args.names:
            rows = np.flatnonzero(wrong[name])
            step = hue_step(hue[rows], probs[name][rows].argmax(1))
            to_background = hue_step(hue[rows], column[rows])
            for s, b in zip(step, to_background, strict=True):
                tally[
                    "same hue" if b == 0 else "toward" if np.sign(s) == np.sign(b) else "away"
                ] += 1
        toward[background] = dict(tally)
    result = {
        "glow": str(args.glow),
        "wrong_siblings": {n: int(w.sum()) for n, w in wrong.items()},
        "overlap": {
            n: {m: int((wrong[n] & wrong[m]).sum()) for m in args.names} for n in args.names
        },
        "union": int((counts > 0).sum()),
        "intersection": int((counts == len(args.names)).sum()),
        "wrong_in_k_encoders": {k: int((counts == k).sum()) for k in range(1, len(args.names) + 1)},
        "ensemble_wrong_siblings": int((ensemble != hue).sum()),
        "ensemble_ground_truth_unfair": float(
            (ensemble != hue).reshape(factors.shape[:2]).any(1).mean()
        ),
        "hard_siblings": len(hard),
        "hard_samples": len(set((hard // factors.shape[1]).tolist())),
        "hard_per_factor": {
            name: dict(Counter(flat[hard, i].tolist()).most_common())
            for i, name in enumerate(FACTOR_NAMES)
        },
        "errors_vs_background_hue": toward,
        "wrong_where": {
            n: where(w, probs[n].argmax(1), flat, ids, factors.shape[1]) for n, w in wrong.items()
        },
    }
    atomic_write_bytes(
        out / "sibling-probe" / "overlap.json", json.dumps(result, indent=1).encode()
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
