"""Attribute vectors a_i in the Glow latent space ("average_diff", paper Sec. 4.1).

a = mean E_G(x) over images with the attribute − mean E_G(x) over images without it, over the
train split, not normalised. For a multi-valued factor (3D Shapes orientation, 15 values) "with"
is the high half of its values and "without" the low half. The means are accumulated in one
streaming pass, so memory does not grow with the number of images.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from lassi.regulator.datasets import binary_split
from lassi.regulator.glow import Glow, preprocess
from lassi.spec import AttributeInfo, UsageError


def describe_split(source, attribute: str) -> tuple[str, str]:
    """Human-readable 'with' / 'without' descriptions of an attribute."""
    n = source.num_classes(attribute)
    if n == 2:
        return f"{attribute} = 1", f"{attribute} = 0"
    return (
        f"{attribute} in the high half of its {n} values",
        f"{attribute} in the low half of its {n} values",
    )


@torch.no_grad()
def attribute_vectors(
    glow: Glow,
    source,
    attributes: list[str],
    ids: np.ndarray,
    batch_size: int = 128,
    progress: bool = True,
) -> tuple[np.ndarray, list[AttributeInfo]]:
    """average_diff vectors [m, D] (float32) for ``attributes`` over the images ``ids``."""
    for attribute in attributes:
        source.check_attribute(attribute)
    masks = [binary_split(source, a, ids) for a in attributes]
    for attribute, (pos, neg) in zip(attributes, masks, strict=True):
        if pos.sum() == 0 or neg.sum() == 0:
            raise UsageError(
                None,
                f"attribute '{attribute}' has no images {'with' if pos.sum() == 0 else 'without'} it in the split",
            )
    glow.eval()
    d = glow.latent_dim
    sums = np.zeros((len(attributes), 2, d), dtype=np.float64)
    bar = tqdm(
        total=len(ids),
        desc="attribute vectors",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    with glow.inverse_cached():
        for start in range(0, len(ids), batch_size):
            batch = slice(start, start + batch_size)
            z = glow.encode(preprocess(source.images(ids[batch]), glow.n_bits)).double().numpy()
            for i, (pos, neg) in enumerate(masks):
                sums[i, 0] += z[pos[batch]].sum(axis=0)
                sums[i, 1] += z[neg[batch]].sum(axis=0)
            bar.update(len(z))
    bar.close()
    vectors = np.zeros((len(attributes), d), dtype=np.float32)
    infos = []
    for i, (attribute, (pos, neg)) in enumerate(zip(attributes, masks, strict=True)):
        vector = sums[i, 0] / pos.sum() - sums[i, 1] / neg.sum()
        if not np.linalg.norm(vector) > 0:
            raise UsageError(
                None,
                f"attribute '{attribute}' gives a zero vector: images with and without it have the same mean latent",
            )
        vectors[i] = vector.astype(np.float32)
        positive, negative = describe_split(source, attribute)
        infos.append(
            AttributeInfo(
                name=attribute,
                num_values=source.num_classes(attribute),
                positive=positive,
                negative=negative,
                n_positive=int(pos.sum()),
                n_negative=int(neg.sum()),
                vector_norm=float(np.linalg.norm(vector)),
            )
        )
    return vectors, infos
