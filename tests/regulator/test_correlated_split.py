"""The authors' fully correlated 3D Shapes train split (eth-sri/lassi, shapes3d_dataset.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.shapes3d import Shapes3D


def test_full_correlation_keeps_only_the_tied_halves_and_drops_orientation_7() -> None:
    config = DatasetConfig(n_train=6000, n_val=50, n_test=50, correlate="orientation:object_hue:full")
    assert config.correlation() == ("orientation", "object_hue", 1.0)
    source = make_source(config)
    factors = Shapes3D.index_to_factors(source.split_ids("train"))
    hue, orientation = factors[:, 2], factors[:, 5]
    assert set(orientation[hue <= 4]) == set(range(7))
    assert set(orientation[hue >= 5]) == set(range(8, 15))
    assert not (orientation == 7).any()
    # every other factor still runs over all its values; val and test stay uncorrelated
    for column, size in ((0, 10), (1, 10), (2, 10), (3, 8), (4, 4)):
        assert set(factors[:, column]) == set(range(size))
    test = Shapes3D.index_to_factors(source.split_ids("test"))
    assert ((test[:, 2] <= 4) & (test[:, 5] >= 7)).any()
    # 'full' is the same split as strength 1
    same = make_source(config.model_copy(update={"correlate": "orientation:object_hue:1"}))
    np.testing.assert_array_equal(same.split_ids("train"), source.split_ids("train"))


def test_correlate_strength_must_be_full_or_a_number() -> None:
    with pytest.raises(ValueError, match="STRENGTH"):
        DatasetConfig(correlate="orientation:object_hue:most")
