"""Attribute vectors a_i in the Glow latent space ("average_diff", paper Sec. 4.1).

One streaming pass over the train split accumulates, per attribute, the mean latent E_G(x) of
every value of the attribute; memory does not grow with the number of images. From those means:

* ``halves``: a = mean over the high half of the values − mean over the low half (a binary
  attribute: label 1 − label 0), one vector per attribute;
* ``pairs``: a_{b,e} = mean E_G(x | v = e) − mean E_G(x | v = b) for every value b below the
  middle and e above it, as the authors' code does for 3D Shapes (orientation, 15 values:
  b ∈ 0..6, e ∈ 8..14, 49 vectors). A binary attribute keeps its single vector.

Conditioned on another attribute B (``define --condition-on B``), each attribute also gets one
halves vector per value g of B, computed over the images with B = g only: on 3D Shapes,
orientation given scale is the orientation move of each object size, which the vectors over all
images average away. The pass then accumulates means per (value of B, value) instead.

Vectors are not normalised. The similarity set is the ℓ2 ball ||t|| ≤ ε over all vectors of all
attributes together.

Images on disk are read through :class:`HashedReads`: each file is hashed from the very bytes
decoded, so the spec records the content hash of exactly the images its vectors came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from lassi.regulator.content_hash import has_files, read_images, sample_path, stored_content_sha256
from lassi.regulator.datasets import DataError
from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.shapes3d import half_of_range
from lassi.spec import AttributeInfo, UsageError
from lassi.spec.contract.data_identity import file_list_sha256
from lassi.spec.contract.models import conditional_names

MAX_MEANS_BYTES = 2 * 2**30  # float64 sums per (group, value): a many-valued --condition-on
VectorChoice = Literal["halves", "pairs"]
VECTOR_CHOICES: tuple[str, ...] = ("halves", "pairs")
ImageReader = Callable[[np.ndarray], np.ndarray]
"""uint8 images [N, H, W, 3] of sample ids [N] (a source's ``images``, or :class:`HashedReads`)."""


class HashedReads:
    """A source's images as read for the attribute vectors, each file hashed from the very bytes
    decoded (:func:`lassi.regulator.content_hash.read_images`), so that
    :meth:`content_sha256` is the data identity of exactly the images the vectors were computed
    from. A file read again must still hash the same (else :class:`DataError` naming it: the
    vectors would mix two versions of the data). Rendered sources have no files: their images
    come from the source and their content hash is None."""

    def __init__(self, source) -> None:
        self.source = source
        self.digests: dict[int, np.ndarray] = {}

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if not has_files(self.source):
            return self.source.images(np.asarray(ids, dtype=np.int64))
        images, digests = read_images(self.source, ids)
        assert digests is not None
        for i, digest in zip(np.asarray(ids).tolist(), digests, strict=True):
            seen = self.digests.setdefault(int(i), digest)
            if not np.array_equal(seen, digest):
                raise DataError(
                    sample_path(self.source, int(i)),
                    "changed while the attribute vectors were computed (its SHA-256 differs from "
                    "the one taken when it was first read); run define again",
                )
        return images

    def content_sha256(self, ids: Sequence[int]) -> str | None:
        """``DataProvenance.content_sha256`` of the samples ``ids``, all of them read (a
        3dshapes.h5's rows; None for a rendered source)."""
        if not has_files(self.source):
            return stored_content_sha256(self.source, ids, None)
        ids = [int(i) for i in ids]
        unread = [i for i in ids if i not in self.digests]
        if unread:
            raise ValueError(f"sample {unread[0]} was not read: its content cannot be recorded")
        names = self.source.file_names(np.asarray(ids, dtype=np.int64))
        return file_list_sha256(ids, names, np.stack([self.digests[i] for i in ids]))


def describe_split(source, attribute: str) -> tuple[str, str]:
    """Human-readable 'with' / 'without' descriptions of an attribute."""
    n = source.num_classes(attribute)
    if n == 2:
        return f"{attribute} = 1", f"{attribute} = 0"
    return (
        f"{attribute} in the high half of its {n} values",
        f"{attribute} in the low half of its {n} values",
    )


def value_pairs(num_values: int) -> list[tuple[int, int]]:
    """Pairs (b, e) with b below and e above the middle value (b < (n − 1) / 2 < e)."""
    half = half_of_range(np.arange(num_values), num_values)
    low, high = np.flatnonzero(half == -1), np.flatnonzero(half == 1)
    return [(int(b), int(e)) for b in low for e in high]


@dataclass
class ValueMeans:
    """Per-value mean latents of one attribute over the train split; with ``given``, also per
    group (value of the attribute ``given``): ``group_sums`` [G, n_values, D], ``group_counts``
    [G, n_values] (``sums`` and ``counts`` are then their totals over the groups)."""

    attribute: str
    sums: np.ndarray  # float64 [n_values, D]
    counts: np.ndarray  # int64 [n_values]
    given: str | None = None
    group_sums: np.ndarray | None = None
    group_counts: np.ndarray | None = None

    @classmethod
    def of_latents(
        cls,
        attribute: str,
        z: np.ndarray,
        values: np.ndarray,
        num_values: int,
        given: str | None = None,
        groups: np.ndarray | None = None,
        num_groups: int = 1,
    ) -> ValueMeans:
        """The means of latents already computed, z [N, D] with the attribute's ``values`` [N]
        (and, with ``given``, each latent's group [N] among ``num_groups``)."""
        stats = cls.empty(attribute, num_values, z.shape[1], given, num_groups)
        stats.add(z, values, np.zeros(len(z), dtype=np.int64) if groups is None else groups)
        return stats.totals()

    @classmethod
    def empty(
        cls, attribute: str, num_values: int, d: int, given: str | None = None, num_groups: int = 1
    ) -> ValueMeans:
        """Nothing accumulated yet (see :meth:`add`, :meth:`totals`)."""
        return cls(
            attribute,
            np.zeros((num_values, d)),
            np.zeros(num_values, dtype=np.int64),
            given,
            np.zeros((num_groups, num_values, d)),
            np.zeros((num_groups, num_values), dtype=np.int64),
        )

    def add(self, z: np.ndarray, values: np.ndarray, groups: np.ndarray) -> None:
        """Accumulate latents z [B, D] (summed in float64) by (group, value)."""
        np.add.at(self.group_sums, (groups, values), np.asarray(z, dtype=np.float64))
        np.add.at(self.group_counts, (groups, values), 1)

    def totals(self) -> ValueMeans:
        """Per-value sums and counts over all groups (the groups dropped without ``given``)."""
        self.sums, self.counts = self.group_sums.sum(axis=0), self.group_counts.sum(axis=0)
        if self.given is None:
            self.group_sums = self.group_counts = None
        return self

    @property
    def num_values(self) -> int:
        return len(self.counts)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Mean latent over all images whose value is in ``values``."""
        count = self.counts[values].sum()
        return self.sums[values].sum(axis=0) / count

    def halves(self, among: str = "the split") -> np.ndarray:
        """High-half mean − low-half mean (binary: label 1 − label 0)."""
        half = half_of_range(np.arange(self.num_values), self.num_values)
        for side, word in ((1, "with"), (-1, "without")):
            if self.counts[half == side].sum() == 0:
                raise UsageError(
                    None, f"attribute '{self.attribute}' has no images {word} it in {among}"
                )
        return self.mean(np.flatnonzero(half == 1)) - self.mean(np.flatnonzero(half == -1))

    def pairs(self) -> tuple[np.ndarray, list[str]]:
        """[P, D] pair vectors mean(v = e) − mean(v = b) and their names ``<attr>_<b>_<e>``."""
        pairs = value_pairs(self.num_values)
        empty = [v for v in sorted({v for p in pairs for v in p}) if self.counts[v] == 0]
        if empty:
            raise UsageError(
                None,
                f"attribute '{self.attribute}' has no train images with value {empty[0]}; "
                "pair vectors need every value (use --vectors halves)",
            )
        vectors = np.stack([self.mean([e]) - self.mean([b]) for b, e in pairs])
        return vectors, [f"{self.attribute}_{b}_{e}" for b, e in pairs]

    def conditional(self) -> tuple[np.ndarray, list[str]]:
        """[G, D] halves vectors within each group g of ``given`` (high-half mean − low-half
        mean over the images with ``given = g``) and their names ``<attr>_given_<given>_<g>``."""
        if self.given is None or self.group_sums is None or self.group_counts is None:
            raise ValueError(f"attribute '{self.attribute}' was not accumulated per group")
        vectors = [
            ValueMeans(self.attribute, sums, counts).halves(f"the images with {self.given} = {g}")
            for g, (sums, counts) in enumerate(zip(self.group_sums, self.group_counts, strict=True))
        ]
        return np.stack(vectors), conditional_names(self.attribute, self.given, len(vectors))


@torch.no_grad()
def value_means(
    glow: Glow,
    source,
    attributes: list[str],
    ids: np.ndarray,
    batch_size: int = 128,
    progress: bool = True,
    given: str | None = None,
    images: ImageReader | None = None,
) -> list[ValueMeans]:
    """One pass over ``ids``: per attribute, the sum and count of E_G(x) for every value (with
    ``given``: for every value within every group ``given = g``). ``images``: how the images
    are read (default: the source's ``images``; ``define`` passes :class:`HashedReads`)."""
    read = images or source.images
    for attribute in [*attributes, *([given] if given is not None else [])]:
        source.check_attribute(attribute)
    if given is not None and given in attributes:
        raise UsageError(None, f"cannot condition on '{given}': it is one of the sensitive attributes")
    labels = source.attributes(np.asarray(ids, dtype=np.int64))
    glow.eval()
    device = next(glow.parameters()).device  # E_G runs where the Glow is; sums on the host
    d = glow.latent_dim
    groups = labels[given] if given is not None else np.zeros(len(ids), dtype=np.int64)
    n_groups = source.num_classes(given) if given is not None else 1
    means_bytes = 8 * d * n_groups * sum(source.num_classes(a) for a in attributes)
    if means_bytes > MAX_MEANS_BYTES:
        raise UsageError(
            None,
            f"the per-value means need {means_bytes / 2**30:.1f} GiB ({n_groups} groups of "
            f"{given}), over the {MAX_MEANS_BYTES / 2**30:.0f} GiB limit: condition on an "
            "attribute with fewer values",
        )
    stats = [ValueMeans.empty(a, source.num_classes(a), d, given, n_groups) for a in attributes]
    bar = tqdm(
        total=len(ids), desc="attribute vectors", unit="img", disable=not progress, dynamic_ncols=True
    )
    with glow.inverse_cached():
        for start in range(0, len(ids), batch_size):
            batch = slice(start, start + batch_size)
            x = preprocess(read(ids[batch]), glow.n_bits).to(device)
            z = glow.encode(x).double().cpu().numpy()
            for s in stats:
                s.add(z, labels[s.attribute][batch], groups[batch])
            bar.update(len(z))
    bar.close()
    return [s.totals() for s in stats]


def vectors_from_means(
    stats: list[ValueMeans], source, vectors: VectorChoice = "pairs"
) -> tuple[np.ndarray, list[AttributeInfo]]:
    """The spec's vectors [m, D] (float32) and one AttributeInfo per attribute.

    ``vectors = "pairs"`` gives pair vectors to every multi-valued attribute; binary
    attributes (and every attribute under ``"halves"``) get their single halves vector. Means
    accumulated with ``given`` append one conditional vector per group (:meth:`conditional`).
    """
    if vectors not in VECTOR_CHOICES:
        raise UsageError(None, f"vectors must be one of {', '.join(VECTOR_CHOICES)}, got {vectors!r}")
    rows, infos = [], []
    for s in stats:
        half = half_of_range(np.arange(s.num_values), s.num_values)
        choice = "pairs" if vectors == "pairs" and s.num_values > 2 else "halves"
        if choice == "pairs":
            block, names = s.pairs()
        else:
            block, names = s.halves()[None], [s.attribute]
        if s.given is not None:
            extra, extra_names = s.conditional()
            block, names = np.concatenate([block, extra]), names + extra_names
        norms = np.linalg.norm(block, axis=1)
        if not (norms > 0).all():
            which = names[int(np.argmin(norms))]
            raise UsageError(
                None,
                f"attribute vector '{which}' is zero: its two groups of images have the same mean latent",
            )
        rows.append(block.astype(np.float32))
        positive, negative = describe_split(source, s.attribute)
        infos.append(
            AttributeInfo(
                name=s.attribute,
                num_values=s.num_values,
                positive=positive,
                negative=negative,
                n_positive=int(s.counts[half == 1].sum()),
                n_negative=int(s.counts[half == -1].sum()),
                vector_norm=float(norms.mean()),
                vectors=choice,
                vector_names=names,
                value_counts=[int(c) for c in s.counts],
                given=s.given,
                given_counts=[] if s.group_counts is None else s.group_counts.sum(axis=1).tolist(),
            )
        )
    return np.concatenate(rows), infos


def attribute_vectors(
    glow: Glow,
    source,
    attributes: list[str],
    ids: np.ndarray,
    vectors: VectorChoice = "pairs",
    batch_size: int = 128,
    progress: bool = True,
    given: str | None = None,
) -> tuple[np.ndarray, list[AttributeInfo]]:
    """average_diff vectors [m, D] (float32) for ``attributes`` over the images ``ids`` (with
    ``given``: plus one halves vector per value of that attribute, see :meth:`ValueMeans.conditional`)."""
    stats = value_means(glow, source, attributes, ids, batch_size, progress, given)
    return vectors_from_means(stats, source, vectors)


def shift(z: torch.Tensor, t: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """z + t A = z + Σ_i t_i a_i (Sec. 3), A = ``vectors`` [m, D], in z's dtype; broadcasting:
    z [..., D] (one latent [D]) and offsets t [..., m] -> [..., D]."""
    return z + t.to(z.dtype) @ vectors.to(z.dtype)
