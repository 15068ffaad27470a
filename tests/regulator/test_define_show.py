"""``define --vectors`` and ``show`` through the CLI on the tiny chain's Glow (3D Shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from factories import DATA
from lassi.regulator.cli import main as regulator
from lassi.spec import SimilaritySpec, read_artifact

pytestmark = pytest.mark.slow  # every test reads the session's chain


def test_define_pairs_and_halves_record_vectors_and_coverage(chain: dict[str, Path], tmp_path: Path) -> None:
    pairs = read_artifact(chain["spec"], expect=SimilaritySpec)  # the chain defines with the default
    assert pairs.meta.attributes[0].vectors == "pairs"
    assert len(pairs.meta.vector_names) == 49 and "orientation_3_11" in pairs.meta.vector_names
    assert pairs.tensors["attribute_vectors"].shape[0] == 49
    # rendered 3D Shapes: no image files, no content hash (and nothing claiming one)
    assert pairs.meta.data.content_sha256 is None and pairs.meta.data.content_hash is None
    halves_path = tmp_path / "halves.safetensors"
    result = CliRunner().invoke(
        regulator,
        ["define", "--glow", str(chain["glow"]), "--attribute", "orientation", *DATA,
         "--vectors", "halves", "--fidelity-images", "4", "--out", str(halves_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "coverage of the real siblings" in result.output and "m = 1" in result.output
    halves = read_artifact(halves_path, expect=SimilaritySpec).meta
    assert halves.vector_names == ["orientation"] and halves.coverage.m == 1
    for cov in (pairs.meta.coverage, halves.coverage):
        assert 0 <= cov.latent_residual_span <= cov.latent_residual <= 1 + 1e-9
        assert cov.n_images == 4 and cov.n_siblings >= 4 * 8
    # more vectors can only bring the set's best point closer in latent space
    assert pairs.meta.coverage.latent_residual <= halves.coverage.latent_residual + 1e-6
    # the single-vector fidelity figure is the same whatever vectors the spec holds
    assert abs(pairs.meta.fidelity.overall - halves.fidelity.overall) < 1e-4


def test_show_many_vectors_draws_representative_strips(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "strips.png"
    result = CliRunner().invoke(
        regulator, ["show", str(chain["spec"]), "--out", str(out), "--inputs", "2", "--steps", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "coverage" in result.output
    meta = read_artifact(chain["spec"], expect=SimilaritySpec).meta
    assert f"vectors computed from: {meta.data.describe()}" in result.output
    assert f"fidelity of the single orientation vector at eps {meta.epsilon:g}:" in result.output
    with Image.open(out) as image:
        width, height = image.size
    size = meta.flow.image_size
    # per input: 3 representative strips + closest-in-set row + real siblings row
    assert height >= 2 * 5 * size and width >= 15 * size
