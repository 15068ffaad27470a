"""The built-in 3D Shapes images are code: their identity is the renderer's, taken at run time.

``renderer_sha256`` hashes probe images rendered now, so any change in how images render (the
renderer's code, numpy, a platform) changes it. It is recorded in the data provenance of rendered
data and is part of every cache and checkpoint key of it; a file recording another identity is
refused where its data is read again or bound to another file's (exit 4), a file written before
the identity was recorded is read as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import make
from lassi.regulator import shapes3d
from lassi.regulator.content_hash import CheckedImages
from lassi.regulator.data_config import DatasetConfig, dataset_config_from_options
from lassi.regulator.datasets import Shapes3DSource
from lassi.spec import LassiError
from lassi.spec.contract.binding import check_binding
from lassi.spec.contract.data_identity import RENDERER_OPTION

INTEGRITY, INVALID = 4, 3
SMALL = dict(image_size=8, n_train=6, n_val=2, n_test=2)


@pytest.fixture
def other_renderer(monkeypatch: pytest.MonkeyPatch):
    """Within the test, the renderer paints every hue a little lighter (a changed renderer)."""

    def switch() -> None:
        shapes3d.renderer_sha256.cache_clear()
        monkeypatch.setattr(shapes3d, "HUES", shapes3d.HUES + 0.03)

    shapes3d.renderer_sha256.cache_clear()
    yield switch
    monkeypatch.undo()
    shapes3d.renderer_sha256.cache_clear()


def _options(**given) -> dict:
    options = dict.fromkeys(
        ("dataset", "data_root", "csv", "image_size", "data_seed", "n_train", "n_val", "n_test", "correlate")
    )
    return options | given


def test_renderer_identity_is_of_the_images_rendered_now(other_renderer) -> None:
    first = shapes3d.renderer_sha256(8)
    assert first == shapes3d.renderer_sha256(8) and len(first) == 64
    assert shapes3d.renderer_sha256(16) != first  # another image size is other images
    assert Shapes3DSource(**SMALL).pipeline_sha256() == first
    before = Shapes3DSource(**SMALL).images(np.arange(3))
    other_renderer()
    assert not np.array_equal(Shapes3DSource(**SMALL).images(np.arange(3)), before)
    assert shapes3d.renderer_sha256(8) != first


def test_provenance_records_the_renderer_for_rendered_data_only(tmp_path: Path) -> None:
    data = DatasetConfig(**SMALL).provenance("train", 6)
    assert data.options[RENDERER_OPTION] == shapes3d.renderer_sha256(8)
    (tmp_path / "attributes.csv").write_text("file,split,a\n")
    folder = DatasetConfig(dataset="folder", root=tmp_path, image_size=8).provenance("train", 0)
    assert RENDERER_OPTION not in folder.options
    # read back here: the same renderer, the same configuration
    assert DatasetConfig.from_provenance(data, "spec") == DatasetConfig(**SMALL)


def test_data_rendered_elsewhere_is_refused_where_it_is_read_again(other_renderer) -> None:
    recorded = DatasetConfig(**SMALL).provenance("train", 6)
    older = recorded.model_copy(update={"options": {k: v for k, v in recorded.options.items() if k != RENDERER_OPTION}})
    other_renderer()
    with pytest.raises(LassiError, match="render differently here") as error:
        DatasetConfig.from_provenance(recorded, "spec.safetensors")
    assert error.value.exit_code == INTEGRITY and "spec.safetensors" in str(error.value)
    assert "\n" not in str(error.value)
    # the producer's data taken against the spec's record: refused the same way
    with pytest.raises(LassiError, match="render differently here") as error:
        dataset_config_from_options(_options(image_size=8, n_train=6, n_val=2, n_test=2),
                                    recorded=recorded, where="spec.safetensors")  # fmt: skip
    assert error.value.exit_code == INTEGRITY
    # a file written before the identity was recorded is read as before
    assert DatasetConfig.from_provenance(older, "spec") == DatasetConfig(**SMALL)


def test_a_recorded_identity_that_is_not_a_hash_is_an_invalid_artifact() -> None:
    recorded = DatasetConfig(**SMALL).provenance("train", 6)
    for bad in ("abc", 7, "G" * 64):
        forged = recorded.model_copy(update={"options": recorded.options | {RENDERER_OPTION: bad}})
        with pytest.raises(LassiError, match=RENDERER_OPTION) as error:
            DatasetConfig.from_provenance(forged, "spec")
        assert error.value.exit_code == INVALID


def test_binding_refuses_a_bundle_rendered_by_another_renderer() -> None:
    spec, _ = make("similarity_spec")
    bundle, _ = make("representations")
    ours = DatasetConfig(**SMALL).provenance("train", 6)
    spec = spec.model_copy(update={"data": ours})
    bundle = bundle.model_copy(
        update={"attributes": spec.attribute_names, "certificate": None, "data": ours.model_copy(update={"split": "test"})}
    )
    check_binding(spec, "a" * 64, bundle, "bundle.safetensors")  # the same renderer: bound
    other = ours.options | {RENDERER_OPTION: "0" * 64}
    forged = bundle.model_copy(update={"data": bundle.data.model_copy(update={"options": other})})
    with pytest.raises(LassiError, match="render differently") as error:
        check_binding(spec, "a" * 64, forged, "bundle.safetensors")
    assert error.value.exit_code == INTEGRITY and "bundle.safetensors" in str(error.value)
    older = {k: v for k, v in ours.options.items() if k != RENDERER_OPTION}
    unrecorded = bundle.model_copy(update={"data": bundle.data.model_copy(update={"options": older})})
    check_binding(spec, "a" * 64, unrecorded, "bundle.safetensors")  # written before: not checked


def test_glow_training_data_identity_changes_with_the_renderer(other_renderer) -> None:
    config = DatasetConfig(**SMALL)
    ids = np.arange(4)
    rendered = config.model_dump(mode="json")
    first = CheckedImages(Shapes3DSource(**SMALL), ids, rendered=rendered).identity
    assert CheckedImages(Shapes3DSource(**SMALL), ids, rendered=rendered).identity == first
    other_renderer()
    assert CheckedImages(Shapes3DSource(**SMALL), ids, rendered=rendered).identity != first


def test_audit_refuses_a_bundle_rendered_elsewhere(other_renderer) -> None:
    from lassi.regulator.audit_data import auditor_data_config

    recorded = DatasetConfig(**SMALL).provenance("test", 2)
    assert auditor_data_config(recorded, None, Path("bundle.safetensors")) == DatasetConfig(**SMALL)
    other_renderer()
    with pytest.raises(LassiError, match="render differently here") as error:
        auditor_data_config(recorded, None, Path("bundle.safetensors"))
    assert error.value.exit_code == INTEGRITY and "bundle.safetensors" in str(error.value)


def test_rendered_images_hash_follows_the_renderer(other_renderer) -> None:
    """Ground truth keys its checkpoint by the siblings' images (built-in renderer or a file's)."""
    blocks = [shapes3d.Shapes3D.siblings(np.array([[1, 2, 3, 4, 0, 5]]))[0], shapes3d.PROBE_FACTORS]
    renderer = shapes3d.Shapes3D(8)
    first = shapes3d.rendered_sha256(renderer, iter(blocks))
    assert shapes3d.rendered_sha256(renderer, iter(blocks)) == first
    assert shapes3d.rendered_sha256(renderer, iter(blocks[:1])) != first
    assert shapes3d.rendered_sha256(shapes3d.Shapes3D(16), iter(blocks)) != first
    other_renderer()
    assert shapes3d.rendered_sha256(renderer, iter(blocks)) != first


def test_decoder_identity_follows_the_decoding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Images on disk are files and code: the latent cache is keyed by the decoder's identity too."""
    from PIL import Image

    from lassi.regulator.datasets import FolderSource, images

    (tmp_path / "attributes.csv").write_text("file,split,a\na.png,train,0\n")
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    images.decode_sha256.cache_clear()
    first = FolderSource(tmp_path, image_size=8).pipeline_sha256()
    assert first == images.decode_sha256(8, None, "bicubic")
    assert images.decode_sha256(16, None, "bicubic") != first
    assert images.decode_sha256(8, None, "area") != first
    monkeypatch.setitem(images.RESAMPLING, "bicubic", Image.Resampling.BILINEAR)  # a changed resize
    images.decode_sha256.cache_clear()
    try:
        assert FolderSource(tmp_path, image_size=8).pipeline_sha256() != first
    finally:
        monkeypatch.undo()
        images.decode_sha256.cache_clear()
