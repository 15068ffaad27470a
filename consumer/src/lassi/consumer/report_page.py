"""The verification report's page (``lassi-consumer verify --html``): figures only.

Per sample: label and prediction with their class names, R, r_CS and the status (paper Sec. 5:
fair iff r_CS < R); the summary (each rate as a percentage with its count, as ``verify``
prints it), warnings and, at the top, the spec's coverage caveat. The consumer holds no Glow,
so the page has no images: the decoded similar individuals are on the regulator's audit page
(``lassi-regulator audit --html``). Written by :mod:`lassi.spec.runtime.html_page`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lassi.consumer.report import report_rows
from lassi.spec import Artifact, VerificationReport
from lassi.spec.contract.binding import binding_note
from lassi.spec.runtime.html_page import Shown, coverage_caveat, render_page, write_page

COLUMNS = ["id", "file", "label", "label_name", "prediction", "prediction_name", "R", "r_cs",
           "status", "cause"]  # fmt: skip

NO_IMAGES = (
    "This page has figures only: the images of each sample's similar individuals come from the "
    "regulator's audit page (lassi-regulator audit --html), which holds the spec's Glow."
)

# the summary's rates (fractions of all samples), labelled as verify prints them
RATES = {
    "accuracy": "accuracy (PREDICT; abstentions count as errors)",
    "certified_fairness": "certified fairness",
    "certified_fair_and_accurate": "certified fair and accurate",
    "abstain_center": "abstained: center smoothing",
    "abstain_classifier": "abstained: randomized smoothing (PREDICT)",
    "not_certified": "not certified (predicted, no R > r_CS)",
}


def rate(fraction: float | None, n: int, label: str) -> Shown:
    """A fraction of the n samples as a percentage with its count: "99.3 % (149 of 150)"."""
    if fraction is None:
        return Shown(None, "n/a (the bundle has no labels)", label)
    return Shown(fraction, f"{100 * fraction:.1f} % ({round(fraction * n)} of {n})", label)


def summary_figures(report: Artifact[VerificationReport]) -> dict[str, Any]:
    """The page's summary: each figure under its JSON name (its exact value in ``data-value``),
    rates shown as percentages with their counts."""
    meta = report.meta
    s = meta.summary
    figures: dict[str, Any] = {
        "task": meta.task,
        "classes": ", ".join(meta.classes),
        "sigma_cls": Shown(meta.smoothing.sigma_cls, f"{meta.smoothing.sigma_cls:g}", "sigma_cls"),
        "n": Shown(s.n, str(s.n), "samples"),
    }
    figures |= {key: rate(getattr(s, key), s.n, label) for key, label in RATES.items()}
    figures["guarantee_probability"] = Shown(
        s.guarantee_probability, f">= {s.guarantee_probability:.4f}", "guarantee holds with probability"
    )
    ends = meta.endpoint_check
    if ends is not None and s.n:
        figures["empirically_fair"] = rate(
            ends.empirically_fair / s.n, s.n,
            f"empirically fair (same prediction at all {ends.endpoints} segment ends)",
        )  # fmt: skip
        figures["certified_empirically_unfair"] = rate(
            ends.certified_empirically_unfair / s.n, s.n, "certified but empirically unfair"
        )
    figures["report_sha256"] = report.sha256
    return figures


def write_report_page(report: Artifact[VerificationReport], out: Path) -> None:
    """Render the report's page to ``out``, atomically."""
    meta = report.meta
    scope = meta.scope
    caveats = [coverage_caveat(scope.coverage, scope.spec_sha256 is not None), binding_note(scope), NO_IMAGES]
    rows = report_rows(report)
    columns = [c for c in COLUMNS if any(c in row for row in rows)] or COLUMNS
    title = f"Verification report: task {meta.task}"
    write_page(out, render_page(title, caveats, summary_figures(report), rows, columns, meta.warnings,
                                 notes_title="Warnings"))  # fmt: skip
