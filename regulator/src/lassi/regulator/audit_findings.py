"""The audit's findings as the regulator reads them: the Markdown table, the JSON file and the
one line that says why an audit failed (``lassi-regulator audit``; the replay is ``audit``)."""

from __future__ import annotations

import json
from pathlib import Path

from lassi.regulator.audit import AuditRow
from lassi.spec.contract.errors import printable
from lassi.spec.contract.io import atomic_path


def write_findings(rows: list[AuditRow], out: Path | None) -> str:
    """The per-sample findings as JSON, also written to ``out`` (atomically) when given."""
    findings = json.dumps([r.as_dict() for r in rows], indent=2, allow_nan=False)
    if out is not None:
        with atomic_path(out) as tmp:
            Path(tmp).write_text(findings + "\n")
    return findings


def audit_table(rows: list[AuditRow]) -> str:
    """One Markdown row per re-checked sample: claimed and replayed r_CS, center distance and
    verdict (the file column when the bundle names its images)."""
    named = any(r.file is not None for r in rows)
    lines = [
        f"| id |{' file |' if named else ''} claimed r_CS | replayed r_CS | center distance | verdict |",
        f"| --- |{' --- |' if named else ''} --- | --- | --- | --- |",
    ]
    for r in rows:
        file = f" {printable(r.file)} |" if named else ""
        replayed = (
            "– | –" if r.replayed_r_cs is None else f"{r.replayed_r_cs:.5f} | {r.center_distance:.2e}"
        )
        lines.append(f"| {r.sample_id} |{file} {r.claimed_r_cs:.5f} | {replayed} | {r.verdict} |")
    return "\n".join(lines)


def _sample(row: AuditRow) -> str:
    """``sample ID (FILE)``, or ``sample ID`` for rendered data."""
    return f"sample {row.sample_id}" + ("" if row.file is None else f" ({row.file})")


def audit_failure(rows: list[AuditRow]) -> str:
    """One line on the audit's flagged rows: claims not confirmed, samples not auditable (their
    data differs under --data-root, file named), and how many were confirmed."""
    wrong = [r for r in rows if r.verdict != "confirmed" and r.detail is None]
    unusable = [r for r in rows if r.detail is not None]
    parts = []
    if wrong:
        parts.append(
            f"{len(wrong)} of {len(rows)} re-checked r_CS claims not confirmed "
            f"(e.g. {_sample(wrong[0])}: {wrong[0].verdict})"
        )
    if unusable:
        first = unusable[0]
        parts.append(
            f"{len(unusable)} of {len(rows)} samples not auditable, their data differs under "
            f"--data-root (e.g. {_sample(first)}: {first.verdict.removeprefix('data_')}, {first.detail})"
        )
    confirmed = sum(r.verdict == "confirmed" for r in rows)
    return "; ".join(parts) + f"; {confirmed} of {len(rows)} confirmed"
