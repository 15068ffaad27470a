"""docs/results.md is generated from docs/results/*.json (lassi-experiments report): the committed
page is what the generator writes, every table has its provenance line, and a bad results file
is a one-line error naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factories import ROOT
from lassi.experiments.cli import main
from lassi.experiments.report import DETAILS, MAX_RESULTS_LINES, render_details, render_page
from lassi.spec import UsageError

RESULTS = ROOT / "docs" / "results"


def _table(title: str, order: int, **changes) -> dict:
    table = {
        "title": title, "order": order, "intro": "One sentence.", "columns": ["a", "b"],
        "rows": [["x", 1.5], ["y", None]],
        "provenance": {"command": "cmd", "commit": "abc1234", "results_file": "r.json", "hardware": "CPU"},
        "notes": ["a note"],
    }  # fmt: skip
    return table | changes


def _folder(tmp_path: Path, tables: dict[str, dict]) -> Path:
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "page.toml").write_text('intro = "The page."\nknown_gaps = ["one gap"]\n')
    for name, table in tables.items():
        (results / name).write_text(json.dumps(table))
    return results


def test_the_committed_page_is_what_the_generator_writes() -> None:
    assert (ROOT / "docs" / "results.md").read_text(encoding="utf-8") == render_page(RESULTS), (
        "docs/results.md is out of date: run `make results` (lassi-experiments report)"
    )
    details = ROOT / "docs" / DETAILS
    assert (details.read_text(encoding="utf-8") if details.exists() else None) == render_details(
        RESULTS
    ), f"docs/{DETAILS} is out of date: run `make results` (lassi-experiments report)"


def test_every_table_has_one_provenance_line_and_the_page_stays_short() -> None:
    page, details = render_page(RESULTS), render_details(RESULTS) or ""
    tables = list(RESULTS.glob("*.json"))
    assert tables and (page + details).count("*Provenance:*") == len(tables)
    assert (page + details).count("\n## ") >= len(tables)
    assert len(page.splitlines()) <= MAX_RESULTS_LINES, "move a supporting table to the details page"


def test_details_tables_go_to_their_own_page_linked_from_the_results(tmp_path: Path) -> None:
    results = _folder(tmp_path, {
        "a.json": _table("Headline", 10), "b.json": _table("Probe", 20, page="details"),
    })  # fmt: skip
    page, details = render_page(results), render_details(results)
    assert "## Headline" in page and "## Probe" not in page and f"]({DETAILS})" in page
    assert details is not None and "## Probe" in details and "## Headline" not in details
    assert render_details(_folder(tmp_path / "x", {"a.json": _table("Headline", 10)})) is None


def test_tables_follow_their_order_and_cells_render(tmp_path: Path) -> None:
    results = _folder(tmp_path, {
        "z.json": _table("First", 10), "a.json": _table("Second", 20, rows=[["p|q", 3]]),
    })  # fmt: skip
    page = render_page(results)
    assert page.index("## First") < page.index("## Second") < page.index("## Known gaps")
    assert "| x | 1.5 |" in page and "| y | — |" in page and "| p\\|q | 3 |" in page
    assert "*Provenance:* `cmd` · commit abc1234 · r.json · CPU" in page
    assert "- one gap" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        (json.dumps(_table("T", 10, rows=[["only one cell"]])), "row 0 has 1 cells"),
        (json.dumps(_table("T", 10, rows=[["x", True]])), "not true/false"),
        (json.dumps({k: v for k, v in _table("T", 10).items() if k != "provenance"}), "provenance"),
        (json.dumps(_table("T", "ten")), "order"),
    ],
)
def test_a_bad_results_file_is_a_one_line_error_naming_it(
    tmp_path: Path, content: str, message: str
) -> None:
    results = _folder(tmp_path, {"good.json": _table("Good", 10)})
    (results / "bad.json").write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        render_page(results)
    assert "bad.json" in str(error.value) and "\n" not in str(error.value)


def test_report_check_fails_on_a_stale_page_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _folder(tmp_path, {"t.json": _table("T", 10)})
    out = tmp_path / "docs" / "results.md"
    args = ["report", "--results", str(results), "--out", str(out)]
    assert main([*args, "--check"]) == 1 and not out.exists()
    assert main(args) == 0 and out.read_text(encoding="utf-8") == render_page(results)
    assert main([*args, "--check"]) == 0
    (results / "t.json").write_text(json.dumps(_table("T, changed", 10)))
    assert main([*args, "--check"]) == 1
    assert main(args) == 0 and not (out.parent / DETAILS).exists()
    (results / "d.json").write_text(json.dumps(_table("D", 20, page="details")))
    assert main([*args, "--check"]) == 1  # the details page is missing
    assert main(args) == 0 and (out.parent / DETAILS).exists()
    assert main([*args, "--check"]) == 0
    shutil.rmtree(results)
    assert main([*args, "--check"]) == 2  # no page.toml: usage error, one line
    assert "page.toml" in capsys.readouterr().err.splitlines()[-1]
