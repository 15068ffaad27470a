"""CelebA at the authors' second size, 128x128, through the whole chain (tiny Glow: L = 5 blocks as
the authors' CelebA-128 Glow, one step each, width 4), from a miniature CelebA in the official
layout (178x218 aligned images, centre-cropped to 148 and resized to 128)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import build_chain, write_celeba_faces
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.spec import EncoderCard, GlowArtifact, SimilaritySpec, VerificationReport, read_artifact

pytestmark = pytest.mark.slow  # the whole chain at 128 x 128 pixels


@pytest.fixture(scope="module")
def celeba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_celeba_faces(tmp_path_factory.mktemp("celeba128"))


def test_images_are_read_at_128(celeba: Path) -> None:
    source = make_source(DatasetConfig(dataset="celeba", root=celeba, image_size=128))
    images = source.images(source.split_ids("train")[:2])
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8


def test_the_whole_chain_at_128(celeba: Path, tmp_path: Path) -> None:
    """train-glow -> define -> producer train -> encode (--certify) -> consumer train -> verify,
    every step at 128x128 (D = 49 152), with the fewest steps and samples that exercise it."""
    data = ["--dataset", "celeba", "--data-root", str(celeba), "--image-size", "128"]
    p = build_chain(tmp_path, data=data, attribute="Male", task="Smiling",
                    glow_options=("--levels", "5", "--depth", "1", "--hidden", "4"),
                    glow_training=("--steps", "4", "--batch-size", "8", "--warmup", "1"),
                    encoder_options=("--hidden", "32", "--k", "8", "--epochs", "1", "--attack-points", "2"),
                    certify=(3, 200, 400), verify_n=400)  # fmt: skip
    glow = read_artifact(p["glow"], expect=GlowArtifact).meta
    assert (glow.flow.image_size, glow.flow.n_levels, glow.preprocessing.image_size) == (128, 5, 128)
    spec = read_artifact(p["spec"], expect=SimilaritySpec, parents={"glow": p["glow"]})
    assert spec.tensors["attribute_vectors"].shape == (1, 3 * 128 * 128)
    assert read_artifact(p["encoder"], expect=EncoderCard).meta.input_dim == 3 * 128 * 128
    report = read_artifact(p["report"], expect=VerificationReport)
    assert report.meta.n_samples == 3 and report.meta.task == "Smiling"
