"""What a consumer reads from ``verify`` and ``train``: predictions that do not depend on how the
certificate was decided, outcomes explained in numbers, and a classifier trained to convergence.

The verification tests use a synthetic certified bundle on a known 2-class linear classifier
(class 1 iff the first coordinate is > 0), so p_A = Φ(|x| / σ) and which samples can certify is
known in advance; everything runs through :func:`lassi.consumer.verification.verify` with fixed
seeds, in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import CERT, HASH_A, HASH_B
from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.spec import (
    ClassifierCard,
    ClassifierTraining,
    ReportStatus,
    RepresentationBundle,
    write_artifact,
)
from lassi.spec.models import CenterStatus, ReportCause

SIGMA = 0.5
ALPHA = 0.001


def write_pair(folder: Path, x: np.ndarray, r_cs: np.ndarray, status=None) -> tuple[Path, Path]:
    """A certified bundle with z_CS = (x, 0) and a linear classifier logits = (-x, x) at sigma 0.5;
    labels are the true side of 0 except every 5th sample (so accuracy is not trivially 1)."""
    n = len(x)
    labels = (x > 0).astype(np.int64)
    labels[::5] = 1 - labels[::5]
    z_cs = np.stack([x, np.zeros(n)], axis=1).astype(np.float32)
    bundle = RepresentationBundle(
        tool="lassi-test 0", split="test", n_samples=n, k=2, label_names=["smile"],
        label_classes={"smile": 2}, certified=True, certificate=CERT, attributes=["Pale_Skin"],
        parents={"encoder": HASH_B, "similarity_spec": HASH_A},
    )  # fmt: skip
    status = np.zeros(n, np.uint8) if status is None else status
    write_artifact(folder / "bundle.safetensors", bundle, {
        "z": z_cs, "ids": np.arange(n, dtype=np.int64), "labels.smile": labels, "z_cs": z_cs,
        "r_cs": r_cs.astype(np.float32), "status": status,
        "center_shift": np.zeros(n, np.float32), "seconds": np.zeros(n, np.float32),
    })  # fmt: skip
    card = ClassifierCard(
        tool="lassi-test 0", k=2, sigma_cls=SIGMA, task="smile", classes=["no smile", "smile"],
        training=ClassifierTraining(epochs=1, batch_size=4, lr=1e-3, seed=0, n_train=10, seconds=1),
        parents={"representations": HASH_B, "encoder": HASH_B, "similarity_spec": HASH_A},
    )  # fmt: skip
    weight = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
    write_artifact(folder / "classifier.safetensors", card,
                   {"classifier.weight": weight, "classifier.bias": np.zeros(2, np.float32)})  # fmt: skip
    return folder / "classifier.safetensors", folder / "bundle.safetensors"


def mixed_samples() -> tuple[np.ndarray, np.ndarray]:
    """40 samples: far from the boundary with a small r_CS (certify), near it (PREDICT abstains
    or R is small), and with r_CS far above the largest reachable R (futility stops)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1.2, 1.2, 30), [0.0, 0.01, -0.01, 0.03], rng.uniform(0.6, 1, 6)])
    r_cs = np.concatenate([rng.uniform(0.05, 0.6, 34), np.full(6, 5.0)])
    return x, r_cs


def run_verify(classifier: Path, bundle: Path, out: Path, sequential: bool, **kwargs):
    from lassi.consumer.verification import verify

    return verify(classifier, bundle, out, n0=400, n=4000, alpha=ALPHA, seed=3, progress=False,
                  sequential=sequential, **kwargs)  # fmt: skip


def test_sequential_keeps_the_predictions_and_certifies_a_subset(tmp_path):
    x, r_cs = mixed_samples()
    classifier, bundle = write_pair(tmp_path, x, r_cs)
    fixed = run_verify(classifier, bundle, tmp_path / "fixed.safetensors", False)
    seq = run_verify(classifier, bundle, tmp_path / "seq.safetensors", True)
    # the same PREDICT on the same draws, whichever test decided R > r_CS
    np.testing.assert_array_equal(seq.tensors["prediction"], fixed.tensors["prediction"])
    assert seq.meta.summary.accuracy == fixed.meta.summary.accuracy
    assert seq.meta.summary.abstain_classifier == fixed.meta.summary.abstain_classifier
    # not trivial: some predictions abstain (x = 0), most are made, some certify
    predicted = fixed.tensors["prediction"] != ABSTAIN
    assert 0 < (~predicted).sum() <= 6 and fixed.meta.summary.accuracy > 0.5
    certified = {m: r.tensors["status"] == ReportStatus.CERTIFIED for m, r in
                 (("fixed", fixed), ("seq", seq))}  # fmt: skip
    assert certified["seq"].sum() >= 20
    # Subset-or-equal within α: the sequential run certifies no more samples than fixed-n, and a
    # sample only it certifies (a bound that cleared r_CS early, where fixed-n's bound at n draws
    # fell just short) must be truly fair; here R_true = |x| (p_A = Φ(|x| / σ)), and with α = 0.001
    # on 40 samples no certificate of either run may be wrong.
    assert certified["seq"].sum() <= certified["fixed"].sum()
    for run in ("fixed", "seq"):
        prediction = {"fixed": fixed, "seq": seq}[run].tensors["prediction"]
        wrong = certified[run] & ~((np.abs(x) > r_cs) & (prediction == (x > 0)))
        assert not wrong.any(), (run, np.flatnonzero(wrong))
    only_seq = certified["seq"] & ~certified["fixed"]
    assert only_seq.sum() <= 1 and (np.abs(x)[only_seq] > r_cs[only_seq]).all()
    assert seq.tensors["draws"].sum() < 0.8 * fixed.tensors["draws"].sum()
    # futility stops (r_CS = 5 is out of reach) are "not certified" with the prediction kept
    cause = seq.tensors["cause"]
    futile = cause == ReportCause.FUTILE
    assert futile[-6:].all()
    assert (seq.tensors["status"][futile] == ReportStatus.NOT_CERTIFIED).all()
    assert (seq.tensors["prediction"][futile] == 1).all()
    assert (seq.tensors["draws"][futile] < 4400).all()  # stopped early, unlike the fixed run
    assert (fixed.tensors["cause"][-6:] == ReportCause.R_NOT_ABOVE_R_CS).all()


def test_center_abstentions_and_causes_are_named_in_the_report(tmp_path):
    from lassi.consumer.report import report_sidecars

    x, r_cs = mixed_samples()
    status = np.zeros(len(x), np.uint8)
    status[:2] = CenterStatus.ABSTAIN_DELTA
    status[2] = CenterStatus.ABSTAIN_Q
    classifier, bundle = write_pair(tmp_path, x, r_cs, status)
    report = run_verify(classifier, bundle, tmp_path / "r.safetensors", False)
    cause = report.tensors["cause"]
    assert list(cause[:3]) == [ReportCause.CENTER_ABSTAINED_DELTA] * 2 + [ReportCause.CENTER_ABSTAINED_Q]
    assert (report.tensors["status"][:3] == ReportStatus.ABSTAIN_CENTER).all()
    import json

    rows = json.loads(report_sidecars(report.path)["json"].read_text())["samples"]
    assert rows[0]["cause"] == "center_abstained_delta" and rows[0]["status"] == "abstain_center"
    made = next(r for r in rows if r["prediction"] is not None)
    assert made["prediction_name"] in ("no smile", "smile")
    assert made["label_name"] == ["no smile", "smile"][made["label"]]
    text = report_sidecars(report.path)["md"].read_text()
    assert "classes 0 (no smile), 1 (smile)" in text
    assert "| center_abstained_q |" in text


def test_nothing_certified_says_why_in_numbers(tmp_path):
    """r_CS far above what sigma_cls 0.5 can reach: the needed sigma_cls, r_CS against the class
    distance and the causes, on stderr and in report.md."""
    from lassi.consumer.report import report_sidecars
    from lassi.consumer.verification import needed_sigma

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 12)
    r_cs = np.full(12, 4.0)  # the classes lie about 1 apart: r_CS 4 spans them
    classifier, bundle = write_pair(tmp_path, x, r_cs)
    seen: list[str] = []
    report = run_verify(classifier, bundle, tmp_path / "r.safetensors", False, warn=seen.append)
    assert report.meta.summary.certified_fairness == 0
    needed = needed_sigma(4.0, 4000, ALPHA)
    assert needed == pytest.approx(4.0 / 2.9225, rel=1e-3)  # Phi^-1(0.001^(1/4000)) = 2.92
    warnings = report.meta.warnings
    assert any(f"needs sigma_cls >= r_CS / Phi^-1(best p_A bound) = {needed:.4g}" in w for w in warnings)
    assert any("the encoder is not invariant along the similarity set" in w for w in warnings)
    assert any(w.startswith("not certified: ") and "R <= r_CS" in w for w in warnings)
    assert [w.removeprefix("warning: ") for w in seen] == warnings
    text = report_sidecars(report.path)["md"].read_text()
    assert "## Warnings" in text and f"= {needed:.4g}" in text


def test_needed_sigma_is_the_sigma_that_reaches_r_cs():
    from lassi.consumer.verification import largest_radius, needed_sigma

    for n, alpha, sequential in [(1000, 0.001, False), (100_000, 0.001, False), (2000, 0.01, True)]:
        sigma = needed_sigma(2.5, n, alpha, sequential)
        assert largest_radius(sigma, n, alpha, sequential) == pytest.approx(2.5)
    assert needed_sigma(1.0, 5, 0.001) is None  # 0.001^(1/5) < 1/2: only a larger n helps


def test_accuracy_at_the_majority_rate_is_flagged():
    from lassi.consumer.verification import outcome_warnings
    from lassi.spec.models import RepresentationScale

    causes = np.zeros(10, np.uint8)  # everything certified: only the accuracy warning
    warnings = outcome_warnings(causes, np.ones(10), RepresentationScale(), 1.0, 1000, 0.001,
                                accuracy=0.6, majority=("1 (smile)", 0.6))  # fmt: skip
    assert len(warnings) == 1
    assert "at or below the majority-class rate 60.0 % (always predicting 1 (smile))" in warnings[0]
    assert outcome_warnings(causes, np.ones(10), RepresentationScale(), 1.0, 1000, 0.001,
                            accuracy=0.61, majority=("1", 0.6)) == []  # fmt: skip
