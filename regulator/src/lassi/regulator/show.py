"""Pictures of a similarity spec for the regulator to judge (paper Fig. 4 and 5).

Per test input: strips D_G(E_G(x) + t·a_i), t evenly over [−ε, ε], along a few representative
vectors (all of them when there are at most four; for pair vectors the widest pair, a middle
one and the narrowest; for vectors conditioned on another attribute, those of its first and
last value). On 3D Shapes two more rows follow: the point of the set closest to each
real orientation sibling, D_G(z + t*_j A) with t*_j from ball-constrained least squares (the
coverage measure), and the 15 real siblings themselves, so each column of the two rows compares
what the set offers with what the sibling is. Every row is labelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lassi.regulator.coverage import sibling_projections
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.glow import postprocess
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import SimilaritySpec, atomic_path

ALL_UP_TO = 4
LABEL_WIDTH = 250


def representative_vectors(meta: SimilaritySpec) -> list[int]:
    """Rows of the spec's vector matrix to draw strips along."""
    names = meta.vector_names
    if len(names) <= ALL_UP_TO:
        return list(range(len(names)))
    chosen: list[int] = []
    offset = 0
    for attribute in meta.attributes:
        own = attribute.names
        base = own[: len(own) - attribute.given_values]  # the attribute's own vectors
        if attribute.vectors == "pairs":
            pairs = [tuple(int(v) for v in name.rsplit("_", 2)[1:]) for name in base]
            lows = sorted({b for b, _ in pairs})
            highs = sorted({e for _, e in pairs})
            wanted = [(lows[0], highs[-1]), (lows[len(lows) // 2], highs[len(highs) // 2]), (lows[-1], highs[0])]
            picks = [pairs.index(p) for p in dict.fromkeys(wanted) if p in pairs]
        else:
            picks = [0]
        if attribute.given_values:  # the first and last group's conditional vector
            picks += list(dict.fromkeys([len(base), len(own) - 1]))
        chosen += [offset + p for p in picks]
        offset += len(own)
    return chosen


def labelled_grid(rows: list[tuple[str, np.ndarray]], path: Path, title: str, pad: int = 2) -> None:
    """One PNG: a title line, then each row's label on the left and its uint8 images."""
    from PIL import Image, ImageDraw

    h, w = rows[0][1].shape[1:3]
    columns = max(len(images) for _, images in rows)
    row_h = max(h, 14) + pad
    top = 18
    canvas = Image.new(
        "RGB", (LABEL_WIDTH + columns * (w + pad) + pad, top + len(rows) * row_h + pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black")
    for r, (label, images) in enumerate(rows):
        y = top + r * row_h
        draw.text((4, y + max(0, (h - 11) // 2)), label, fill="black")
        for c, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (LABEL_WIDTH + pad + c * (w + pad), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


@torch.no_grad()
def show_spec(
    spec_path: Path,
    out: Path,
    n_inputs: int = 6,
    steps: int = 9,
    data: DatasetConfig | None = None,
    data_root: Path | None = None,
    csv: Path | None = None,
    allow_symlinks_outside_root: bool = False,
) -> SimilaritySpec:
    """Write the labelled strips of ``spec_path`` (see the module docstring) to ``out``.

    The test images are those of the data the spec records, read from ``data_root`` (the
    caller's copy; a path recorded in the spec is never followed), or ``data`` when given."""
    sim = SimilaritySet.load(spec_path)
    config = data or DatasetConfig.from_provenance(
        sim.meta.data,
        where=spec_path,
        root=data_root,
        csv=csv,
        allow_symlinks_outside_root=allow_symlinks_outside_root,
    )
    source = make_source(config)
    ids = source.split_ids("test")[:n_inputs]
    images = source.images(ids)
    eps = sim.epsilon
    ts = torch.linspace(-eps, eps, steps)
    names = sim.meta.vector_names
    chosen = representative_vectors(sim.meta)
    z_all = sim.encode_images(images)
    vectors = sim.vectors.to(z_all.dtype)
    rows: list[tuple[str, np.ndarray]] = []
    for i in range(len(ids)):
        for a in chosen:
            strip = postprocess(sim.glow.decode(z_all[i][None] + ts[:, None] * vectors[a][None]))
            label = f"x{i}: input | t*{names[a]}, t={-eps:g}..{eps:g}"
            rows.append((label, np.concatenate([images[i][None], strip])))
        if config.dataset in ("shapes3d", "shapes3d-h5"):
            from lassi.regulator.shapes3d import ORIENTATIONS, Shapes3D

            factors = Shapes3D.index_to_factors(ids[i : i + 1])
            own = int(factors[0, 5])
            siblings = source.renderer.render(Shapes3D.siblings(factors)[0])
            p = sibling_projections(sim.glow, siblings, own, sim.vectors, eps)  # inverse cached
            span = f"{ORIENTATIONS[0]:g}..{ORIENTATIONS[-1]:g} deg"
            rows.append((f"x{i}: closest in S(x), {span}", postprocess(p["closest"])))
            rows.append((f"x{i}: real siblings, {span} (own: col {own + 1})", siblings))
    title = (
        f"{spec_path.name}: {len(names)} vectors, eps {eps:g}; strips along "
        f"{len(chosen)} of them" + ("" if len(chosen) == len(names) else " (representative)")
    )
    labelled_grid(rows, out, title)
    return sim.meta
