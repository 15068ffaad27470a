"""The HTML pages a regulator looks at: ``lassi-regulator audit --html`` and ``lassi-consumer
verify --html``. Every figure on a page must equal the JSON report's, every image must be an
embedded PNG that decodes (in PIL and in a headless Chromium), and an existing page is refused."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import DATA, run
from lassi.spec import GlowArtifact, SimilaritySpec, read_artifact
from lassi.spec.runtime.html_page import shown


class Page(HTMLParser):
    """The figures (table id -> row -> field -> (exact value, shown text)), images, caveats and
    every resource URL of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, tuple[object, str]]]] = {}
        self.images: list[str] = []
        self.caveats: list[str] = []
        self.urls: list[str] = []
        self._table: str | None = None
        self._cell: tuple[str, object] | None = None
        self._text: list[str] = []
        self._caveat = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append({})
        elif tag == "td" and "data-field" in a:
            self._cell, self._text = (a["data-field"], json.loads(a["data-value"])), []
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "p" and a.get("class") == "caveat":
            self._caveat, self._text = True, []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            field, value = self._cell
            self.tables[self._table][-1][field] = (value, "".join(self._text))
            self._cell = None
        elif tag == "p" and self._caveat:
            self.caveats.append("".join(self._text))
            self._caveat = False

    def rows(self, table: str) -> list[dict[str, tuple[object, str]]]:
        return [row for row in self.tables[table] if row]

    def summary(self) -> dict[str, object]:
        return {k: v for row in self.rows("summary") for k, (v, _) in row.items()}


def _same_figures(page: Page, table: str, rows: list[dict], columns: list[str]) -> None:
    shown_rows = page.rows(table)
    assert len(shown_rows) == len(rows)
    for on_page, row in zip(shown_rows, rows, strict=True):
        assert set(on_page) == set(columns)
        for column in columns:
            value, text = on_page[column]
            assert value == row.get(column), (column, value, row.get(column))
            assert text == shown(row.get(column))


def _decode(uri: str):
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):], validate=True)))
    image.load()
    return image


@pytest.fixture(scope="module")
def audit_page(chain: dict[str, Path], base_function: Path, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    from lassi.regulator.cli import main as regulator

    d = tmp_path_factory.mktemp("audit-page")
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(chain["test"]),
            "--count", "2", "--quiet", "--out", str(d / "findings.json"), "--html", str(d / "audit.html"),
            "--glow", str(chain["glow"]), "--report", str(chain["report"])]  # fmt: skip
    run(regulator, args)
    return d / "audit.html", d / "findings.json", args


@pytest.mark.slow
def test_audit_page_shows_the_findings_and_decodable_images(chain, audit_page) -> None:
    from lassi.regulator.audit_page import BALL_POINTS, COLUMNS, chosen_vectors

    html, findings, _ = audit_page
    page = Page(html.read_text())
    rows = json.loads(findings.read_text())
    _same_figures(page, "samples", rows, COLUMNS)
    consumer = json.loads(chain["report"].with_suffix(".json").read_text())["samples"]
    by_id = {c["id"]: c for c in consumer}
    for i, row in enumerate(rows):  # each sample's section: its row and the consumer's figures
        c = by_id[row["sample_id"]]
        keys = ("prediction", "prediction_name", "label", "label_name", "R")
        both = {**row, **{k: c[k] for k in keys}, "consumer_status": c["status"]}
        _same_figures(page, f"sample-{i}", [both], list(both))
    spec = read_artifact(chain["spec"], expect=SimilaritySpec).meta
    training = read_artifact(chain["glow"], expect=GlowArtifact).meta.training
    summary = page.summary()
    assert summary["audited"] == len(rows) == 2
    assert summary["confirmed"] == sum(r["verdict"] == "confirmed" for r in rows)
    texts = {k: text for row in page.rows("summary") for k, (_, text) in row.items()}
    assert texts["confirmed"] == f"{summary['confirmed']} of 2"
    assert summary["epsilon"] == spec.epsilon
    assert summary["glow_val_bits_per_dim"] == training.val_bits_per_dim
    assert summary["glow_train_bits_per_dim"] == training.train_bits_per_dim
    assert spec.coverage is not None
    share = max(0.0, 100 * (1 - spec.coverage.latent_residual))
    assert f"reaches about {share:.0f} % of the way" in page.caveats[0]  # at the top
    assert "bits/dim" in page.caveats[1]
    # per sample: the input, both ends of each chosen vector's segment, the ball points
    chosen = chosen_vectors(spec)
    assert 1 < len(chosen) < len(spec.vector_names)  # 49 orientation pairs: show's choice of 3
    per_sample = 1 + 2 * len(chosen) + BALL_POINTS
    assert len(page.images) == len(rows) * per_sample
    size = spec.flow.image_size
    decoded = [_decode(uri) for uri in page.images]
    assert all(image.size == (size, size) and image.mode == "RGB" for image in decoded)
    ends = [image.tobytes() for image in decoded[1:per_sample]]
    assert len(set(ends)) > 1, "the similar individuals are all the same image"
    assert all(url.startswith("data:") for url in page.urls), "the page loads an external resource"


@pytest.mark.slow
def test_verify_page_shows_the_reports_figures_without_images(chain, tmp_path: Path) -> None:
    from lassi.consumer.cli import main as consumer
    from lassi.consumer.report_page import COLUMNS

    out, html = tmp_path / "report.safetensors", tmp_path / "report.html"
    run(consumer, ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
                   "--spec", str(chain["spec"]), "--n0", "100", "--n", "500", "--quiet",
                   "--out", str(out), "--html", str(html)])  # fmt: skip
    record = json.loads((tmp_path / "report.json").read_text())
    page = Page(html.read_text())
    rows = record["samples"]
    _same_figures(page, "samples", rows, [c for c in COLUMNS if any(c in r for r in rows)])
    summary = page.summary()
    for key, value in record["summary"].items():
        assert summary[key] == value, key
    texts = {k: text for row in page.rows("summary") for k, (_, text) in row.items()}
    n, certified = record["summary"]["n"], record["summary"]["certified_fairness"]
    assert texts["certified_fairness"] == f"{100 * certified:.1f} % ({round(certified * n)} of {n})"
    assert summary["report_sha256"] == record["report_sha256"]
    assert summary["task"] == record["task"]
    coverage = record["scope"]["coverage"]
    share = max(0.0, 100 * (1 - coverage["latent_residual"]))
    assert f"reaches about {share:.0f} % of the way" in page.caveats[0]
    assert not page.images and not page.urls
    assert any("regulator's audit page" in c for c in page.caveats)


@pytest.mark.slow
def test_an_existing_page_is_refused(chain, audit_page) -> None:
    from lassi.regulator.cli import main as regulator

    html, findings, args = audit_page
    before = html.read_bytes()
    other = findings.with_name("other.json")
    args = [a if a != str(findings) else str(other) for a in args]
    result = CliRunner().invoke(regulator, args)
    assert result.exit_code == 2, result.output
    assert "audit.html" in result.output and "exists already" in result.output
    assert html.read_bytes() == before and not other.exists()


@pytest.mark.slow
def test_every_image_decodes_in_a_headless_browser(audit_page, tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser to load the page")
    html = audit_page[0]
    expected = len(Page(html.read_text()).images)
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-images-decoded="(\d+)/(\d+)"', done.stdout)
    assert found, "the page's load script did not run in the browser"
    assert (int(found[1]), int(found[2])) == (expected, expected)


@pytest.mark.slow
def test_a_glow_other_than_the_specs_is_refused_before_the_replay(chain, base_function, tmp_path: Path, monkeypatch) -> None:
    from lassi.regulator import audit
    from lassi.regulator.cli import main as regulator

    monkeypatch.setattr(audit.ReplayOne, "__call__", lambda self, i: pytest.fail("replayed"))
    base = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(chain["test"]),
            "--count", "1", "--quiet"]  # fmt: skip
    html, other = tmp_path / "audit.html", tmp_path / "other-glow.safetensors"
    run(regulator, ["train-glow", *DATA, "--levels", "2", "--depth", "2", "--hidden", "16", "--steps", "2",
                    "--batch-size", "16", "--warmup", "1", "--quiet", "--out", str(other)])  # fmt: skip
    wrong = CliRunner().invoke(regulator, [*base, "--html", str(html), "--glow", str(other)])
    assert wrong.exit_code == 4, wrong.output
    assert "is not the Glow" in wrong.output and "Traceback" not in wrong.output
    not_glow = CliRunner().invoke(regulator, [*base, "--html", str(html), "--glow", str(chain["spec"])])
    assert not_glow.exit_code == 3 and "Traceback" not in not_glow.output, not_glow.output
    not_report = CliRunner().invoke(regulator, [*base, "--html", str(html), "--report", str(chain["spec"])])
    assert not_report.exit_code == 3 and "Traceback" not in not_report.output, not_report.output
    alone = CliRunner().invoke(regulator, [*base, "--glow", str(chain["glow"])])
    assert alone.exit_code == 2 and "apply to --html only" in alone.output, alone.output
    assert not html.exists()


def test_text_from_the_artifacts_is_escaped() -> None:
    from lassi.spec.runtime.html_page import Figure, SampleSection, render_page

    hostile = '<script>alert("x")</script><img src="http://example.com/x.png">'
    row = {"id": 0, "file": hostile}
    page = render_page(hostile, [hostile], {"task": hostile}, [row], ["id", "file"], [hostile],
                       [SampleSection(hostile, row, [Figure(hostile, b"\x89PNG")], hostile)])  # fmt: skip
    parsed = Page(page)
    assert page.count("<script>") == 1  # the page's own load check only
    assert parsed.urls == ["data:image/png;base64,iVBORw=="]
    assert parsed.rows("samples")[0]["file"] == (hostile, hostile)
    assert parsed.caveats == [hostile]


@pytest.mark.slow
def test_a_sample_whose_data_differs_is_listed_without_images(chain, tmp_path: Path) -> None:
    from lassi.regulator.audit import AuditResult, AuditRow
    from lassi.regulator.audit_page import write_audit_page

    row = AuditRow(7, 1, None, 2.5, None, None, "data_changed", "a<b>.png", "its bytes differ")
    out = tmp_path / "audit.html"
    write_audit_page(AuditResult([row], notes=["note: one"]), chain["spec"], chain["test"], out)
    page = Page(out.read_text())
    assert not page.images
    _same_figures(page, "sample-0", [row.as_dict()], list(row.as_dict()))
    assert "not the data encoded (its bytes differ)" in out.read_text()
    assert "Glow quality: not shown (pass --glow GLOW" in page.caveats[1]


@pytest.mark.slow
def test_the_report_of_another_bundle_is_refused(chain) -> None:
    from lassi.regulator.audit_page import consumer_figures
    from lassi.spec import IntegrityError

    assert set(consumer_figures(chain["report"], chain["test"])) == set(
        json.loads(chain["report"].with_suffix(".json").read_text())["samples"][i]["id"] for i in range(6)
    )
    with pytest.raises(IntegrityError, match="the report of another bundle than train.safetensors"):
        consumer_figures(chain["report"], chain["train"])
