"""Self-contained HTML pages of a report, for a regulator to look at.

One writer for both pages: ``lassi-regulator audit --html`` (with the decoded similar
individuals of paper Eq. 4, S(x) = {D_G(E_G(x) + sum_i t_i a_i) : ||t||_2 <= eps}) and
``lassi-consumer verify --html`` (figures only: R, r_CS, status, class names). Torch-free and
without image code: images arrive as already encoded PNG bytes and are embedded as base64
``data:`` URIs, so the page loads no external resource. Every text is escaped with
:func:`html.escape`. Each figure cell carries its exact JSON value in ``data-value`` (the
shown text is rounded), so the page can be checked against the JSON report.

A small inline script marks on ``window.onload`` how many of the page's images decoded
(``<body data-images-decoded="N/M">``), for a headless browser to check.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from lassi.spec.contract.io import atomic_path
from lassi.spec.contract.models import Coverage

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 80em; }
.caveat { border: 2px solid #b45309; background: #fffbeb; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 0.6em 0; }
td, th { border: 1px solid #999; padding: 0.2em 0.5em; text-align: left; }
figure { display: inline-block; margin: 0.2em; text-align: center; font-size: 0.8em; }
img { image-rendering: pixelated; width: 96px; height: 96px; border: 1px solid #ccc; }
.sample { margin: 1em 0; border-top: 1px solid #ccc; }
"""

CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, ok = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesDecoded = ok + "/" + images.length;
});
"""


@dataclass(frozen=True)
class Figure:
    """One image of a sample: its caption and PNG bytes."""

    caption: str
    png: bytes


@dataclass
class SampleSection:
    """One reported sample: its heading, its row of figures (a JSON row) and its images."""

    heading: str
    row: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    note: str | None = None


def coverage_caveat(coverage: Coverage | None, spec_known: bool) -> str:
    """The spec's coverage record in words, each number said as a fraction of what (see
    :class:`lassi.spec.contract.models.Coverage`): the latent residual is the share of the latent
    distance from x to a real sibling that the set's closest member still leaves (so the set
    reaches 1 - residual of the way); the pixel ratio compares that member's pixel error to the
    unmoved reconstruction's (1 or more: no closer in pixels than not moving at all)."""
    if coverage is None:
        if not spec_known:
            return (
                "Coverage of real similar individuals: unknown (the certificates were not bound "
                "to the regulator's spec; pass --spec SPEC)."
            )
        return (
            "Coverage of real similar individuals: not measured by the regulator (the spec "
            "records none). Certificates cover the similarity set only, not real individuals "
            "outside it."
        )
    share = max(0.0, 100.0 * (1.0 - coverage.latent_residual))
    pixels = "closer to" if coverage.pixel_ratio < 1 else "no closer to"
    return (
        f"How much of a real change the set holds, as the regulator measured it on "
        f"{coverage.n_siblings} real siblings (the same image at another orientation, at least "
        f"{coverage.min_angle_deg:g} degrees away) of {coverage.n_images} test images. In the "
        f"Glow's latent space, the set's member closest to a real sibling reaches about "
        f"{share:.0f} % of the way from the image to the sibling (the latent residual "
        f"{coverage.latent_residual:.3f} is the share of that distance it leaves). In pixels, that "
        f"member decoded is {pixels} the sibling than the image's own reconstruction: its mean "
        f"pixel error to the sibling is {coverage.pixel_ratio:.3f} times the reconstruction's (the "
        "pixel ratio; 0 would be the sibling itself). Certificates cover the set, not the part of "
        "a real change outside it."
    )


@dataclass(frozen=True)
class Shown:
    """A figure shown as its own text (a rate as a percentage with its count), under a label;
    the cell's ``data-value`` keeps the exact ``value``."""

    value: Any
    text: str
    label: str | None = None


def shown(value: Any) -> str:
    """A JSON value as the page shows it: floats to 6 significant digits, None as a dash."""
    if isinstance(value, Shown):
        return value.text
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def value_cell(key: str, value: Any) -> str:
    """A table cell of one figure: the shown text, the exact JSON value in ``data-value``."""
    exact = escape(json.dumps(value.value if isinstance(value, Shown) else value, allow_nan=False), quote=True)
    return f'<td data-field="{escape(key, quote=True)}" data-value="{exact}">{escape(shown(value))}</td>'


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], table_id: str) -> str:
    """One row per sample (``data-sample``: its position), one cell per column."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(value_cell(c, row.get(c)) for c in columns)
        body.append(f'<tr data-sample="{index}">{cells}</tr>')
    return f'<table id="{escape(table_id, quote=True)}"><tr>{head}</tr>{"".join(body)}</table>'


def summary_table(summary: dict[str, Any], table_id: str = "summary") -> str:
    """A two-column table of named figures (a :class:`Shown` figure under its label)."""
    body = "".join(
        f"<tr><th>{escape(v.label if isinstance(v, Shown) and v.label else k)}</th>{value_cell(k, v)}</tr>"
        for k, v in summary.items()
    )
    return f'<table id="{escape(table_id, quote=True)}">{body}</table>'


def render_page(
    title: str,
    caveats: Sequence[str],
    summary: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    notes: Sequence[str] = (),
    sections: Sequence[SampleSection] = (),
    notes_title: str = "Notes",
) -> str:
    """The whole page: caveats at the top, the summary, the per-sample table, notes, then one
    section per sample with its figures and images."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style>",
        f"<script>{CHECK_SCRIPT}</script></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    parts += [f'<p class="caveat">{escape(c)}</p>' for c in caveats]
    parts += ["<h2>Summary</h2>", summary_table(summary)]
    parts += ["<h2>Per sample</h2>", rows_table(rows, columns, "samples")]
    if notes:
        parts.append(f'<h2>{escape(notes_title)}</h2><ul id="notes">')
        parts += [f"<li>{escape(n)}</li>" for n in notes]
        parts.append("</ul>")
    for index, section in enumerate(sections):
        parts.append(f'<div class="sample" data-section="{index}"><h3>{escape(section.heading)}</h3>')
        keys = list(section.row)
        parts.append(rows_table([section.row], keys, f"sample-{index}"))
        if section.note:
            parts.append(f"<p>{escape(section.note)}</p>")
        for fig in section.figures:
            caption = escape(fig.caption)
            parts.append(
                f'<figure><img src="{data_uri(fig.png)}" alt="{escape(fig.caption, quote=True)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_page(path: str | Path, page: str) -> None:
    """Write the page atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
