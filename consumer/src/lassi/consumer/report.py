"""The verification report's side files and summary (paper Sec. 5: certified fairness, accuracy).

Beside ``x.safetensors``: ``x.json`` (summary and one row per sample), ``x.md`` (tables) and
``x.png`` (R against r_CS; points above the diagonal are certified).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.spec import (
    Artifact,
    ReportStatus,
    ReportSummary,
    VerificationReport,
    atomic_path,
    read_artifact,
    write_artifact,
)
from lassi.spec.contract.binding import binding_note, coverage_note
from lassi.spec.contract.models import ReportCause
from lassi.spec.runtime.outputs import atomic_group

STATUS_NAMES = {s: s.name.lower() for s in ReportStatus}
CAUSE_NAMES = {c: c.name.lower() for c in ReportCause}


def class_name(classes: list[str], index: int | None) -> str | None:
    """A class's name from the classifier card (None for an abstention); a card that only knows
    indices gives the index as text."""
    if index is None:
        return None
    return classes[index] if 0 <= index < len(classes) else str(index)


def summarise(
    status: np.ndarray, prediction: np.ndarray, labels: np.ndarray | None, guarantee: float
) -> ReportSummary:
    """The report's fractions over all samples; abstentions count as errors for accuracy."""
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


def report_rows(report: Artifact[VerificationReport]) -> list[dict[str, Any]]:
    """One JSON-able row per sample: id (0-based), file (when the bundle names the images),
    label and its class name, prediction (None: abstained) and its class name, R, r_CS, status
    and (reports that record it) the cause, each enum by its name."""
    t = report.tensors
    classes = report.meta.classes
    files = report.meta.file_names
    rows = []
    for i in range(report.meta.n_samples):
        row: dict[str, Any] = {"id": int(t["ids"][i])}
        if files is not None:
            row["file"] = files[i]
        if "labels" in t:
            row["label"] = int(t["labels"][i])
            row["label_name"] = class_name(classes, row["label"])
        prediction = int(t["prediction"][i])
        row["prediction"] = None if prediction == ABSTAIN else prediction
        row["prediction_name"] = class_name(classes, row["prediction"])
        row["R"] = float(t["radius"][i])
        row["r_cs"] = float(t["r_cs"][i])
        row["status"] = STATUS_NAMES[ReportStatus(int(t["status"][i]))]
        if "cause" in t:
            row["cause"] = CAUSE_NAMES[ReportCause(int(t["cause"][i]))]
        rows.append(row)
    return rows


def summary_markdown(report: VerificationReport) -> str:
    """The summary as a markdown table (also printed by ``lassi-consumer verify``)."""
    s = report.summary

    def pct(value: float | None) -> str:  # a fraction of the n samples, with its count
        return "n/a" if value is None else f"{100 * value:.1f} % ({round(value * s.n)} of {s.n})"

    lines = [
        "| metric | value |",
        "| --- | --- |",
        f"| samples | {s.n} |",
        f"| accuracy (PREDICT; abstentions count as errors) | {pct(s.accuracy)} |",
        f"| certified fairness | {pct(s.certified_fairness)} |",
        f"| certified fair and accurate | {pct(s.certified_fair_and_accurate)} |",
        f"| abstained: center smoothing | {pct(s.abstain_center)} |",
        f"| abstained: randomized smoothing (PREDICT) | {pct(s.abstain_classifier)} |",
        f"| not certified (predicted, no R > r_CS) | {pct(s.not_certified)} |",
        f"| guarantee holds with probability | >= {s.guarantee_probability:.4f} |",
    ]
    scale = report.scale  # absent in older reports

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    if scale is not None:
        lines += [
            f"| median r_CS (certified centers) | {num(scale.r_cs)} |",
            f"| median R (classified samples) | {num(scale.radius)} |",
            f"| median norm of z | {num(scale.z_norm)} |",
            f"| median distance to nearest sample of another class | {num(scale.nearest_other_class)} |",
        ]
    ends = report.endpoint_check  # lassi.consumer.endpoints
    if ends is not None:
        share = 1 / max(s.n, 1)
        lines += [
            f"| empirically fair (same prediction at all {ends.endpoints} segment ends) "
            f"| {pct(ends.empirically_fair * share)} |",
            f"| certified but empirically unfair | {pct(ends.certified_empirically_unfair * share)} |",
        ]
    return "\n".join(lines)


def scope_markdown(report: VerificationReport) -> str:
    """What the certificates speak for: the similarity set (paper Eq. 4), its binding, coverage."""
    scope = report.scope
    vectors = ", ".join(
        f"{name}: {kind}"
        + (f" + one halves vector per value of {scope.given[name]}" if name in scope.given else "")
        for name, kind in scope.vectors.items()
    )
    m = f"m = {scope.m} attribute vectors ({vectors})" if scope.m is not None else (
        f"the attribute vectors of {', '.join(scope.attributes)}"
    )
    lines = [
        f"A certified sample gets the same prediction for every individual of "
        f"S(x) = {{D_G(E_G(x) + sum_i t_i a_i) : ||t||_2 <= {scope.epsilon:g}}}, {m}, with the "
        "probability above. Individuals outside S(x) are not covered.",
        "",
        f"- {binding_note(scope)}",
    ]
    coverage = coverage_note(scope)
    if coverage is None:
        coverage = "coverage of real similar individuals: " + (
            "unknown (the regulator's spec records it; pass --spec SPEC)"
            if scope.spec_sha256 is None
            else "not measured by the regulator (the spec records none)"
        )
    lines.append(f"- {coverage}")
    return "\n".join(lines)


def report_sidecars(report_path: Path) -> dict[str, Path]:
    """The files beside a report: ``x.safetensors`` → ``x.json``, ``x.md``, ``x.png``.

    Only the last suffix is replaced, so dotted names such as ``report-sigma0.5.safetensors``
    keep their own side files.
    """
    path = Path(report_path)
    return {ext: path.with_name(f"{path.stem}.{ext}") for ext in ("json", "md", "png")}


def write_report(out: Path, meta: VerificationReport, tensors: dict) -> Artifact[VerificationReport]:
    """Write the report artifact and its ``.json``/``.md``/``.png`` side files all-or-nothing
    (``lassi.spec.runtime.outputs.atomic_group``): if any of them fails, none appears."""
    out = Path(out)
    sidecars = report_sidecars(out)
    with atomic_group([out, *sidecars.values()]) as temps:
        write_artifact(temps[0], meta, tensors)
        artifact = dataclasses.replace(read_artifact(temps[0], expect=VerificationReport), path=out)
        write_report_files(artifact, dict(zip(sidecars, temps[1:], strict=True)))
    return artifact


def write_report_files(
    report: Artifact[VerificationReport], paths: dict[str, Path] | None = None
) -> dict[str, Path]:
    """``<report>.json`` (summary + per sample), ``.md`` (tables) and ``.png`` (R vs r_CS),
    written to ``paths`` (default: the report's side files, each atomically)."""
    meta = report.meta
    rows = report_rows(report)
    paths = paths or report_sidecars(report.path)
    record = {"report_sha256": report.sha256, **meta.model_dump(mode="json"), "samples": rows}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    per_sample = [
        "| id | file | label | prediction | R | r_CS | status | cause |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def shown(index: int | None, name: str | None) -> str:
        if index is None:
            return "abstain"
        return str(index) if name in (None, str(index)) else f"{index} ({name})"

    for row in rows:
        label = shown(row["label"], row["label_name"]) if "label" in row else ""
        per_sample.append(
            f"| {row['id']} | {row.get('file', '')} | {label} "
            f"| {shown(row['prediction'], row['prediction_name'])} "
            f"| {row['R']:.4f} | {row['r_cs']:.4f} | {row['status']} | {row.get('cause', '')} |"
        )
    parents = "\n".join(f"- {kind}: `{digest}`" for kind, digest in meta.parents.items())
    warnings = ""
    if meta.warnings:
        warnings = "## Warnings\n\n" + "\n".join(f"- {w}" for w in meta.warnings) + "\n\n"
    classes = ", ".join(shown(i, name) for i, name in enumerate(meta.classes))
    text = (
        f"# Verification report\n\nTask `{meta.task}` (classes {classes}), sigma_cls "
        f"{meta.smoothing.sigma_cls}, n {meta.smoothing.n}, "
        f"alpha {meta.smoothing.alpha}; center smoothing sigma_enc {meta.certificate.sigma}, "
        f"epsilon {meta.certificate.epsilon}.\n\n{summary_markdown(meta)}\n\n{warnings}"
        f"## What the certificates cover\n\n{scope_markdown(meta)}\n\n## Provenance\n\n{parents}\n\n"
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
