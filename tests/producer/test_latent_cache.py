"""The producer's latent cache is keyed by what z_G = E_G(x) is a function of: the Glow and the
images, not the spec. Two specs sharing a Glow share the cache (the second encodes no image);
another Glow, even under the same spec hash, and images rendered differently never hit it; a
damaged cache file is encoded anew, never trusted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from factories import HASH_A, HASH_B, similarity_set
from lassi.producer.latents import glow_identity, glow_latents_of
from lassi.regulator import shapes3d
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import LassiError

DATA = DatasetConfig(image_size=8, n_train=12, n_val=2, n_test=2)
PROBE = 2  # images glow_identity encodes on every call


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of images E_G encodes, call by call."""
    counts: list[int] = []
    original = SimilaritySet.encode_images

    def counting(self, images, batch_size=256):
        counts.append(len(images))
        return original(self, images, batch_size)

    monkeypatch.setattr(SimilaritySet, "encode_images", counting)
    return counts


def _latents(sim, cache: Path):
    source = make_source(DATA)
    ids = source.split_ids("train")
    return glow_latents_of(sim, source, DATA, ids, cache, progress=False)


def test_specs_sharing_a_glow_share_the_cache(tmp_path: Path, encoded: list[int]) -> None:
    first_spec = similarity_set(2, seed=0)
    other_spec = replace(similarity_set(3, seed=0), sha256=HASH_B)  # same Glow, other vectors
    assert first_spec.sha256 != other_spec.sha256
    first = _latents(first_spec, tmp_path)
    assert sum(encoded) == PROBE + 12
    encoded.clear()
    second = _latents(other_spec, tmp_path)
    assert encoded == [PROBE]  # only the probe: no image went through the Glow
    assert torch.equal(first.z, second.z)
    assert len(list(tmp_path.glob("latents-*.safetensors"))) == 1


def test_another_glow_never_hits_the_cache(tmp_path: Path, encoded: list[int]) -> None:
    ours = similarity_set(2, seed=0)
    theirs = similarity_set(2, seed=1)  # the same spec hash, another Glow
    assert ours.sha256 == theirs.sha256 == HASH_A
    assert glow_identity(ours) != glow_identity(theirs)
    first = _latents(ours, tmp_path)
    encoded.clear()
    second = _latents(theirs, tmp_path)
    assert sum(encoded) == PROBE + 12
    assert not torch.equal(first.z, second.z)
    assert torch.equal(second.z, _latents(theirs, None).z)  # what a run without a cache gets
    # one weight changed in place: the identity follows the weights
    encoded.clear()
    with torch.no_grad():
        next(theirs.glow.parameters()).view(-1)[0] += 1e-3
    _latents(theirs, tmp_path)
    assert sum(encoded) == PROBE + 12


def test_images_rendered_differently_never_hit_the_cache(
    tmp_path: Path, encoded: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = similarity_set(2, seed=0)
    _latents(sim, tmp_path)
    shapes3d.renderer_sha256.cache_clear()
    monkeypatch.setattr(shapes3d, "HUES", shapes3d.HUES + 0.03)
    try:
        encoded.clear()
        changed = _latents(sim, tmp_path)
        assert sum(encoded) == PROBE + 12
        assert torch.equal(changed.z, _latents(sim, None).z)
    finally:
        monkeypatch.undo()
        shapes3d.renderer_sha256.cache_clear()


def test_a_damaged_cache_is_encoded_anew(tmp_path: Path, encoded: list[int], capsys) -> None:
    sim = similarity_set(2, seed=0)
    fresh = _latents(sim, tmp_path)
    (cache,) = tmp_path.glob("latents-*.safetensors")
    data = bytearray(cache.read_bytes())
    data[-5] ^= 0xFF  # one byte of the latents flipped: the checksum no longer matches
    cache.write_bytes(bytes(data))
    encoded.clear()
    again = _latents(sim, tmp_path)
    assert sum(encoded) == PROBE + 12 and torch.equal(again.z, fresh.z)
    assert "damaged" in capsys.readouterr().err
    encoded.clear()
    _latents(sim, tmp_path)  # rewritten whole: a hit again
    assert encoded == [PROBE]
    cache.write_bytes(b"not a safetensors file")
    encoded.clear()
    assert torch.equal(_latents(sim, tmp_path).z, fresh.z) and sum(encoded) == PROBE + 12


def test_identity_of_a_run_follows_labels_and_latents(tmp_path: Path) -> None:
    sim = similarity_set(2, seed=0)
    source = make_source(DATA)
    latents = _latents(sim, tmp_path)
    key = latents.identity(source, DATA)
    assert latents.identity(source, DATA) == key
    nudged = replace(latents, z=latents.z + 1e-6)
    assert nudged.identity(source, DATA) != key
    # other labels of the same images (a changed CSV of data on disk): another run
    labels = source.attributes(latents.ids)
    source.attributes = lambda ids: labels | {"object_hue": (labels["object_hue"] + 1) % 10}
    assert latents.identity(source, DATA) != key


def test_a_spec_of_images_rendered_elsewhere_is_refused(tmp_path: Path, encoded: list[int]) -> None:
    sim = similarity_set(2, seed=0)
    recorded = DATA.provenance("train", 12)
    forged = recorded.model_copy(update={"options": recorded.options | {"renderer_sha256": "0" * 64}})
    other = replace(sim, meta=sim.meta.model_copy(update={"data": forged}))
    _latents(replace(sim, meta=sim.meta.model_copy(update={"data": recorded})), tmp_path)  # same renderer
    encoded.clear()
    with pytest.raises(LassiError, match="render differently here") as error:
        _latents(other, tmp_path)
    assert error.value.exit_code == 4 and str(sim.path) in str(error.value) and encoded == []
