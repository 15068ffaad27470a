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
from click.testing import CliRunner

from factories import CERT, HASH_A, HASH_B, RecordingBar
from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.spec import (
    ClassifierCard,
    ClassifierTraining,
    ReportStatus,
    RepresentationBundle,
    read_artifact,
    write_artifact,
)
from lassi.spec.contract.models import CenterStatus, ReportCause

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
        training=ClassifierTraining(epochs=1, batch_size=4, lr=1e-3, seed=0, n_train=10, seconds=1,
                                    majority_rate=0.5),
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

    kwargs.setdefault("progress", False)
    return verify(classifier, bundle, out, n0=400, n=4000, alpha=ALPHA, seed=3,
                  sequential=sequential, **kwargs)  # fmt: skip


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    from lassi.spec.contract.models import RepresentationScale

    causes = np.zeros(10, np.uint8)  # everything certified: only the accuracy warning
    warnings = outcome_warnings(causes, np.ones(10), RepresentationScale(), 1.0, 1000, 0.001,
                                accuracy=0.6, majority=("1 (smile)", 0.6))  # fmt: skip
    assert len(warnings) == 1
    assert "at or below the majority-class rate 60.0 % (always predicting 1 (smile))" in warnings[0]
    assert outcome_warnings(causes, np.ones(10), RepresentationScale(), 1.0, 1000, 0.001,
                            accuracy=0.61, majority=("1", 0.6)) == []  # fmt: skip


# ------------------------------------------------------------------------------ training C_L


def write_plain(path: Path, n: int, seed: int, informative: bool = True, positive: float = 0.5) -> Path:
    """A plain bundle (k = 2) from the same encoder and spec as :func:`write_pair`'s; labels are
    the side of the first coordinate, 10 % flipped (informative), or independent of z with
    P(1) = ``positive``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)).astype(np.float32)
    labels = (z[:, 0] > 0) ^ (rng.random(n) < 0.1) if informative else (rng.random(n) < positive)
    meta = RepresentationBundle(
        tool="lassi-test 0", split="train", n_samples=n, k=2, label_names=["smile"],
        label_classes={"smile": 2}, attributes=["Pale_Skin"],
        parents={"encoder": HASH_B, "similarity_spec": HASH_A},
    )  # fmt: skip
    write_artifact(path, meta, {"z": z, "ids": np.arange(n, dtype=np.int64),
                                "labels.smile": labels.astype(np.int64)})  # fmt: skip
    return path


def train_cli(*args) -> object:
    from lassi.consumer.cli import main

    return CliRunner().invoke(main, ["train", *[str(a) for a in args]])


@pytest.mark.slow
def test_default_training_converges_with_early_stopping_and_is_deterministic(tmp_path):
    from lassi.consumer.classifier import AUTO_MAX_EPOCHS, auto_epochs, auto_patience

    bundle = write_plain(tmp_path / "train.safetensors", 400, 0)
    cards = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        result = train_cli("--bundle", bundle, "--task", "smile", "--sigma", "0.25", "--lr", "0.05",
                           "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        cards.append(read_artifact(out, expect=ClassifierCard))
    t = cards[0].meta.training
    assert auto_epochs(360, 128) == AUTO_MAX_EPOCHS == t.max_epochs  # 3 steps an epoch
    assert auto_patience(360, 128) == 34
    assert t.best_epoch is not None and t.epochs == t.best_epoch + 34 < t.max_epochs
    assert t.val_accuracy_noisy > 0.8 > t.majority_rate  # far above the 1-epoch default's
    assert f"trained C_L for {t.epochs} epochs (early stop; kept epoch {t.best_epoch}" in result.output
    assert "majority-class rate" in result.output and "warning" not in result.output
    for name, array in cards[0].tensors.items():  # deterministic given the seed
        np.testing.assert_array_equal(array, cards[1].tensors[name])
    assert cards[1].meta.training.model_copy(update={"seconds": t.seconds}) == t
    # --epochs N trains exactly N epochs (no early stopping)
    out = tmp_path / "c.safetensors"
    assert train_cli("--bundle", bundle, "--task", "smile", "--epochs", "3", "--quiet",
                     "--out", out).exit_code == 0  # fmt: skip
    fixed = read_artifact(out, expect=ClassifierCard).meta.training
    assert (fixed.epochs, fixed.max_epochs, fixed.best_epoch) == (3, 3, None)


@pytest.mark.slow
def test_accuracy_at_or_below_the_majority_class_is_warned(tmp_path):
    bundle = write_plain(tmp_path / "train.safetensors", 300, 1, informative=False, positive=0.75)
    out = tmp_path / "c.safetensors"
    result = train_cli("--bundle", bundle, "--task", "smile", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    card = read_artifact(out, expect=ClassifierCard).meta
    assert card.training.val_accuracy_noisy <= card.training.majority_rate
    assert "is at or below the majority-class rate" in result.stderr
    assert "(always predicting class 1)" in result.stderr


@pytest.mark.slow
def test_sigma_auto_reports_one_accuracy_and_flags_an_all_zero_sweep(tmp_path):
    """A validation bundle whose r_CS no sigma of the grid can reach: the choice says it was
    made on accuracy only, the verification's warnings say why, and the only accuracy printed
    for the chosen sigma is its table row's."""
    bundle = write_plain(tmp_path / "train.safetensors", 300, 2)
    x = np.random.default_rng(3).uniform(-1, 1, 10)
    _, val = write_pair(tmp_path, x, np.full(10, 50.0))
    out = tmp_path / "auto.safetensors"
    result = train_cli("--bundle", bundle, "--task", "smile", "--sigma", "auto", "--sigma-grid",
                       "0.25,1", "--lr", "0.05", "--val-bundle", val, "--sweep-n0", "50", "--sweep-n", "200",
                       "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    card = read_artifact(out, expect=ClassifierCard).meta
    selection = card.sigma_selection
    assert selection.method == "nothing_certified"
    assert all(row.certified_fairness == 0 for row in selection.rows)
    chosen = next(row for row in selection.rows if row.sigma == card.sigma_cls)
    figure = f"{100 * chosen.accuracy:.1f} %"
    assert "| sigma_cls | smoothed accuracy on --val-bundle |" in result.output
    assert (f"chose sigma_cls = {card.sigma_cls:g} on accuracy only (the largest sigma within "
            f"2 accuracy points of the best, smoothed accuracy on --val-bundle {figure}): no sigma of "
            "the grid certified any sample") in result.output  # fmt: skip
    assert "(certified)" not in result.output and "validation accuracy" not in result.output
    assert "needs sigma_cls >= r_CS / Phi^-1(best p_A bound)" in result.stderr
    assert f"(sigma_cls = {card.sigma_cls:g})" in result.stderr


# ------------------------------------------------------------------- the smaller items (#39)

REFUSED = ("exists already (the output of an earlier run); refusing to overwrite it: delete it "
           "or choose another output name")


@pytest.mark.parametrize(
    ("role", "args"),
    [
        ("regulator", ["train-glow", "--image-size", "16", "--n-train", "40", "--steps", "1"]),
        ("consumer", ["train", "--bundle", "b.safetensors", "--task", "smile"]),
        ("consumer", ["verify", "--classifier", "c.safetensors", "--bundle", "b.safetensors"]),
        ("producer", ["encode", "--spec", "s.safetensors", "--encoder", "e.safetensors"]),
    ],
)
def test_a_finished_output_is_refused_not_overwritten(tmp_path, monkeypatch, role, args):
    """Every command writing --out refuses an existing one before any work (a checkpoint
    ``OUT.ckpt`` is resumed instead); the file is left as it was."""
    import importlib

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"lassi.{role}.cli").main
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"finished")
    result = CliRunner().invoke(main, [*args, "--quiet", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"out.safetensors: {REFUSED}" in result.output
    assert out.read_bytes() == b"finished"


def test_out_named_like_its_side_file_says_so(tmp_path):
    from lassi.consumer.cli import main

    result = CliRunner().invoke(main, ["verify", "--classifier", "c.safetensors", "--bundle",
                                       "b.safetensors", "--out", str(tmp_path / "v.json")])  # fmt: skip
    assert result.exit_code == 2
    assert ("v.json: is both the output and a side file this command writes beside it (such as "
            "its .json or .ckpt); give the output its own name, e.g. v.safetensors") in result.output  # fmt: skip


@pytest.mark.slow
def test_progress_bars_say_what_they_count(capsys, tmp_path):
    """Center smoothing's bar counts samples where it did not abstain (cs_ok), not fair ones,
    and shows the latest sample's r_CS as such; verify's counts certified fair samples."""
    from lassi.spec.runtime.center_smoothing import progress_hooks
    from lassi.spec.runtime.per_sample import PerSampleLoop

    hooks = progress_hooks()
    assert hooks["count_label"] == "cs_ok"
    assert hooks["postfix"]({"r_cs": 1.5}) == {"last_r_cs": "1.500"}
    result = {"status": np.zeros(3, np.uint8), "r_cs": np.zeros(3, np.float32)}
    loop = PerSampleLoop(result, tmp_path / "x.ckpt", tool="t", stage="s", key="k",
                         desc="center smoothing", what="w", **hooks)  # fmt: skip
    loop.run(lambda i: {"status": int(i == 1), "r_cs": 0.25 * i})
    err = capsys.readouterr().err
    assert "cs_ok=2/3" in err and "last_r_cs=0.500" in err and "certified=" not in err
    classifier, bundle = write_pair(tmp_path, np.array([1.0, -1.0, 0.9]), np.full(3, 0.1))
    run_verify(classifier, bundle, tmp_path / "r.safetensors", False, progress=True)
    err = capsys.readouterr().err
    assert "fair=3/3" in err and "certified=" not in err


def test_sensitive_labels_only_those_asked_for():
    """``--labels Smiling,Pale_Skin --include-sensitive-labels`` exports those two, not Young;
    without --labels the flag adds every sensitive attribute's labels (as before)."""
    from types import SimpleNamespace

    from lassi.producer.encode import choose_labels

    source = SimpleNamespace(attribute_names=["Smiling", "Pale_Skin", "Young"],
                             check_attribute=lambda name: None)  # fmt: skip
    sim = SimpleNamespace(meta=SimpleNamespace(attribute_names=["Pale_Skin", "Young"],
                                               vector_names=[]))  # fmt: skip
    assert choose_labels(source, sim, "Smiling", ["Smiling", "Pale_Skin"], True) == (
        ["Pale_Skin", "Smiling"], ["Pale_Skin"])  # fmt: skip
    assert choose_labels(source, sim, "Smiling", None, True) == (
        ["Pale_Skin", "Smiling", "Young"], ["Pale_Skin", "Young"])  # fmt: skip


def test_training_bars_say_what_their_figures_are(monkeypatch):
    """C_L's bar shows this epoch's running training loss and accuracy under noise, named so,
    and says that its epoch count is a cap when stopping early."""
    import torch

    import lassi.consumer.classifier as classifier

    monkeypatch.setattr(classifier, "tqdm", RecordingBar)
    RecordingBar.postfixes = []
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    y = (z[:, 0] > 0).long()
    classifier.train_classifier(classifier.make_classifier("linear", 2, 2), z, y, 0.5, epochs=2,
                                z_val=z[:50], y_val=y[:50], patience=3)  # fmt: skip
    last = RecordingBar.postfixes[-1]
    assert set(last) == {"train_loss", "train_acc_noisy", "desc"}
    assert last["desc"] == "C_L epoch 2/2 (at most; early stopping)"
