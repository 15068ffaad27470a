"""CelebA at the authors' second size, 128x128, through the whole chain (tiny Glow: L = 5 blocks as
the authors' CelebA-128 Glow, one step each, width 4), from a miniature CelebA in the official
layout (178x218 aligned images, centre-cropped to 148 and resized to 128)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import run
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.spec import EncoderCard, GlowArtifact, SimilaritySpec, VerificationReport, read_artifact

ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
SPLIT_SIZES = (48, 12, 12)  # train, val, test (list_eval_partition codes 0, 1, 2)


def _face(male: int, smiling: int, rng: np.random.Generator) -> Image.Image:
    """A 178x218 aligned-CelebA-sized stand-in: a face-coloured oval whose colour follows Male
    and a mouth bar whose width follows Smiling, with noise."""
    h, w = 218, 178
    yy, xx = np.mgrid[:h, :w]
    face = ((yy - 120) / 70.0) ** 2 + ((xx - 89) / 50.0) ** 2 < 1
    mouth = (np.abs(yy - 150) < 5) & (np.abs(xx - 89) < (12 + 18 * smiling))
    pixels = np.empty((h, w, 3))
    pixels[:] = (40, 60, 90)
    pixels[face] = (220, 170, 140) if male else (240, 190, 170)
    pixels[mouth] = (150, 40, 50)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_celeba(root: Path) -> Path:
    """A miniature CelebA in the official layout (178x218 JPEGs, the two listing files)."""
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], SPLIT_SIZES)
    rows, partition = [], []
    for i, code in enumerate(codes):
        name = f"{i + 1:06d}.jpg"
        male, smiling = i % 2, (i // 2) % 2
        _face(male, smiling, rng).save(root / "img_align_celeba" / name, quality=95)
        labels = np.where(rng.random(len(ATTRIBUTES)) < 0.5, 1, -1)
        labels[ATTRIBUTES.index("Male")] = 1 if male else -1
        labels[ATTRIBUTES.index("Smiling")] = 1 if smiling else -1
        rows.append(name + " " + " ".join(f"{v:2d}" for v in labels))
        partition.append(f"{name} {code}")
    (root / "list_attr_celeba.txt").write_text(
        f"{len(codes)}\n" + " ".join(ATTRIBUTES) + " \n" + "\n".join(rows) + "\n"
    )
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


@pytest.fixture(scope="module")
def celeba(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba128"))


def test_images_are_read_at_128(celeba: Path) -> None:
    source = make_source(DatasetConfig(dataset="celeba", root=celeba, image_size=128))
    images = source.images(source.split_ids("train")[:2])
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8


def test_the_whole_chain_at_128(celeba: Path, tmp_path: Path) -> None:
    """train-glow -> define -> producer train -> encode (--certify) -> consumer train -> verify,
    every step at 128x128 (D = 49 152), with the fewest steps and samples that exercise it."""
    data = ["--dataset", "celeba", "--data-root", str(celeba), "--image-size", "128"]
    p = {name: tmp_path / f"{name}.safetensors" for name in ("glow", "spec", "encoder", "train", "test", "classifier", "report")}
    run(regulator, ["train-glow", *data, "--levels", "5", "--depth", "1", "--hidden", "4", "--steps", "4",
                    "--batch-size", "8", "--warmup", "1", "--quiet", "--out", str(p["glow"])])
    run(regulator, ["define", "--glow", str(p["glow"]), "--attribute", "Male", *data, "--quiet", "--out", str(p["spec"])])
    run(producer, ["train", "--spec", str(p["spec"]), *data, "--task", "Smiling", "--hidden", "32", "--k", "8",
                   "--epochs", "1", "--batch-size", "64", "--attack-points", "2", "--lambda-contr", "0.1",
                   "--delta", "1", "--quiet", "--out", str(p["encoder"])])
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *data, "--split", "train",
                   "--quiet", "--out", str(p["train"])])
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *data, "--split", "test",
                   "--limit", "3", "--certify", "--n0", "200", "--n", "400", "--delta", "0.1", "--quiet",
                   "--out", str(p["test"])])
    run(consumer, ["train", "--bundle", str(p["train"]), "--task", "Smiling", "--sigma", "0.5", "--quiet",
                   "--out", str(p["classifier"])])
    run(consumer, ["verify", "--classifier", str(p["classifier"]), "--bundle", str(p["test"]), "--n0", "100",
                   "--n", "400", "--quiet", "--out", str(p["report"])])
    glow = read_artifact(p["glow"], expect=GlowArtifact).meta
    assert (glow.flow.image_size, glow.flow.n_levels, glow.preprocessing.image_size) == (128, 5, 128)
    spec = read_artifact(p["spec"], expect=SimilaritySpec, parents={"glow": p["glow"]})
    assert spec.tensors["attribute_vectors"].shape == (1, 3 * 128 * 128)
    assert read_artifact(p["encoder"], expect=EncoderCard).meta.input_dim == 3 * 128 * 128
    report = read_artifact(p["report"], expect=VerificationReport)
    assert report.meta.n_samples == 3 and report.meta.task == "Smiling"
