"""The data-augmentation baseline (``lassi-producer train --augment N``): N uniform points of the
similarity set per sample as extra training samples with the task loss only; the encoder card
records it; refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from factories import DATA, run
from lassi.producer.base_function import BaseFunction
from lassi.producer.cli import main as producer
from lassi.producer.losses import LassiLoss, augmented_latents, sample_ball
from lassi.regulator.encoders import LatentMLP
from lassi.spec import EXIT_CODES, EncoderCard, read_artifact

TRAIN = ["--task", "object_hue", "--hidden", "32", "--k", "8", "--epochs", "1", "--batch-size", "64",
         "--max-train", "128", "--quiet"]  # fmt: skip


def test_augmented_points_are_points_of_the_set() -> None:
    torch.manual_seed(0)
    vectors = torch.randn(3, 10)
    base = BaseFunction(LatentMLP(10, (8,), 4), vectors)
    z = torch.randn(4, 10)
    t = sample_ball(torch.Generator().manual_seed(1), 4 * 5, 3, 0.7).reshape(4, 5, 3)
    out = augmented_latents(base, z, t)
    assert out.shape == (20, 10)
    for b in range(4):
        for j in range(5):
            torch.testing.assert_close(out[5 * b + j], z[b] + t[b, j] @ vectors)
    assert float(torch.linalg.vector_norm(t, dim=2).max()) <= 0.7


def test_the_augmented_loss_is_cross_entropy_over_both_and_nothing_else() -> None:
    torch.manual_seed(0)
    aux = torch.nn.Linear(4, 3)
    r, r_aug = torch.randn(5, 4), torch.randn(10, 4)
    y = torch.tensor([0, 1, 2, 1, 0])
    y_aug = y.repeat_interleave(2)
    parts = LassiLoss()(r, y, aux, r_aug=r_aug, y_aug=y_aug)
    expected = F.cross_entropy(aux(torch.cat([r, r_aug])), torch.cat([y, y_aug]))
    torch.testing.assert_close(parts["loss"], expected)
    torch.testing.assert_close(parts["ce"], expected)
    assert float(parts["adv"]) == 0 and float(parts["contr"]) == 0
    torch.testing.assert_close(parts["logits"], aux(r))  # accuracy on the samples themselves
    with pytest.raises(ValueError, match="one label per row"):
        LassiLoss()(r, y, aux, r_aug=r_aug, y_aug=y)


@pytest.mark.slow
def test_train_augment_records_it_and_never_runs_the_attack(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lassi.producer.training as training

    def no_attack(*args, **kwargs):
        raise AssertionError("the augmentation baseline ran the adversarial attack")

    monkeypatch.setattr(training, "random_attack", no_attack)
    out, naive = tmp_path / "aug.safetensors", tmp_path / "naive.safetensors"
    run(producer, ["train", "--spec", str(chain["spec"]), *DATA, *TRAIN, "--lambda-adv", "0",
                   "--augment", "3", "--out", str(out)])  # fmt: skip
    run(producer, ["train", "--spec", str(chain["spec"]), *DATA, *TRAIN, "--lambda-adv", "0",
                   "--out", str(naive)])  # fmt: skip
    card = read_artifact(out, expect=EncoderCard)
    assert card.meta.training.augment == 3 and card.meta.loss.adv == 0
    plain = read_artifact(naive, expect=EncoderCard)
    assert plain.meta.training.augment == 0
    assert "augment" not in plain.meta.training.model_dump(mode="json")  # cards as before
    # the extra samples changed what was learned
    name = "encoder.net.0.weight"
    assert not torch.equal(torch.from_numpy(card.tensors[name]), torch.from_numpy(plain.tensors[name]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--augment", "3"], "--lambda-adv 0"),  # the default lambda_adv is 0.1
        (["--augment", "3", "--lambda-adv", "0", "--lambda-contr", "0.1"], "task loss only"),
        (["--augment", "-1", "--lambda-adv", "0"], "augment"),
    ],
)
@pytest.mark.slow
def test_train_refuses_augment_with_another_term(chain, tmp_path: Path, options, message) -> None:
    out = tmp_path / "enc.safetensors"
    result = CliRunner().invoke(
        producer, ["train", "--spec", str(chain["spec"]), *DATA, *TRAIN, *options, "--out", str(out)]
    )
    assert result.exit_code == EXIT_CODES["usage"], result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
