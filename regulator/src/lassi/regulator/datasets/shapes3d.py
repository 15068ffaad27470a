"""The built-in 3D Shapes as an :class:`~lassi.regulator.datasets.source.ImageSource`: ids index
the 480 000 factor combinations of :class:`lassi.regulator.shapes3d.Shapes3D`."""

from __future__ import annotations

import numpy as np

from lassi.regulator.datasets.source import ImageSource, as_ids
from lassi.regulator.shapes3d import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    N_IMAGES,
    Shapes3D,
    make_splits,
    renderer_sha256,
)


class Shapes3DFactors(ImageSource):
    """What every 3D Shapes source shares: ids index the 480 000 factor combinations, labels are
    factor value indices, and ``_splits`` holds each split's ids."""

    _splits: dict[str, np.ndarray]

    def split_ids(self, split: str) -> np.ndarray:
        self.check_split(split)
        return self._splits[split].copy()

    def attributes(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        factors = Shapes3D.index_to_factors(as_ids(ids, N_IMAGES))
        return {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}

    def num_classes(self, attribute: str) -> int:
        self.check_attribute(attribute)
        return FACTOR_SIZES[FACTOR_NAMES.index(attribute)]


class Shapes3DSource(Shapes3DFactors):
    """Procedural 3D Shapes; ids index the 480 000 factor combinations, labels are factor
    value indices. See :func:`lassi.regulator.shapes3d.make_splits` for ``correlate``."""

    name = "shapes3d"

    def __init__(
        self,
        image_size: int = 64,
        seed: int = 0,
        n_train: int = 50_000,
        n_val: int = 5_000,
        n_test: int = 5_000,
        correlate: tuple[str, str, float] | None = None,
    ) -> None:
        self.renderer = Shapes3D(image_size)
        self.image_size = self.renderer.image_size
        self.attribute_names = list(FACTOR_NAMES)
        self.seed = seed
        self.correlate = correlate
        self._splits = make_splits(seed, n_train, n_val, n_test, correlate)

    def images(self, ids: np.ndarray) -> np.ndarray:
        return self.renderer.render(Shapes3D.index_to_factors(as_ids(ids, N_IMAGES)))

    def pipeline_sha256(self) -> str:
        """The renderer's identity at this image size (:func:`lassi.regulator.shapes3d.renderer_sha256`)."""
        return renderer_sha256(self.image_size)
