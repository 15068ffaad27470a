"""Which epoch's encoder is written: the best validation epoch (keep="best") or the last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import similarity_set
from lassi.producer.training import EncoderTrainConfig, train_encoder
from lassi.regulator.data_config import DatasetConfig
from lassi.spec import EncoderCard, LossWeights, read_artifact

DATA = DatasetConfig(image_size=8, n_train=96, n_val=32, n_test=16)
EPOCHS = 4


def _train(folder: Path, keep: str, epochs: int) -> tuple[EncoderCard, dict[str, np.ndarray]]:
    config = EncoderTrainConfig(
        hidden=[16], k=8, task="object_hue", epochs=epochs, batch_size=32, data=DATA, keep=keep,
        loss=LossWeights(adv=0.1, contr=0.1, delta_contr=1.0, attack_points=4), lr=3e-2,
    )  # fmt: skip
    out = folder / f"encoder-{keep}-{epochs}.safetensors"
    train_encoder(config, similarity_set(3), out, cache_dir=folder / "cache", progress=False)
    artifact = read_artifact(out, expect=EncoderCard)
    return artifact.meta, artifact.tensors


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keep")


@pytest.mark.slow
def test_keep_last_writes_the_last_epoch(folder: Path) -> None:
    card, _ = _train(folder, "last", EPOCHS)
    assert card.training.keep == "last"
    assert card.training.best_epoch == EPOCHS - 1


@pytest.mark.slow
def test_each_rule_writes_the_epoch_it_names(folder: Path) -> None:
    """The best-epoch encoder equals the last-epoch encoder of a run stopped after that epoch
    (batch order and attack draws depend only on (seed, epoch, step), not on the epoch count)."""
    best, best_tensors = _train(folder, "best", EPOCHS)
    assert best.training.keep == "best"
    # with these seeds the best epoch is not the last, so the two rules must differ
    assert best.training.best_epoch < EPOCHS - 1
    stopped, stopped_tensors = _train(folder, "last", best.training.best_epoch + 1)
    assert stopped.training.best_epoch == best.training.best_epoch
    assert stopped.training.val_accuracy == best.training.val_accuracy
    assert best_tensors.keys() == stopped_tensors.keys()
    for name in best_tensors:
        np.testing.assert_array_equal(best_tensors[name], stopped_tensors[name], err_msg=name)
    # and the best epoch's validation accuracy is at least the last epoch's
    last, last_tensors = _train(folder, "last", EPOCHS)
    assert best.training.val_accuracy >= last.training.val_accuracy
    assert any(not np.array_equal(best_tensors[n], last_tensors[n]) for n in best_tensors)
