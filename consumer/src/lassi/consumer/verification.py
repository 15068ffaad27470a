"""The consumer's side of LASSI: train C_L on representations, then verify fairness per sample.

Decision (paper Sec. 4.3): a sample is certified individually fair iff center smoothing did not
abstain, randomized smoothing of C_L around z_CS did not abstain, and r_CS < R. Then every similar
individual gets the same prediction, with probability ≥ 1 − α_c − α_s over the draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lassi.consumer.classifier import make_classifier, train_classifier
from lassi.consumer.randomized_smoothing import ABSTAIN, Smooth
from lassi.spec import (
    Artifact,
    CenterStatus,
    ClassifierCard,
    ClassifierTraining,
    IntegrityError,
    ReportStatus,
    ReportSummary,
    RepresentationBundle,
    SmoothingParams,
    UsageError,
    VerificationReport,
    atomic_path,
    read_artifact,
    write_artifact,
)
from lassi.spec.cli import tool_name
from lassi.spec.per_sample import PerSampleLoop
from lassi.spec.torch_state import (
    load_module,
    module_tensors,
    run_key,
)

TOOL = tool_name("lassi-consumer")
STATUS_NAMES = {s: s.name.lower() for s in ReportStatus}


def _task_labels(bundle: Artifact[RepresentationBundle], task: str) -> np.ndarray:
    meta = bundle.meta
    if task not in meta.label_names:
        known = ", ".join(meta.label_names) or "none"
        raise UsageError(bundle.path, f"has no labels for task '{task}' (labels: {known})")
    return bundle.tensors[f"labels.{task}"]


def train_consumer_classifier(
    bundle_path: Path,
    task: str,
    out: Path,
    sigma: float,
    architecture: str = "linear",
    hidden: int = 256,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: bool = True,
) -> Path:
    """Train C_L with N(0, σ_cls² I) input noise on a bundle's z and write the classifier."""
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    y_all = _task_labels(bundle, task)
    z_all = bundle.tensors["z"]
    if not 0 <= val_fraction < 1:
        raise UsageError(None, "--val-fraction must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(len(z_all))
    n_val = int(round(val_fraction * len(z_all)))
    val, train = order[:n_val], order[n_val:]
    if len(train) < 1:
        raise UsageError(bundle_path, "has too few samples to train on")
    classes = bundle.meta.label_classes[task]
    model = make_classifier(architecture, bundle.meta.k, classes, hidden=hidden, seed=seed)
    history = train_classifier(
        model,
        torch.from_numpy(z_all[train]),
        torch.from_numpy(y_all[train]),
        sigma=sigma,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        z_val=torch.from_numpy(z_all[val]) if n_val else None,
        y_val=torch.from_numpy(y_all[val]) if n_val else None,
        progress=progress,
    )
    noisy = history["val_accuracy_noisy"][-1] if history["val_accuracy_noisy"] else None
    clean = history["val_accuracy_clean"][-1] if history["val_accuracy_clean"] else None
    parents = {"representations": bundle.sha256}
    parents.update(
        {k: v for k, v in bundle.meta.parents.items() if k in ("encoder", "similarity_spec")}
    )
    card = ClassifierCard(
        tool=TOOL,
        architecture=architecture,
        k=bundle.meta.k,
        hidden=hidden if architecture == "mlp" else 0,
        sigma_cls=sigma,
        task=task,
        classes=[str(c) for c in range(classes)],
        training=ClassifierTraining(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            n_train=len(train),
            val_accuracy_noisy=noisy,
            val_accuracy_clean=clean,
            seconds=float(history["seconds"]),
        ),
        parents=parents,
    )
    write_artifact(out, card, module_tensors(model, "classifier."))
    if progress and noisy is not None:
        print(f"validation accuracy under noise sigma={sigma}: {noisy:.3f} (clean {clean:.3f})")
    return out


def load_classifier(path: Path) -> tuple[torch.nn.Module, Artifact[ClassifierCard]]:
    artifact = read_artifact(path, expect=ClassifierCard)
    card = artifact.meta
    model = make_classifier(card.architecture, card.k, card.num_classes, hidden=card.hidden or 256)
    load_module(model, artifact.weights("classifier."), path)
    return model.eval(), artifact


def check_pairing(
    classifier: Artifact[ClassifierCard], bundle: Artifact[RepresentationBundle]
) -> None:
    """Refuse a plain bundle, another representation size, spec or encoder."""
    if not bundle.meta.certified:
        raise UsageError(
            bundle.path,
            "is a plain bundle; verify needs a certified one (lassi-producer encode --certify)",
        )
    if bundle.meta.k != classifier.meta.k:
        raise IntegrityError(
            bundle.path,
            f"has representations of size {bundle.meta.k}, the classifier takes {classifier.meta.k}",
        )
    for kind in ("similarity_spec", "encoder"):
        mine, theirs = classifier.meta.parents.get(kind), bundle.meta.parents.get(kind)
        if mine is None or theirs is None or mine != theirs:
            raise IntegrityError(
                bundle.path,
                f"was made with {kind} {str(theirs)[:12]}…, the classifier was trained on {str(mine)[:12]}…",
            )


def summarise(
    status: np.ndarray, prediction: np.ndarray, labels: np.ndarray | None, guarantee: float
) -> ReportSummary:
    n = len(status)

    def frac(mask: np.ndarray) -> float:
        return float(mask.sum()) / n if n else 0.0

    certified = status == ReportStatus.CERTIFIED
    correct = None if labels is None else (prediction == labels) & (prediction != ABSTAIN)
    return ReportSummary(
        n=n,
        accuracy=None if correct is None else frac(correct),
        certified_fairness=frac(certified),
        certified_fair_and_accurate=None if correct is None else frac(certified & correct),
        abstain_center=frac(status == ReportStatus.ABSTAIN_CENTER),
        abstain_classifier=frac(status == ReportStatus.ABSTAIN_CLASSIFIER),
        not_certified=frac(status == ReportStatus.NOT_CERTIFIED),
        guarantee_probability=max(0.0, guarantee),
    )


def verify(
    classifier_path: Path,
    bundle_path: Path,
    out: Path,
    n0: int = 2_000,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    batch_size: int = 10_000,
    progress: bool = True,
) -> Artifact[VerificationReport]:
    """Randomized smoothing around every z_CS; certified iff r_CS < R. Writes the report files."""
    model, classifier = load_classifier(classifier_path)
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    check_pairing(classifier, bundle)
    card, meta, tensors = classifier.meta, bundle.meta, bundle.tensors
    labels = tensors.get(f"labels.{card.task}")
    if card.architecture == "linear":
        smooth = Smooth.for_linear_head(model, card.sigma_cls, batch_size=batch_size)
    else:
        smooth = Smooth(model, card.num_classes, card.sigma_cls, batch_size=batch_size)
    count = meta.n_samples
    result = {
        "prediction": np.full(count, ABSTAIN, np.int64),
        "radius": np.zeros(count, np.float32),
        "status": np.zeros(count, np.uint8),
    }
    checkpoint = out.with_name(out.name + ".ckpt")
    key = run_key(
        classifier=classifier.sha256, bundle=bundle.sha256, n0=n0, n=n, alpha=alpha, seed=seed
    )
    loop = PerSampleLoop(
        result,
        checkpoint,
        tool=TOOL,
        stage="verify",
        key=key,
        desc="randomized smoothing",
        what="verification",
        progress=progress,
        certified=lambda row: row["status"] == ReportStatus.CERTIFIED,
    )

    def verify_one(i: int) -> dict[str, object]:
        if tensors["status"][i] != CenterStatus.CERTIFIED:
            return {"status": ReportStatus.ABSTAIN_CENTER}
        cert = smooth.certify(tensors["z_cs"][i], n0, n, alpha, seed, int(tensors["ids"][i]))
        if cert.prediction == ABSTAIN:
            status = ReportStatus.ABSTAIN_CLASSIFIER
        elif float(tensors["r_cs"][i]) < cert.radius:
            status = ReportStatus.CERTIFIED
        else:
            status = ReportStatus.NOT_CERTIFIED
        return {"prediction": cert.prediction, "radius": cert.radius, "status": status}

    loop.run(verify_one)

    certificate = meta.certificate
    assert certificate is not None
    guarantee = 1.0 - (certificate.alpha1 + certificate.alpha2) - alpha
    summary = summarise(result["status"], result["prediction"], labels, guarantee)
    parents = {"classifier": classifier.sha256, "representations": bundle.sha256}
    parents.update({k: v for k, v in meta.parents.items() if k in ("encoder", "similarity_spec")})
    report = VerificationReport(
        tool=TOOL,
        n_samples=count,
        task=card.task,
        classes=card.classes,
        has_labels=labels is not None,
        smoothing=SmoothingParams(sigma_cls=card.sigma_cls, n0=n0, n=n, alpha=alpha, seed=seed),
        certificate=certificate,
        summary=summary,
        parents=parents,
    )
    report_tensors = {"ids": tensors["ids"], "r_cs": tensors["r_cs"], **result}
    if labels is not None:
        report_tensors["labels"] = labels
    write_artifact(out, report, report_tensors)
    loop.finish()
    artifact = read_artifact(out, expect=VerificationReport)
    write_report_files(artifact)
    return artifact


def report_rows(report: Artifact[VerificationReport]) -> list[dict[str, Any]]:
    t = report.tensors
    rows = []
    for i in range(report.meta.n_samples):
        row: dict[str, Any] = {"id": int(t["ids"][i])}
        if "labels" in t:
            row["label"] = int(t["labels"][i])
        prediction = int(t["prediction"][i])
        row["prediction"] = None if prediction == ABSTAIN else prediction
        row["R"] = float(t["radius"][i])
        row["r_cs"] = float(t["r_cs"][i])
        row["status"] = STATUS_NAMES[ReportStatus(int(t["status"][i]))]
        rows.append(row)
    return rows


def summary_markdown(report: VerificationReport) -> str:
    s = report.summary

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    lines = [
        "| metric | value |",
        "| --- | --- |",
        f"| samples | {s.n} |",
        f"| accuracy (abstentions count as errors) | {pct(s.accuracy)} |",
        f"| certified fairness | {pct(s.certified_fairness)} |",
        f"| certified fair and accurate | {pct(s.certified_fair_and_accurate)} |",
        f"| abstained: center smoothing | {pct(s.abstain_center)} |",
        f"| abstained: randomized smoothing | {pct(s.abstain_classifier)} |",
        f"| not certified (R <= r_CS) | {pct(s.not_certified)} |",
        f"| guarantee holds with probability | >= {s.guarantee_probability:.4f} |",
    ]
    return "\n".join(lines)


def report_sidecars(report_path: Path) -> dict[str, Path]:
    """The files beside a report: ``x.safetensors`` → ``x.json``, ``x.md``, ``x.png``.

    Only the last suffix is replaced, so dotted names such as ``report-sigma0.5.safetensors``
    keep their own side files.
    """
    path = Path(report_path)
    return {ext: path.with_name(f"{path.stem}.{ext}") for ext in ("json", "md", "png")}


def write_report_files(report: Artifact[VerificationReport]) -> dict[str, Path]:
    """``<report>.json`` (summary + per sample), ``.md`` (tables) and ``.png`` (R vs r_CS)."""
    meta = report.meta
    rows = report_rows(report)
    paths = report_sidecars(report.path)
    record = {"report_sha256": report.sha256, **meta.model_dump(mode="json"), "samples": rows}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    per_sample = [
        "| id | label | prediction | R | r_CS | status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        per_sample.append(
            f"| {row['id']} | {row.get('label', '')} | {'abstain' if row['prediction'] is None else row['prediction']} "
            f"| {row['R']:.4f} | {row['r_cs']:.4f} | {row['status']} |"
        )
    parents = "\n".join(f"- {kind}: `{digest}`" for kind, digest in meta.parents.items())
    text = (
        f"# Verification report\n\nTask `{meta.task}`, sigma_cls {meta.smoothing.sigma_cls}, n {meta.smoothing.n}, "
        f"alpha {meta.smoothing.alpha}; center smoothing sigma_enc {meta.certificate.sigma_enc}, "
        f"epsilon {meta.certificate.epsilon}.\n\n{summary_markdown(meta)}\n\n## Provenance\n\n{parents}\n\n"
        "## Per sample\n\n" + "\n".join(per_sample) + "\n"
    )
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(text)
    plot_radii(report, paths["png"])
    return paths


def plot_radii(report: Artifact[VerificationReport], path: Path) -> None:
    """Scatter of R against r_CS per sample with the diagonal: points above it are certified."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = report.tensors
    status = t["status"]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    colours = {
        ReportStatus.CERTIFIED: "tab:green",
        ReportStatus.NOT_CERTIFIED: "tab:red",
        ReportStatus.ABSTAIN_CLASSIFIER: "tab:orange",
        ReportStatus.ABSTAIN_CENTER: "tab:gray",
    }
    for code, colour in colours.items():
        mask = status == code
        if mask.any():
            ax.scatter(
                t["r_cs"][mask],
                t["radius"][mask],
                s=14,
                c=colour,
                label=f"{STATUS_NAMES[code]} ({int(mask.sum())})",
            )
    top = float(max(t["r_cs"].max(initial=0.0), t["radius"].max(initial=0.0), 1e-3)) * 1.05
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="R = r_CS")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("r_CS (center smoothing radius)")
    ax.set_ylabel("R (randomized smoothing radius)")
    ax.set_title(f"certified fair: {100 * report.meta.summary.certified_fairness:.1f} %")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
