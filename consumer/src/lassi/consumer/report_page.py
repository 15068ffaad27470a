"""The verification report's page (``lassi-consumer verify --html``): figures only.

Per sample: label and prediction with their class names, R, r_CS and the status (paper Sec. 5:
fair iff r_CS < R); the summary, warnings and, at the top, the spec's coverage caveat. The
consumer holds no Glow, so the page has no images: the decoded similar individuals are on the
regulator's audit page (``lassi-regulator audit --html``). Written by :mod:`lassi.spec.runtime.html_page`.
"""

from __future__ import annotations

from pathlib import Path

from lassi.consumer.report import report_rows
from lassi.spec import Artifact, VerificationReport
from lassi.spec.contract.binding import binding_note
from lassi.spec.runtime.html_page import coverage_caveat, render_page, write_page

COLUMNS = ["id", "file", "label", "label_name", "prediction", "prediction_name", "R", "r_cs",
           "status", "cause"]  # fmt: skip

NO_IMAGES = (
    "This page has figures only: the images of each sample's similar individuals come from the "
    "regulator's audit page (lassi-regulator audit --html), which holds the spec's Glow."
)


def write_report_page(report: Artifact[VerificationReport], out: Path) -> None:
    """Render the report's page to ``out``, atomically."""
    meta = report.meta
    scope = meta.scope
    caveats = []
    if scope is not None:
        caveats += [coverage_caveat(scope.coverage, scope.spec_sha256 is not None), binding_note(scope)]
    caveats.append(NO_IMAGES)
    summary = {
        "task": meta.task,
        "classes": ", ".join(meta.classes),
        "sigma_cls": meta.smoothing.sigma_cls,
        **meta.summary.model_dump(mode="json"),
        "report_sha256": report.sha256,
    }
    rows = report_rows(report)
    columns = [c for c in COLUMNS if any(c in row for row in rows)] or COLUMNS
    title = f"Verification report: task {meta.task}"
    write_page(out, render_page(title, caveats, summary, rows, columns, meta.warnings,
                                 notes_title="Warnings"))  # fmt: skip
