"""A certificate is bound to the regulator's spec: same epsilon, same attributes, its policy.

A signature proves only who wrote a bundle. The producer chooses the certificate parameters it
records, so a dishonest producer could certify against a smaller similarity ball (epsilon =
0.001 instead of the regulator's 1: every r_CS shrinks) or other attribute vectors, or with
weaker confidence than the regulator allows. ``check_binding`` is the one place that refuses
that (exit 4): the bundle's ``similarity_spec`` parent is the spec's hash, its certificate's
epsilon is the spec's epsilon (the l2 ball of Eq. 4, paper Sec. 4.1), its attribute names are
the spec's (in order), the dimension m of its t-noise is the spec's number of attribute
vectors, its center-smoothing parameters obey the spec's ``policy`` (paper Sec. 4.3:
sigma_enc, n, alpha1/alpha2), and rendered data (3D Shapes) comes from the spec's renderer
(``renderer_sha256``, which every artifact of rendered data records).

``read_spec_header`` reads only a spec's metadata (no tensor is parsed, no torch needed) and
hashes its bytes in the same single pass, so the consumer can bind a bundle to a spec.
"""

from __future__ import annotations

from pathlib import Path

from lassi.spec.contract.data_identity import recorded_renderer
from lassi.spec.contract.errors import IntegrityError
from lassi.spec.contract.io import read_header
from lassi.spec.contract.models import CertificateScope, RepresentationBundle, SimilaritySpec


def read_spec_header(path: str | Path) -> tuple[SimilaritySpec, str]:
    """(validated spec metadata, SHA-256 of the whole file) without parsing any tensor: the
    artifact reader's own header checks (``lassi.spec.contract.io.read_header``), the rest streamed
    through the hash."""
    meta, _, sha256 = read_header(path, SimilaritySpec)
    return meta, sha256


def check_binding(
    spec: SimilaritySpec, spec_sha256: str, bundle: RepresentationBundle, where: str | Path
) -> None:
    """Raise IntegrityError unless the certified bundle belongs to this spec and obeys its policy."""
    recorded = bundle.parents.get("similarity_spec")
    if recorded != spec_sha256:
        shown = "no similarity_spec" if recorded is None else f"similarity_spec {recorded[:12]}…"
        raise IntegrityError(
            where, f"records {shown}, not the given spec (sha256 {spec_sha256[:12]}…)"
        )
    if bundle.attributes != spec.attribute_names:
        raise IntegrityError(
            where,
            f"was certified for attributes {bundle.attributes}, the spec defines "
            f"{spec.attribute_names}",
        )
    _check_renderer(spec, bundle, where)
    certificate = bundle.certificate
    if certificate is None:
        return
    m = len(spec.vector_names)
    if certificate.m != m:  # recorded in every certified bundle (RepresentationBundle checks it)
        raise IntegrityError(
            where,
            f"was certified with t-noise in {certificate.m} dimensions, the spec has m = {m} "
            "attribute vectors",
        )
    if certificate.epsilon != spec.epsilon:
        raise IntegrityError(
            where,
            f"was certified at epsilon = {certificate.epsilon:g}, the spec fixes "
            f"epsilon = {spec.epsilon:g}",
        )
    problem = spec.policy.violation(certificate) if spec.policy is not None else None
    if problem:
        raise IntegrityError(where, f"breaks the spec's certification policy: {problem}")


def _check_renderer(spec: SimilaritySpec, bundle: RepresentationBundle, where: str | Path) -> None:
    """Rendered data (3D Shapes) of the spec and of the bundle at one image size must come from
    the same renderer (``renderer_sha256``; not checked where either file predates it)."""
    ours, theirs = spec.data, bundle.data
    if ours is None or theirs is None or not ours.dataset == theirs.dataset == "shapes3d":
        return
    if ours.options.get("image_size") != theirs.options.get("image_size"):
        return
    recorded, wanted = recorded_renderer(theirs, where), recorded_renderer(spec.data, "the spec")
    if recorded is not None and wanted is not None and recorded != wanted:
        raise IntegrityError(
            where,
            f"was encoded from 3D Shapes rendered by a renderer with identity {recorded[:12]}…, "
            f"the spec's images by another ({wanted[:12]}…): they render differently",
        )


def certificate_scope(
    spec: SimilaritySpec | None, spec_sha256: str | None, bundle: RepresentationBundle
) -> CertificateScope:
    """The set a report's certificates speak for: the bound spec's, else the bundle's word.

    Call after :func:`check_binding` (it does not re-check that the bundle belongs to the spec).
    """
    if spec is None or spec_sha256 is None:
        epsilon = bundle.certificate.epsilon if bundle.certificate is not None else None
        if epsilon is None or not bundle.attributes:
            raise IntegrityError(None, "a certified bundle names its attributes and epsilon")
        return CertificateScope(attributes=bundle.attributes, epsilon=epsilon)
    return CertificateScope(
        spec_sha256=spec_sha256,
        attributes=spec.attribute_names,
        epsilon=spec.epsilon,
        m=len(spec.vector_names),
        vectors={a.name: a.vectors for a in spec.attributes},
        given={a.name: a.given for a in spec.attributes if a.given is not None},
        coverage=spec.coverage,
    )


def binding_note(scope: CertificateScope) -> str:
    """One line for a report: which spec (hash, epsilon) the certificate was checked against."""
    if scope.spec_sha256 is None:
        return (
            f"epsilon = {scope.epsilon:g} and attributes {', '.join(scope.attributes)} taken on "
            "the producer's word (pass --spec SPEC to bind the certificate to the regulator's spec)"
        )
    return (
        f"bound to similarity spec sha256 {scope.spec_sha256} (epsilon = {scope.epsilon:g}, "
        f"m = {scope.m} vectors)"
    )


def coverage_note(scope: CertificateScope) -> str | None:
    """What the regulator measured of real similar individuals in the set, or None if nothing.

    Latent residual and pixel ratio (``lassi.spec.contract.models.Coverage``) near 1 mean the set holds
    little of a real sibling's move, so a certificate says little about real siblings.
    """
    cov = scope.coverage
    if cov is None:
        return None
    share = max(0.0, 100.0 * (1.0 - cov.latent_residual))
    pixels = "closer to" if cov.pixel_ratio < 1 else "no closer to"
    return (
        f"coverage (the regulator's measurement, {cov.n_siblings} real orientation siblings "
        f">= {cov.min_angle_deg:g} deg away of {cov.n_images} test images): in the Glow's latent "
        f"space the set's member closest to a real sibling reaches about {share:.0f} % of the way "
        f"to it (it leaves {cov.latent_residual:.3f} of a real sibling's latent move: the latent "
        f"residual); decoded, it is {pixels} the sibling than the image's own reconstruction "
        f"(pixel ratio {cov.pixel_ratio:.3f}: its pixel error over the reconstruction's, 0 = the "
        "sibling itself); certificates cover the set, not the part of real siblings outside it"
    )
