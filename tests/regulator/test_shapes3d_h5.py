"""``--dataset shapes3d-h5``: DeepMind's 3dshapes.h5 read lazily, in its exact layout.

The fixture is a file in that layout (images [480000, 64, 64, 3] uint8, labels [480000, 6]
float64 in the data set's order), sparse: only the images the tests use are written (chunks of
one image; the others are never stored), so the file is small while declaring 5.9 GB of images.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import DATA, build_chain, invoke_bounded, run
from lassi.regulator.cli import main as regulator
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.datasets import DataError, Shapes3DSource
from lassi.regulator.shapes3d import FACTOR_VALUES, N_IMAGES, Shapes3D, make_splits
from lassi.regulator.shapes3d_h5 import Shapes3DH5Source, authors_correlated
from lassi.spec import EXIT_CODES, SimilaritySpec, read_artifact

pytestmark = pytest.mark.slow  # the module's HDF5 data set takes seconds to write

SPLITS = dict(seed=0, n_train=400, n_val=100, n_test=100)
CORRELATE = ("orientation", "object_hue", 0.9)
SMALL = 16  # images are rendered at 16x16 and stored 4x4-repeated: area resizing gives them back


def canonical_labels() -> np.ndarray:
    factors = Shapes3D.index_to_factors(np.arange(N_IMAGES))
    columns = [FACTOR_VALUES[name][factors[:, i]] for i, name in enumerate(FACTOR_VALUES)]
    return np.stack(columns, axis=1).astype(np.float64)


def write_h5(path: Path, ids: np.ndarray, labels: np.ndarray | None = None, **overrides) -> Path:
    """A 3dshapes.h5 in DeepMind's layout with the images of ``ids`` written (others unstored)."""
    ids = np.unique(ids)
    images = np.repeat(np.repeat(Shapes3D(SMALL).render(Shapes3D.index_to_factors(ids)), 4, axis=1), 4, axis=2)
    with h5py.File(path, "w") as f:
        shape = overrides.get("images_shape", (N_IMAGES, 64, 64, 3))
        dset = f.create_dataset(
            "images", shape=shape, dtype=overrides.get("images_dtype", np.uint8),
            chunks=overrides.get("chunks", (1, 64, 64, 3)),
        )
        if shape == (N_IMAGES, 64, 64, 3):
            dset[ids] = images
        f.create_dataset(
            "labels", data=canonical_labels() if labels is None else labels, chunks=(32_768, 6), compression="gzip"
        )
    return path


@pytest.fixture(scope="module")
def h5_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes3d_h5")
    splits = make_splits(correlate=CORRELATE, **SPLITS)
    siblings = Shapes3D.siblings(Shapes3D.index_to_factors(splits["test"][:8])).reshape(-1, 6)
    write_h5(root / "3dshapes.h5", np.concatenate([*splits.values(), Shapes3D.factors_to_index(siblings)]))
    return root


def test_file_is_small_and_declares_the_whole_data_set(h5_root: Path) -> None:
    assert (h5_root / "3dshapes.h5").stat().st_size < 20 * 1024**2
    with h5py.File(h5_root / "3dshapes.h5") as f:
        assert f["images"].shape == (480_000, 64, 64, 3) and f["labels"].shape == (480_000, 6)


def test_same_ids_factors_and_splits_as_the_builtin_source(h5_root: Path) -> None:
    """Row i is factor combination i: labels, seeded (and correlated) splits and class counts
    are the built-in renderer's, so --attribute orientation --task object_hue mean the same."""
    source = Shapes3DH5Source(h5_root, image_size=SMALL, correlate=CORRELATE, **SPLITS)
    builtin = Shapes3DSource(image_size=SMALL, correlate=CORRELATE, **SPLITS)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(source.split_ids(split), builtin.split_ids(split))
    ids = source.split_ids("train")[:50]
    for name, values in source.attributes(ids).items():
        np.testing.assert_array_equal(values, builtin.attributes(ids)[name])
        assert source.num_classes(name) == builtin.num_classes(name)
    for name, grid in FACTOR_VALUES.items():
        np.testing.assert_allclose(source.factor_values[name], grid)
    shuffled = ids[::-1].copy()
    np.testing.assert_array_equal(source.images(shuffled), builtin.images(shuffled))
    siblings = Shapes3D.siblings(Shapes3D.index_to_factors(source.split_ids("test")[:2]))[1]
    np.testing.assert_array_equal(source.renderer.render(siblings), builtin.renderer.render(siblings))
    full = Shapes3DH5Source(h5_root, image_size=64, correlate=CORRELATE, **SPLITS)
    assert full.images(ids[:3]).shape == (3, 64, 64, 3)


def test_peak_memory_does_not_depend_on_the_file(h5_root: Path, tmp_path: Path) -> None:
    """define reads the 5.9 GB-declared file through bounded chunks: its resident memory grows
    by less than 400 MB (one np.asarray of the images would need 5.9 GB)."""
    glow = tmp_path / "glow.safetensors"
    data = ["--dataset", "shapes3d-h5", "--data-root", str(h5_root), *DATA]
    result = invoke_bounded(
        regulator,
        ["train-glow", *data, "--levels", "2", "--depth", "1", "--hidden", "8", "--steps", "2",
         "--batch-size", "8", "--warmup", "1", "--quiet", "--out", str(glow)],
        limit_kib=400 * 1024,
    )
    assert result.exit_code == 0, result.output
    result = invoke_bounded(
        regulator,
        ["define", "--glow", str(glow), "--attribute", "orientation", *data, "--max-images", "200",
         "--fidelity-images", "2", "--quiet", "--out", str(tmp_path / "spec.safetensors")],
        limit_kib=400 * 1024,
    )
    assert result.exit_code == 0, result.output


def test_the_whole_chain_runs_on_the_h5_file(h5_root: Path, tmp_path: Path) -> None:
    data = ["--dataset", "shapes3d-h5", "--data-root", str(h5_root), *DATA]
    chain = build_chain(tmp_path, data=data)
    spec = read_artifact(chain["spec"], expect=SimilaritySpec)
    assert spec.meta.data.dataset == "shapes3d-h5"
    assert spec.meta.data.options["correlate"] == "orientation:object_hue:0.9"
    assert spec.meta.fidelity is not None and spec.meta.coverage is not None  # real siblings
    assert chain["report"].is_file()
    out = tmp_path / "strips.png"
    run(regulator, ["show", str(chain["spec"]), "--data-root", str(h5_root), "--inputs", "2", "--steps", "3",
                    "--out", str(out)])
    assert out.stat().st_size > 100
    # the experiments read the same file through --data-root; the siblings are the file's images
    from lassi.experiments.sibling_probe import sibling_accuracy, sibling_latents
    from lassi.experiments.workspace import data_config
    from lassi.regulator.similarity import SimilaritySet

    config = data_config(chain["glow"], "orientation:object_hue:0.9", h5_root)
    assert config.dataset == "shapes3d-h5" and config.root == h5_root
    source, sim = make_source(config), SimilaritySet.load(chain["spec"])
    ids = source.split_ids("test")[:2]
    factors, z = sibling_latents(sim, ids, source.renderer)
    expected = sim.encode_images(source.images(Shapes3D.factors_to_index(factors.reshape(-1, 6))))
    assert torch.equal(z, expected)
    figures = sibling_accuracy(sim, chain["encoder"], chain["classifier"], ids, source.renderer)
    assert figures["wrong_siblings"] >= 0 and 0.0 <= figures["ground_truth_unfair"] <= 1.0

    # every artifact records the SHA-256 of the stored rows it was computed from, and the
    # audit's data check refuses a 3dshapes.h5 whose rows of the bundle's samples differ
    from lassi.regulator.audit_data import checked_images
    from lassi.spec import IntegrityError

    for name, split in (("glow", "train"), ("spec", "train"), ("encoder", "train"), ("test", "test")):
        data = read_artifact(chain[name]).meta.data
        assert data.content_hash == "rows" and data.split == split, name
        stored = source.split_ids(split)[: data.n_samples]
        assert data.content_sha256 == source.rows_sha256(stored), name
    test = read_artifact(chain["test"])
    bundle_ids = [int(i) for i in test.tensors["ids"]]
    checked = checked_images(test.meta, test.tensors, source, bundle_ids[:2], h5_root, chain["test"])
    assert checked.ids == bundle_ids[:2] and not checked.notes and not checked.mismatches
    other = tmp_path / "other"
    other.mkdir()
    (other / "3dshapes.h5").write_bytes((h5_root / "3dshapes.h5").read_bytes())
    with h5py.File(other / "3dshapes.h5", "r+") as f:
        f["images"][bundle_ids[-1]] = 255 - f["images"][bundle_ids[-1]]
    changed = make_source(config.model_copy(update={"root": other}))
    with pytest.raises(IntegrityError, match="holds other images than those test.safetensors was encoded from"):
        checked_images(test.meta, test.tensors, changed, bundle_ids[:2], other, chain["test"])


def test_the_data_root_alone_tells_the_data_set(h5_root: Path) -> None:
    from lassi.regulator.data_config import infer_dataset

    assert infer_dataset(h5_root, None) == "shapes3d-h5"


# --------------------------------------------------------------------------- the authors' splits


class _Payload:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_authors_split_files_give_the_splits(h5_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "3dshapes.h5").symlink_to(h5_root / "3dshapes.h5")
    splits = make_splits(correlate=None, seed=3, n_train=300, n_val=50, n_test=50)
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        np.save(root / f"custom_{name}_split.npy", splits[split].astype(np.int32))
    source = Shapes3DH5Source(root, image_size=SMALL, seed=0, n_train=1000, n_val=1000, n_test=20)
    np.testing.assert_array_equal(source.split_ids("train"), splits["train"])
    np.testing.assert_array_equal(source.split_ids("test"), splits["test"][:20])  # capped
    correlated = Shapes3DH5Source(root, correlate=("orientation", "object_hue", 1.0), n_train=1000)
    train = correlated.split_ids("train")
    factors = Shapes3D.index_to_factors(train)
    hue_high, orientation = factors[:, 2] >= 5, factors[:, 5]
    assert ((hue_high & (orientation >= 8)) | (~hue_high & (orientation <= 6))).all()
    np.testing.assert_array_equal(train, authors_correlated(splits["train"], "orientation", "object_hue"))
    with pytest.raises(DataError, match="full"):
        Shapes3DH5Source(root, correlate=("orientation", "object_hue", 0.9))


@pytest.mark.parametrize(
    "content,needle",
    [
        ("payload", "row numbers"),
        (np.arange(10, dtype=np.float64), "integer"),
        (np.arange(6, dtype=np.int64).reshape(2, 3), "1-D"),
        (np.array([0, N_IMAGES]), "0..479999"),
        (np.array([5, 5]), "repeats"),
    ],
    ids=["pickled_objects", "floats", "two_dims", "out_of_range", "repeated"],
)
def test_bad_split_files_are_refused(content, needle, h5_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "3dshapes.h5").symlink_to(h5_root / "3dshapes.h5")
    marker = tmp_path / "executed"
    np.save(root / "custom_valid_split.npy", np.arange(10, 20))
    np.save(root / "custom_test_split.npy", np.arange(20, 30))
    if isinstance(content, str):  # an object array whose unpickling would run a command
        content = np.array([_Payload(marker)], dtype=object)
    np.save(root / "custom_train_split.npy", content, allow_pickle=content.dtype == object)
    with pytest.raises(DataError, match=needle):
        Shapes3DH5Source(root)
    assert not marker.exists()


def test_overlapping_or_missing_split_files_are_refused(h5_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "3dshapes.h5").symlink_to(h5_root / "3dshapes.h5")
    np.save(root / "custom_train_split.npy", np.arange(0, 10))
    with pytest.raises(DataError, match="custom_test_split.npy"):
        Shapes3DH5Source(root)
    np.save(root / "custom_valid_split.npy", np.arange(5, 15))
    np.save(root / "custom_test_split.npy", np.arange(20, 30))
    with pytest.raises(DataError, match="shares rows"):
        Shapes3DH5Source(root)


# --------------------------------------------------------------------------- the layout


def _labels_swapped() -> np.ndarray:
    labels = canonical_labels()
    labels[[7, 8]] = labels[[8, 7]]
    return labels


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: write_h5(p, np.arange(2), images_shape=(1000, 64, 64, 3)), "expected [480000, 64, 64, 3]"),
        (lambda p: write_h5(p, np.arange(2), images_dtype=np.float32), "dtype float32"),
        (lambda p: write_h5(p, np.arange(2), labels=_labels_swapped()), "not in the data set's order"),
        (lambda p: write_h5(p, np.arange(2), chunks=(2048, 64, 64, 3)), "chunks"),
        (lambda p: p.write_bytes(pickle.dumps({"images": 1})), "not a readable HDF5"),
    ],
    ids=["short", "float_images", "rows_out_of_order", "huge_chunks", "not_hdf5"],
)
def test_files_not_in_the_layout_are_refused(make, needle, tmp_path: Path) -> None:
    make(tmp_path / "3dshapes.h5")
    with pytest.raises(DataError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        Shapes3DH5Source(tmp_path)
    args = ["train-glow", "--dataset", "shapes3d-h5", "--data-root", str(tmp_path), "--steps", "1",
            "--out", str(tmp_path / "g.safetensors")]
    result = CliRunner().invoke(regulator, args)
    assert result.exit_code == EXIT_CODES["usage"] and "Traceback" not in result.output, result.output
    assert "3dshapes.h5" in result.output


def _external_link(path: Path) -> None:
    other = path.with_name("other.h5")
    write_h5(other, np.arange(2))
    with h5py.File(path, "w") as f:
        f["images"] = h5py.ExternalLink(str(other), "images")
        f.create_dataset("labels", data=canonical_labels(), chunks=(32_768, 6), compression="gzip")


def _external_storage(path: Path) -> None:
    secret = path.with_name("secret.bin")
    secret.write_bytes(b"\x01" * 1000)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(N_IMAGES, 64, 64, 3), dtype=np.uint8,
                         external=[(str(secret), 0, N_IMAGES * 64 * 64 * 3)])
        f.create_dataset("labels", data=canonical_labels(), chunks=(32_768, 6), compression="gzip")


def _virtual(path: Path) -> None:
    other = path.with_name("other.h5")
    write_h5(other, np.arange(2))
    layout = h5py.VirtualLayout(shape=(N_IMAGES, 64, 64, 3), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(other), "images", shape=(N_IMAGES, 64, 64, 3))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("images", layout)
        f.create_dataset("labels", data=canonical_labels(), chunks=(32_768, 6), compression="gzip")


@pytest.mark.parametrize(
    "make,needle",
    [(_external_link, "link to another place"), (_external_storage, "other files"), (_virtual, "other files")],
    ids=["external_link", "external_storage", "virtual_dataset"],
)
def test_data_kept_in_other_files_is_refused(make, needle, tmp_path: Path) -> None:
    make(tmp_path / "3dshapes.h5")
    with pytest.raises(DataError, match=needle):
        Shapes3DH5Source(tmp_path)


def test_config_and_options(h5_root: Path) -> None:
    config = DatasetConfig(dataset="shapes3d-h5", root=h5_root, image_size=SMALL, n_train=10, correlate="orientation:object_hue:full")
    source = make_source(config)
    assert isinstance(source, Shapes3DH5Source) and len(source.split_ids("train")) == 10
    assert config.provenance("train", 10).options["n_train"] == 10
    with pytest.raises(ValueError, match="data-root"):
        DatasetConfig(dataset="shapes3d-h5")


def test_caches_are_keyed_by_the_stored_rows_not_the_path(h5_root: Path, tmp_path: Path) -> None:
    """Latent caches and checkpoints over an h5 file are keyed by the rows' bytes: a copy at
    another path keeps the key, another image in the same rows changes it."""
    from lassi.producer.latents import generator_parameters

    ids = make_splits(correlate=CORRELATE, **SPLITS)["test"][:8]
    copy_root, changed_root = tmp_path / "copy", tmp_path / "changed"
    copy_root.mkdir()
    changed_root.mkdir()
    (copy_root / "3dshapes.h5").write_bytes((h5_root / "3dshapes.h5").read_bytes())
    write_h5(changed_root / "3dshapes.h5", ids)
    with h5py.File(changed_root / "3dshapes.h5", "r+") as f:
        f["images"][int(ids[3])] = 255 - f["images"][int(ids[3])]

    def key(root: Path) -> dict:
        config = DatasetConfig(dataset="shapes3d-h5", root=root, image_size=SMALL, **SPLITS)
        return generator_parameters(config, make_source(config), ids)

    assert key(copy_root) == key(h5_root)
    assert key(changed_root)["rows_sha256"] != key(h5_root)["rows_sha256"]
