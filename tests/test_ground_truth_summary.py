"""Table 2's ground-truth figures from sibling predictions (experiments/ground_truth.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from ground_truth import summarise  # noqa: E402


def test_any_sibling_certified_but_unfair_follows_the_authors_definition() -> None:
    factors = np.zeros((4, 15, 6), dtype=np.int64)
    factors[..., 2] = 3  # object hue 3 everywhere
    factors[..., 3] = np.array([0, 0, 7, 7])[:, None]  # object scale per sample
    predictions = np.full((4, 15), 3)
    predictions[1, 4] = 2  # sample 1: one sibling differs
    predictions[2, 0] = -1  # sample 2: an abstention is an outcome of its own
    sibling_certified = np.zeros((4, 15), dtype=bool)
    sibling_certified[1, 9] = True  # a *different* sibling of sample 1 is certified
    sibling_certified[3] = True  # sample 3: all certified, all the same
    sample_certified = np.array([True, False, True, True])
    r = summarise(predictions, sample_certified, factors, sibling_certified)
    assert r["ground_truth_unfair"] == 0.5
    assert r["certified_but_ground_truth_unfair"] == 0.25  # sample 2 only
    assert r["any_certified_but_unfair"] == 0.25  # sample 1 only
    assert r["any_sibling_certified"] == 0.5 and r["all_siblings_certified"] == 0.25
    assert r["sibling_accuracy_per_scale"] == {0: 29 / 30, 7: 29 / 30}
    assert "any_certified_but_unfair" not in summarise(predictions, sample_certified, factors)
