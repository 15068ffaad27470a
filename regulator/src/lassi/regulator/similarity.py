"""The similarity spec: who counts as similar (paper Sec. 3 and 4.1).

S(x) = { D_G(E_G(x) + Σ_i t_i a_i) : ||t||_2 ≤ ε }. ``define_spec`` writes it (Glow weights,
attribute vectors, ε, preprocessing, provenance: for images on disk, the per-file content hash of
exactly the images the vectors were computed from) as one artifact; ``SimilaritySet.load`` reads
it back for the producer and the auditor; ``fidelity`` measures on 3D Shapes how well the
single orientation vector follows the true factor (``coverage`` how much of the real siblings
the whole set contains; ``show`` draws it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lassi.regulator.attribute_methods import MethodConfig, learned_vectors
from lassi.regulator.attributes import (
    HashedReads,
    ValueMeans,
    VectorChoice,
    shift,
    value_means,
    vectors_from_means,
)
from lassi.regulator.coverage import coverage, describe
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.shapes3d import SHAPE_NAMES
from lassi.regulator.training import TOOL, build_glow
from lassi.spec import (
    Artifact,
    Fidelity,
    GlowArtifact,
    SimilaritySpec,
    UsageError,
    read_artifact,
    write_artifact,
)
from lassi.spec.contract.models import CertificationPolicy
from lassi.spec.contract.torch_state import load_module, module_tensors

FIDELITY_MIN_ANGLE = 20.0


def load_glow(path: str | Path) -> tuple[Glow, Artifact[GlowArtifact]]:
    """A trained Glow from a ``glow`` artifact, in eval mode."""
    artifact = read_artifact(path, expect=GlowArtifact)
    glow = build_glow(artifact.meta.flow)
    load_module(glow, artifact.weights("glow."), path)
    return glow.eval(), artifact


@dataclass
class SimilaritySet:
    """A loaded similarity spec: the Glow, the attribute vectors A [m, D] and ε."""

    meta: SimilaritySpec
    glow: Glow
    vectors: torch.Tensor
    sha256: str
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> SimilaritySet:
        artifact = read_artifact(path, expect=SimilaritySpec)
        glow = build_glow(artifact.meta.flow)
        load_module(glow, artifact.weights("glow."), path)
        glow.eval()
        glow.cache_inverse()
        vectors = torch.from_numpy(artifact.tensors["attribute_vectors"].copy())
        return cls(artifact.meta, glow, vectors, artifact.sha256, Path(path))

    @property
    def epsilon(self) -> float:
        return self.meta.epsilon

    @property
    def m(self) -> int:
        return int(self.vectors.shape[0])

    @torch.no_grad()
    def encode_images(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """E_G of uint8 images [N, H, W, 3] -> latents [N, D] (on the CPU; E_G runs where the
        Glow's parameters are)."""
        device = next(self.glow.parameters()).device
        parts = []
        for start in range(0, len(images), batch_size):
            x = preprocess(images[start : start + batch_size], self.meta.preprocessing.n_bits)
            parts.append(self.glow.encode(x.to(device)).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, self.glow.latent_dim)

    def shift(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_G + Σ_i t_i a_i with this spec's vectors (see :func:`shift`)."""
        return shift(z, t, self.vectors)

    def check_extends(self, base: SimilaritySet) -> list[str]:
        """Check that this spec's set contains ``base``'s and returns the names of the vectors it
        adds: the same Glow (every weight), preprocessing and ε, vectors that begin with
        ``base``'s (name for name, value for value) and at least one more. Then every t of
        ``base``'s ε-ball is a t of this one with the extra coordinates 0, so S_base(x) ⊆ S(x)."""

        def refuse(problem: str) -> UsageError:
            return UsageError(self.path, f"does not extend the spec {base.path}: {problem}")

        if self.meta.flow != base.meta.flow or self.meta.preprocessing != base.meta.preprocessing:
            raise refuse("another Glow configuration or preprocessing")
        mine, theirs = self.glow.state_dict(), base.glow.state_dict()
        if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
            raise refuse("another Glow (its weights differ)")
        if self.epsilon != base.epsilon:
            raise refuse(f"epsilon {self.epsilon:g}, not {base.epsilon:g}")
        names, base_names = self.meta.vector_names, base.meta.vector_names
        if names[: base.m] != base_names or not torch.equal(self.vectors[: base.m], base.vectors):
            raise refuse(f"its first {base.m} attribute vectors are not the spec's")
        if self.m == base.m:
            raise refuse("it adds no attribute vector")
        return names[base.m :]


def define_spec(
    glow_path: Path,
    attributes: list[str],
    epsilon: float,
    data: DatasetConfig,
    out: Path,
    max_images: int | None = None,
    fidelity_images: int = 32,
    progress: bool = True,
    policy: CertificationPolicy | None = None,
    vectors: VectorChoice = "pairs",
    device: str | torch.device = "cpu",
    given: str | None = None,
    method: MethodConfig | None = None,
) -> Path:
    """Compute the attribute vectors over the train split and write the similarity spec.

    ``vectors``: "pairs" (one vector per low/high value pair of a multi-valued attribute) or
    "halves" (one high-minus-low vector per attribute); binary attributes have one either way.
    ``given``: also one halves vector of each attribute per value of this attribute, over the
    images with that value only (``define --condition-on``; see ``lassi.regulator.attributes``).
    On 3D Shapes with orientation among the attributes, also measures the fidelity of the
    single halves orientation vector and the coverage of the whole set (both printed).
    ``device``: where E_G and D_G run (the means are summed in float64 on the host).
    ``method``: how the vectors are computed (default average_diff; ``perpendicular``,
    ``ramaswamy`` and ``discover`` are in :mod:`lassi.regulator.attribute_methods`, which
    ``vectors`` and ``given`` do not apply to; 3D Shapes then measures their coverage only)."""
    method = method or MethodConfig()
    learned = method.method != "average_diff"
    if learned and given is not None:
        raise UsageError(None, f"--condition-on applies to --method average, not {method.method}")
    if not learned:
        method.check(attributes)
    if not epsilon > 0 or not np.isfinite(epsilon):
        raise UsageError(None, f"epsilon must be a positive number, got {epsilon}")
    glow, glow_artifact = load_glow(glow_path)
    glow.to(device)
    if data.image_size != glow.image_size:
        data = data.model_copy(update={"image_size": glow.image_size})
    data.check_rendered_as(glow_artifact.meta.data, glow_path)  # the Glow's images render so here
    source = make_source(data)
    ids = source.split_ids("train")
    if max_images is not None:
        ids = ids[:max_images]
    record = None
    reads = HashedReads(source)  # the spec records the hash of the very images read
    if learned:
        val_ids = source.split_ids("val")
        if max_images is not None:
            val_ids = val_ids[:max_images]
        stats: list[ValueMeans] = []
        matrix, infos, record = learned_vectors(
            glow, source, attributes, ids, val_ids, epsilon, method,
            validation=lambda v: data.provenance("val", len(v)).with_content(reads.content_sha256(v)),
            progress=progress, images=reads,
        )  # fmt: skip
    else:
        stats = value_means(
            glow, source, attributes, ids, progress=progress, given=given, images=reads
        )
        matrix, infos = vectors_from_means(stats, source, vectors)
    fid = cov = None
    if data.dataset in ("shapes3d", "shapes3d-h5") and ("orientation" in attributes or method.method == "discover"):
        if not learned:
            halves = stats[attributes.index("orientation")].halves().astype(np.float32)
            fid = fidelity(glow, source, torch.from_numpy(halves), epsilon, fidelity_images)
        choice = vectors if given is None else f"{vectors} + halves per {given}"
        choice = method.method if learned else choice
        cov = coverage(
            glow, source, torch.from_numpy(matrix), epsilon, choice, n_images=fidelity_images
        )
        if progress:
            if fid is not None:
                print(describe_fidelity(fid, epsilon))
            print(describe(cov))
    meta = SimilaritySpec(
        tool=TOOL,
        flow=glow_artifact.meta.flow,
        preprocessing=glow_artifact.meta.preprocessing,
        data=data.provenance("train", len(ids)).with_content(reads.content_sha256(ids)),
        attributes=infos,
        attribute_method=method.method,
        method=record,
        epsilon=epsilon,
        fidelity=fid,
        policy=policy,
        coverage=cov,
        parents={"glow": glow_artifact.sha256},
    )
    tensors = module_tensors(glow, "glow.")
    tensors["attribute_vectors"] = matrix
    write_artifact(out, meta, tensors)
    if progress:
        # per attribute, as the report's scope names them: a binary attribute gets its one halves
        # vector even under --vectors pairs
        kind = method.method if learned else ", ".join(f"{i.name}: {i.vectors}" for i in infos)
        print(
            f"wrote {out} (attributes {', '.join(i.name for i in infos)}, {len(matrix)} vectors "
            f"({kind}"
            + ("" if given is None else f" + one halves vector per value of {given}")
            + f"), epsilon {epsilon})"
        )
        print(describe_reach(matrix, epsilon, stats))
        print(f"vectors computed from: {meta.data.describe()}")
    return out


def describe_reach(matrix: np.ndarray, epsilon: float, stats: list[ValueMeans]) -> str:
    """The largest latent move in the set, max_{||t|| <= eps} ||t A|| = eps · s_max(A), against
    each attribute's high-minus-low move (the regulator's yardstick for the set's size: m pair
    vectors whose mean is that move reach sqrt(m) times further along it than one vector)."""
    reach = epsilon * float(np.linalg.norm(matrix.astype(np.float64), 2))
    yardsticks = [(s.attribute, float(np.linalg.norm(s.halves()))) for s in stats]
    against = ", ".join(
        f"{reach / n:.2f} x the high-minus-low move of {a}" for a, n in yardsticks if n > 0
    )
    return (
        f"largest latent move in the set: {reach:.3f} (eps x largest singular value of the vectors)"
        + (f" = {against}" if against else "")
    )


def _shapes_renderer(source):
    renderer = getattr(source, "renderer", None)
    if renderer is None:
        from lassi.regulator.shapes3d import Shapes3D

        renderer = Shapes3D(source.image_size)
    return renderer


def describe_fidelity(fid: Fidelity, epsilon: float) -> str:
    """One line for :func:`fidelity`'s figure, naming the ε it was measured at."""
    per_shape = ", ".join(f"{k} {v:.3f}" for k, v in fid.per_shape.items())
    return (
        f"fidelity of the single orientation vector at eps {epsilon:g}: {fid.overall:.3f} "
        f"({per_shape}; 1.0 = useless, 0 = perfect)"
    )


@torch.no_grad()
def fidelity(
    glow: Glow,
    source,
    vector: torch.Tensor,
    epsilon: float,
    n_images: int = 32,
    strip_points: int = 31,
) -> Fidelity:
    """How well moving along ``vector`` reproduces the true orientation siblings (3D Shapes).

    For each test image and each ground-truth orientation sibling at least 20° away: the mean
    absolute pixel error between the sibling and the closest image on a strip
    D_G(E_G(x) + t·a), t on a fine grid over [−1.5ε, 1.5ε], divided by the same error for the
    plain reconstruction D_G(E_G(x)). Reported as the ratio of summed errors, overall and per
    shape (1.0 = the vector is useless, 0 = perfect).
    """
    from lassi.regulator.shapes3d import Shapes3D

    renderer = _shapes_renderer(source)
    ids = source.split_ids("test")[:n_images]
    factors = Shapes3D.index_to_factors(ids)
    angles = np.linspace(-30.0, 30.0, 15)
    device = next(glow.parameters()).device  # E_G and D_G run where the Glow is
    ts = torch.linspace(-1.5 * epsilon, 1.5 * epsilon, strip_points).to(device)
    sums = {name: [0.0, 0.0] for name in SHAPE_NAMES}
    glow.eval()
    with glow.inverse_cached():
        for f in factors:
            siblings = Shapes3D.siblings(f[None])[0]
            sib_x = preprocess(renderer.render(siblings), glow.n_bits).to(device)
            x = sib_x[int(f[5])][None]
            z = glow.encode(x)
            recon = glow.decode(z)
            strip = glow.decode(z + ts[:, None] * vector[None].to(z.device, z.dtype))
            far = np.abs(angles - angles[int(f[5])]) >= FIDELITY_MIN_ANGLE - 1e-6
            for j in np.flatnonzero(far):
                target = sib_x[j]
                e_strip = (strip - target).abs().mean(dim=(1, 2, 3)).min()
                e_recon = (recon[0] - target).abs().mean()
                name = SHAPE_NAMES[int(f[4])]
                sums[name][0] += float(e_strip)
                sums[name][1] += float(e_recon)
    per_shape = {k: v[0] / v[1] for k, v in sums.items() if v[1] > 0}
    total_strip = sum(v[0] for v in sums.values())
    total_recon = sum(v[1] for v in sums.values())
    return Fidelity(
        overall=total_strip / total_recon,
        per_shape=per_shape,
        n_images=len(ids),
        min_angle_deg=FIDELITY_MIN_ANGLE,
        t_range=1.5 * epsilon,
    )
