"""The audit's page for a regulator to look at (``lassi-regulator audit --html``).

For each audited sample: the input x, its similar individuals decoded from the spec's Glow,
D_G(E_G(x) + t a_i) at both ends t = ±ε of each attribute vector's segment (paper Eq. 4; a
representative choice of vectors when there are many, as ``show``), and D_G(E_G(x) + Σ_i t_i a_i)
at a few points t of the sphere ||t||_2 = ε (fixed per-sample seeds), beside the audit's figures
(claimed and replayed status and r_CS, verdict). At the top: the spec's coverage caveat and the
Glow's quality (bits/dim from the Glow artifact's training record, with ``--glow``). The page
itself is written by :mod:`lassi.spec.runtime.html_page`; images are PNG-encoded here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from lassi.regulator.audit import AuditResult
from lassi.regulator.glow import postprocess
from lassi.regulator.show import representative_vectors
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import (
    GlowArtifact,
    IntegrityError,
    InvalidArtifactError,
    ReportStatus,
    SimilaritySpec,
    VerificationReport,
    read_artifact,
)
from lassi.spec.contract.io import read_header
from lassi.spec.runtime.html_page import (
    Figure,
    SampleSection,
    Shown,
    coverage_caveat,
    render_page,
    write_page,
)
from lassi.spec.runtime.seeding import numpy_rng

BALL_POINTS = 4
ALL_UP_TO = 8
BALL_PURPOSE = 39  # the per-sample stream of the page's ball points (not a certificate's)

COLUMNS = [
    "sample_id",
    "file",
    "claimed_status",
    "replayed_status",
    "claimed_r_cs",
    "replayed_r_cs",
    "center_distance",
    "verdict",
]


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 [H, W, 3] image as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def glow_quality(glow_path: Path | None, spec_path: Path) -> tuple[str, dict[str, float | None]]:
    """The Glow's bits/dim from its artifact's training record, as a line and figures; the Glow
    must be the one the spec was defined from (exit 4 otherwise). Reads headers only, so the
    audit calls it before its replay."""
    if glow_path is None:
        return "Glow quality: not shown (pass --glow GLOW, the artifact the spec was defined from).", {}
    spec, _, _ = read_header(spec_path, expect=SimilaritySpec)
    glow, _, sha256 = read_header(glow_path, expect=GlowArtifact)
    if sha256 != spec.parents.get("glow"):
        raise IntegrityError(glow_path, f"is not the Glow {spec_path.name} was defined from")
    training = glow.training
    if training is None:
        return "Glow quality: not recorded (an imported Glow; its training record is not in it).", {}
    figures = {
        "glow_train_bits_per_dim": training.train_bits_per_dim,
        "glow_val_bits_per_dim": training.val_bits_per_dim,
    }
    shown = ", ".join(
        f"{name} {value:.3f}" for name, value in
        (("validation", training.val_bits_per_dim), ("training", training.train_bits_per_dim))
        if value is not None
    )  # fmt: skip
    return f"Glow quality (bits/dim, lower is better): {shown or 'not recorded'}.", figures


def consumer_figures(report_path: Path | None, bundle_path: Path) -> dict[int, dict[str, object]]:
    """Per sample id, the consumer's figures from its verification report of the audited bundle
    (``lassi-consumer verify``): prediction and label with class names, R and its status. The
    report must name the bundle as its parent (exit 4 otherwise). Read here without the
    consumer's code (the regulator does not depend on it)."""
    if report_path is None:
        return {}
    report = read_artifact(report_path, expect=VerificationReport)
    _, _, bundle_sha = read_header(bundle_path)
    if report.meta.parents.get("representations") != bundle_sha:
        raise IntegrityError(report_path, f"is the report of another bundle than {bundle_path.name}")
    t, classes = report.tensors, report.meta.classes

    def name(index: int | None) -> str | None:
        if index is None:
            return None
        return classes[index] if 0 <= index < len(classes) else str(index)

    figures: dict[int, dict[str, object]] = {}
    for i in range(report.meta.n_samples):
        prediction = int(t["prediction"][i])
        prediction = None if prediction < 0 else prediction  # -1: abstained
        try:
            status = ReportStatus(int(t["status"][i])).name.lower()
        except ValueError:
            raise InvalidArtifactError(report_path, f"sample {i} has no known status") from None
        row: dict[str, object] = {"prediction": prediction, "prediction_name": name(prediction)}
        if "labels" in t:
            row.update(label=int(t["labels"][i]), label_name=name(int(t["labels"][i])))
        row.update(R=float(t["radius"][i]), consumer_status=status)
        figures[int(t["ids"][i])] = row
    return figures


def ball_points(sample_id: int, m: int, epsilon: float, count: int = BALL_POINTS) -> np.ndarray:
    """``count`` points t of the sphere ||t||_2 = ε in R^m, seeded by the sample's id."""
    rng = numpy_rng(0, sample_id, 0, BALL_PURPOSE)
    t = rng.standard_normal((count, m))
    return epsilon * t / np.linalg.norm(t, axis=1, keepdims=True)


def chosen_vectors(meta: SimilaritySpec) -> list[int]:
    """Every vector when there are at most ``ALL_UP_TO``, else ``show``'s representative ones."""
    n = len(meta.vector_names)
    return list(range(n)) if n <= ALL_UP_TO else representative_vectors(meta)


@torch.no_grad()
def similar_figures(sim: SimilaritySet, sample_id: int, image: np.ndarray, z: np.ndarray) -> list[Figure]:
    """The input, the ends of each chosen vector's segment and the ball points, decoded."""
    eps, names = sim.epsilon, sim.meta.vector_names
    chosen = chosen_vectors(sim.meta)
    device = next(sim.glow.parameters()).device
    vectors = sim.vectors.to(torch.float32)
    z_t = torch.from_numpy(np.asarray(z, np.float32))[None]
    ts, captions = [], []
    for a in chosen:
        for sign in (-1.0, 1.0):
            t = np.zeros(sim.m)
            t[a] = sign * eps
            ts.append(t)
            captions.append(f"t = {sign * eps:+g} along {names[a]}")
    for j, t in enumerate(ball_points(sample_id, sim.m, eps)):
        ts.append(t)
        captions.append(f"ball point {j + 1}: ||t|| = {eps:g}")
    shifted = z_t + torch.from_numpy(np.stack(ts).astype(np.float32)) @ vectors
    decoded = postprocess(sim.glow.decode(shifted.to(device)))
    figures = [Figure("input x", png_bytes(image))]
    figures += [Figure(c, png_bytes(d)) for c, d in zip(captions, decoded, strict=True)]
    return figures


def write_audit_page(
    result: AuditResult,
    spec_path: Path,
    bundle_path: Path,
    out: Path,
    quality: tuple[str, dict[str, float | None]] | None = None,
    consumer: dict[int, dict[str, object]] | None = None,
) -> None:
    """Render the audit's page (see the module docstring) to ``out``, atomically; ``quality``:
    :func:`glow_quality`'s line and figures (default: none shown); ``consumer``:
    :func:`consumer_figures` (R and class names beside each sample's audit figures)."""
    sim = SimilaritySet.load(spec_path)
    quality_line, glow_figures = quality or glow_quality(None, spec_path)
    rows = [r.as_dict() for r in result.rows]
    sections = []
    consumer = consumer or {}
    for r, audited in zip(result.rows, rows, strict=True):
        heading = f"sample {r.sample_id}" + ("" if r.file is None else f" ({r.file})")
        row = {**audited, **consumer.get(r.sample_id, {})}
        if r.sample_id in result.images:
            figures = similar_figures(sim, r.sample_id, result.images[r.sample_id], result.latents[r.sample_id])
            sections.append(SampleSection(heading, row, figures))
        else:
            note = f"no images: its data under --data-root is not the data encoded ({r.detail})"
            sections.append(SampleSection(heading, row, note=note))
    confirmed = sum(r.verdict == "confirmed" for r in result.rows)
    summary = {
        "audited": Shown(len(rows), str(len(rows)), "samples audited"),
        "confirmed": Shown(confirmed, f"{confirmed} of {len(rows)}", "r_CS claims confirmed"),
        "epsilon": sim.epsilon,
        "m": sim.m,
        "spec_sha256": sim.sha256,
        **glow_figures,
    }
    caveats = [
        coverage_caveat(sim.meta.coverage, spec_known=True),
        quality_line,
        "R and the class names: beside each sample's audit figures, from the consumer's report "
        "(--report)."
        if consumer
        else "R and the class names are the consumer's: pass its report with --report, or see "
        "its page (lassi-consumer verify --html).",
    ]
    title = f"Audit of {bundle_path.name} against {spec_path.name}"
    page = render_page(title, caveats, summary, rows, COLUMNS, result.notes, sections)
    write_page(out, page)
