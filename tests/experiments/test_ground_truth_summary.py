"""Table 2's ground-truth figures from sibling predictions (lassi.experiments.ground_truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lassi.experiments.ground_truth import probe_figures, summarise


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
    # the breakdown: sample 2 is unfair only through its abstention, sample 1 through a class
    assert r["ground_truth_unfair_classes"] == 0.25 and r["sibling_abstain"] == 1 / 60


def test_probe_figures_count_wrong_siblings_and_their_confusions() -> None:
    factors = np.zeros((2, 15, 6), dtype=np.int64)
    factors[0, :, 2], factors[1, :, 2] = 1, 8  # object hue per sample
    predictions = factors[..., 2].copy()
    predictions[0, [2, 5, 11]] = 2  # three siblings of hue 1 read as 2
    predictions[1, 0] = 9  # one of hue 8 as 9
    r = probe_figures(predictions, factors)
    assert r["wrong_siblings"] == 4
    assert list(r["confusions"].items()) == [("1->2", 3), ("8->9", 1)]  # most frequent first
    assert r["ground_truth_unfair"] == 1.0 and r["sibling_accuracy"] == 26 / 30
    assert not any("certified" in key for key in r)


def test_sibling_errors_are_split_by_what_the_correlated_split_shows() -> None:
    """hue 0-4 is seen only with orientation 0-6 and hue 5-9 with 8-14; orientation 7 in neither."""
    factors = np.zeros((2, 15, 6), dtype=np.int64)
    factors[..., 5] = np.arange(15)  # the 15 orientation siblings
    factors[0, :, 2], factors[1, :, 2] = 2, 7  # a low-hue and a high-hue sample
    predictions = factors[..., 2].copy()
    predictions[0, 10] = 3  # low hue at orientation 10: an unseen pair, wrong
    predictions[1, 3] = -1  # abstention: neither right nor wrong
    predictions[1, 12] = 6  # high hue at orientation 12: a seen pair, wrong
    predictions[0, 7] = 9  # orientation 7 counts in neither group
    r = summarise(predictions, np.array([True, True]), factors)
    assert r["sibling_error_unseen_pairs"] == 1 / 13  # 7 + 6 unseen siblings, one abstained
    assert r["sibling_error_seen_pairs"] == 1 / 14


@pytest.mark.slow
def test_an_experiments_folder_refuses_another_glows_spec(chain, tmp_path: Path) -> None:
    """Every run in an experiments folder is bound to the folder's spec: a second --glow must not
    silently reuse the first Glow's spec (and so its Glow), it gets a one-line error instead."""
    import shutil

    import pytest
    import torch

    from factories import DATA, run
    from lassi.experiments import load_settings
    from lassi.experiments.workspace import Workspace
    from lassi.regulator.cli import main as regulator
    from lassi.spec import UsageError

    spec_for = Workspace(out=tmp_path, device=torch.device("cpu"), settings=load_settings()).spec_for

    folder = tmp_path / "table2"
    folder.mkdir()
    shutil.copy(chain["spec"], folder / "spec-orientation.safetensors")
    with pytest.raises(UsageError, match="vectors \\['pairs'\\].*--out"):  # this Glow's, other settings
        spec_for(chain["glow"], ["orientation"], folder)
    other = tmp_path / "other-glow.safetensors"
    run(regulator, ["train-glow", *DATA, "--levels", "2", "--depth", "2", "--hidden", "16", "--steps", "2",
                    "--batch-size", "16", "--warmup", "1", "--seed", "1", "--quiet", "--out", str(other)])  # fmt: skip
    with pytest.raises(UsageError, match="another Glow.*--out"):
        spec_for(other, ["orientation"], folder)
