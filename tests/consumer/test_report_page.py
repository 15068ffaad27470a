"""The consumer's HTML page (``verify --html``) shows every rate as a percentage with its count,
as ``verify`` prints it, while each cell keeps the report's exact value; the coverage caveat
says what each of its numbers is a fraction of."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np

from factories import make
from lassi.consumer.report_page import RATES, write_report_page
from lassi.spec import read_artifact, write_artifact
from lassi.spec.contract.models import CertificateScope, Coverage, EndpointCheck
from lassi.spec.runtime.html_page import coverage_caveat

SHA = "a" * 64


def _summary_cells(page: str) -> dict[str, tuple[str, object, str]]:
    """field -> (label, exact value, shown text) of the summary table."""
    table = re.search(r'<table id="summary">(.*?)</table>', page, re.S)
    assert table is not None
    cells = re.findall(r'<tr><th>(.*?)</th><td data-field="(.*?)" data-value="(.*?)">(.*?)</td></tr>', table[1])
    return {unescape(f): (unescape(label), json.loads(unescape(v)), unescape(text)) for label, f, v, text in cells}


def _coverage(latent_residual: float, pixel_ratio: float) -> Coverage:
    return Coverage(vectors="pairs", m=49, epsilon=1.0, latent_residual=latent_residual,
                    latent_residual_span=0.7, pixel_ratio=pixel_ratio, per_shape={"cube": pixel_ratio},
                    on_boundary=0.9, n_images=4, n_siblings=40)  # fmt: skip


def _page(tmp_path: Path, tensors_update: dict | None = None, **update) -> tuple[str, dict]:
    meta, tensors = make("verification_report", n=5)
    tensors |= tensors_update or {}
    path = tmp_path / "report.safetensors"
    write_artifact(path, meta.model_copy(update=update), tensors)
    report = read_artifact(path)
    write_report_page(report, tmp_path / "report.html")
    return (tmp_path / "report.html").read_text(), report.meta.summary.model_dump(mode="json")


def test_rates_are_percentages_with_their_counts_and_exact_values(tmp_path: Path) -> None:
    page, summary = _page(tmp_path)
    cells = _summary_cells(page)
    # the factory's five samples: certified x3, abstained (PREDICT), not certified
    assert cells["certified_fairness"] == ("certified fairness", 0.6, "60.0 % (3 of 5)")
    assert cells["accuracy"][1:] == (0.8, "80.0 % (4 of 5)")
    assert cells["abstain_classifier"][1:] == (0.2, "20.0 % (1 of 5)")
    assert cells["abstain_center"][1:] == (0.0, "0.0 % (0 of 5)")
    assert cells["guarantee_probability"][1:] == (0.989, ">= 0.9890")
    for key, value in summary.items():  # every exact figure is the report's own
        assert cells[key][1] == value, key
    assert all("%" in cells[key][2] and f" of {summary['n']})" in cells[key][2] for key in RATES)
    assert "0.6<" not in page  # no raw fraction is shown


def test_endpoint_counts_are_rates_of_the_samples(tmp_path: Path) -> None:
    ends = {  # sample 0 certified but its second end predicts another class; 4 fair
        "endpoint_prediction": np.array([[0, 1], [0, 0], [0, 0], [0, 0], [0, 0]], np.int64),
        "empirically_fair": np.array([0, 1, 1, 1, 1], np.uint8),
    }
    check = EndpointCheck(endpoints=2, empirically_fair=4, certified_empirically_unfair=1)
    page, _ = _page(tmp_path, ends, endpoint_check=check)
    cells = _summary_cells(page)
    assert cells["empirically_fair"][2] == "80.0 % (4 of 5)"
    assert cells["certified_empirically_unfair"] == ("certified but empirically unfair", 0.2, "20.0 % (1 of 5)")


def test_the_coverage_caveat_says_what_each_number_is_a_fraction_of(tmp_path: Path) -> None:
    bound = CertificateScope(spec_sha256=SHA, attributes=["orientation"], epsilon=1.0, m=49,
                             coverage=_coverage(0.81, 1.05))  # fmt: skip
    page, _ = _page(tmp_path, scope=bound)
    caveat = unescape(re.findall(r'<p class="caveat">(.*?)</p>', page)[0])
    assert "on 40 real siblings" in caveat and "of 4 test images" in caveat
    assert "reaches about 19 % of the way from the image to the sibling" in caveat
    assert "the latent residual 0.810 is the share of that distance it leaves" in caveat
    assert "is no closer to the sibling than the image's own reconstruction" in caveat
    assert "1.050 times the reconstruction's" in caveat
    closer = coverage_caveat(_coverage(0.4, 0.5), spec_known=True)
    assert "about 60 %" in closer and "is closer to the sibling" in closer and "0.500 times" in closer
    assert "unknown" in coverage_caveat(None, spec_known=False)


def test_the_page_and_verifys_printed_summary_show_the_same_rates(tmp_path: Path) -> None:
    from lassi.consumer.report import summary_markdown

    page, _ = _page(tmp_path)
    cells = _summary_cells(page)
    meta, _ = make("verification_report", n=5)
    printed = dict(
        (cell.strip() for cell in line.strip("|").split("|")) for line in summary_markdown(meta).splitlines()[2:]
    )
    for key, label in RATES.items():
        assert printed[label] == cells[key][2], key
    assert printed["certified fairness"] == "60.0 % (3 of 5)"
