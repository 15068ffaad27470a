"""The results page (docs/results.md) and its supporting tables (docs/results-details.md),
generated from the committed results files docs/results/*.json (the generic table format below)
and docs/results/page.toml (the pages' introductions and the known gaps), so the pages never
drift from the measured figures.

A results file::

    {"title": str, "order": int (sort key), "intro": str,
     "columns": [str, ...], "rows": [[str | number | null, ...], ...],
     "provenance": {"command": str, "commit": str, "results_file": str, "hardware": str},
     "notes": [str, ...], "page": "results" | "details" (default "results")}

Tables are rendered in ``order`` (then file name), each followed by one provenance line. The
results page holds the headline tables and is kept short (MAX_RESULTS_LINES); diagnostics behind
a known gap or a design choice go to the details page, linked from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lassi.spec import UsageError
from lassi.spec.contract.errors import validation_message
from lassi.spec.contract.io import atomic_write_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Provenance(BaseModel):
    """Where a table's figures come from."""

    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1)
    commit: str = Field(min_length=1)
    results_file: str = Field(min_length=1)
    hardware: str = Field(min_length=1)


class ResultsTable(BaseModel):
    """One results file: a table with its provenance."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1)
    order: int
    intro: str = ""
    columns: list[str] = Field(min_length=1)
    rows: list[list[str | int | float | None]]
    provenance: Provenance
    notes: list[str] = []
    page: Literal["results", "details"] = "results"

    @field_validator("rows", mode="before")
    @classmethod
    def _no_booleans(cls, rows: object) -> object:
        if isinstance(rows, list) and any(
            isinstance(cell, bool) for row in rows if isinstance(row, list) for cell in row
        ):
            raise ValueError("cells are strings, numbers or null, not true/false")
        return rows


class Page(BaseModel):
    """docs/results/page.toml: the text around the tables."""

    model_config = ConfigDict(extra="forbid")
    title: str = "Results"
    intro: str
    known_gaps: list[str] = []
    details_title: str = "Supporting tables"
    details_intro: str = ""


MAX_RESULTS_LINES = 300  # the results page is read, not searched
DETAILS = "results-details.md"  # beside the results page


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def cell(value: str | int | float | None) -> str:
    """A table cell: null is a dash, numbers as written, '|' escaped."""
    if value is None:
        return "—"
    return _one_line(str(value)).replace("|", "\\|")


def load_table(path: Path) -> ResultsTable:
    """A results file, validated (one-line error naming the file otherwise)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(path, f"not a readable JSON results file: {error}") from error
    try:
        table = ResultsTable.model_validate(data)
    except ValidationError as error:
        raise UsageError(path, validation_message(error)) from error
    for i, row in enumerate(table.rows):
        if len(row) != len(table.columns):
            raise UsageError(
                path, f"row {i} has {len(row)} cells, the table {len(table.columns)} columns"
            )
    return table


def render_table(table: ResultsTable) -> str:
    """A table's section: title, intro, the table, its provenance line and notes."""
    p = table.provenance
    lines = [f"## {_one_line(table.title)}", ""]
    if table.intro:
        lines += [_one_line(table.intro), ""]
    lines.append("| " + " | ".join(cell(c) for c in table.columns) + " |")
    lines.append("|" + " --- |" * len(table.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows]
    lines += [
        "",
        f"*Provenance:* `{_one_line(p.command)}` · commit {_one_line(p.commit)} · "
        f"{_one_line(p.results_file)} · {_one_line(p.hardware)}",
    ]
    if table.notes:
        lines += [""] + [f"- {_one_line(n)}" for n in table.notes]
    return "\n".join(lines)


def _page(results: Path) -> Page:
    page_file = results / "page.toml"
    try:
        return Page.model_validate(tomllib.loads(page_file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(page_file, f"cannot read the page's text: {error}") from error
    except ValidationError as error:
        raise UsageError(page_file, validation_message(error)) from error


def _tables(results: Path, page: str) -> list[ResultsTable]:
    tables = sorted(
        ((load_table(path), path.name) for path in results.glob("*.json")),
        key=lambda t: (t[0].order, t[1]),
    )
    return [table for table, _ in tables if table.page == page]


GENERATED_BY = (
    "<!-- Generated by `lassi-experiments report` (make results) from docs/results/*.json and "
    "docs/results/page.toml: edit those, not this page. -->"
)


def render_page(results: Path) -> str:
    """The results page from ``results``/*.json and ``results``/page.toml."""
    page = _page(results)
    parts = [f"# {page.title}", "", page.intro.strip(), "", GENERATED_BY]
    for table in _tables(results, "results"):
        parts += ["", render_table(table)]
    if _tables(results, "details"):
        link = f"[{page.details_title.lower()}]({DETAILS})"
        parts += ["", f"More tables, behind the known gaps and the design choices: {link}."]
    if page.known_gaps:
        parts += ["", "## Known gaps", ""] + [f"- {_one_line(g)}" for g in page.known_gaps]
    notes = sorted((results.parent / "notes").glob("*.md"))
    if notes:
        parts += ["", "## Notes", "", "How the figures above were reached, dated:", ""]
        parts += [f"- [{n.stem}](notes/{n.name})" for n in notes]
    return "\n".join(parts) + "\n"


def render_details(results: Path) -> str | None:
    """The supporting tables' page (None when no results file goes there)."""
    tables = _tables(results, "details")
    if not tables:
        return None
    page = _page(results)
    parts = [f"# {page.details_title}", "", page.details_intro.strip(), "", GENERATED_BY]
    parts += ["", "The headline tables: [results](results.md)."]
    for table in tables:
        parts += ["", render_table(table)]
    return "\n".join(parts) + "\n"


def report(results: Path, out: Path, check: bool = False) -> int:
    """Write the results page to ``out`` and the details page beside it (or, with ``check``,
    exit 1 when either differs from what would be written)."""
    pages = {out: render_page(results), out.with_name(DETAILS): render_details(results)}
    if check:
        stale = [
            path for path, text in pages.items()
            if (path.read_text(encoding="utf-8") if path.exists() else None) != text
        ]  # fmt: skip
        if stale:
            names = ", ".join(str(path) for path in stale)
            print(f"{names}: not up to date: run `lassi-experiments report`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    for path, text in pages.items():
        if text is None:
            if path.exists():
                path.unlink()
            continue
        atomic_write_bytes(path, text.encode("utf-8"))
        print(f"wrote {path}")
    return 0
