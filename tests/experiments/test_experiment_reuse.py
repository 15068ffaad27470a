"""lassi-experiments reuses an encoder another experiment trained with the same configuration
(the sibling probe's for Table 2), judged by the encoder's card, and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lassi.experiments import load_settings
from lassi.experiments import workspace as workspace_module
from lassi.experiments.workspace import Workspace
from lassi.producer.training import EncoderTrainConfig
from lassi.regulator.data_config import DatasetConfig
from lassi.spec import read_artifact


def _workspace(out: Path) -> Workspace:
    return Workspace(out=out, device=torch.device("cpu"), settings=load_settings())


def _config_of(encoder: Path) -> EncoderTrainConfig:
    """The training configuration the encoder's card records."""
    card = read_artifact(encoder).meta
    t = card.training
    return EncoderTrainConfig(
        architecture=card.architecture, hidden=card.hidden, width=card.width, k=card.k, task=card.task,
        loss=card.loss, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, seed=t.seed, keep=t.keep,
        data=DatasetConfig.from_provenance(card.data),
    )  # fmt: skip


@pytest.mark.slow
def test_table2_reuses_only_an_encoder_of_the_same_configuration(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    run = _workspace(tmp_path)
    probe = tmp_path / "sibling-probe" / "seed0" / "encoder.safetensors"
    probe.parent.mkdir(parents=True)
    shutil.copyfile(chain["encoder"], probe)
    config = _config_of(probe)
    target = tmp_path / "table2-authors" / "run" / "encoder.safetensors"

    for other in (
        config.model_copy(update={"seed": config.seed + 1}),
        config.model_copy(update={"epochs": config.epochs + 1}),
        config.model_copy(update={"keep": "last" if config.keep == "best" else "best"}),
        config.model_copy(update={"loss": config.loss.model_copy(update={"adv": config.loss.adv + 0.1})}),
        config.model_copy(update={"k": config.k * 2}),
        config.model_copy(update={"data": config.data.model_copy(update={"n_train": config.data.n_train + 1})}),
    ):  # fmt: skip
        assert not run.trained_twin(other, chain["spec"], target)
    assert not run.trained_twin(config, chain["glow"], target)  # another spec (any other artifact)
    assert not target.exists()

    assert run.trained_twin(config, chain["spec"], target)
    assert target.read_bytes() == chain["encoder"].read_bytes()


@pytest.mark.slow
def test_table2_never_reuses_a_probe_variant_encoder(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    """A probe trained with another attack radius or attack set writes the same card as Table 2's
    configuration; its folder's mark keeps trained_twin from reusing it."""
    run = _workspace(tmp_path)
    probe = tmp_path / "sibling-probe" / "conditional-scale-seed0" / "encoder.safetensors"
    probe.parent.mkdir(parents=True)
    shutil.copyfile(chain["encoder"], probe)
    (probe.parent / run.VARIANT_MARK).write_text('{"attack_scale": 1.0, "variant": "x"}')
    target = tmp_path / "table2-authors" / "run" / "encoder.safetensors"
    assert not run.trained_twin(_config_of(probe), chain["spec"], target)
    assert not target.exists()


def test_table2_protocols_keep_their_runs_apart() -> None:
    """Each protocol writes its own folder and results file, and says how its siblings are
    checked: a protocol added without them would mix its runs into another's."""
    protocols = load_settings().protocols
    folders = [p.folder for p in protocols.values()]
    assert len(set(folders)) == len(folders)
    for name, protocol in protocols.items():
        assert protocol.siblings in ("certify", "predict"), name
        assert protocol.vectors in ("halves", "pairs"), name
    assert protocols["authors-given-scale"].given == "scale"


@pytest.mark.slow
def test_spec_for_names_a_conditioned_spec_apart(
    chain: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conditioned spec gets its own file name (never the pairs spec's, which a folder reuses)
    and define is asked for it."""
    calls = []
    monkeypatch.setattr(workspace_module, "define_spec", lambda *args, **kwargs: calls.append((args, kwargs)))
    run = _workspace(tmp_path)
    out = run.spec_for(chain["glow"], ["orientation"], tmp_path, "pairs", "scale")
    assert out.name == "spec-orientation-pairs-given-scale.safetensors"
    assert run.spec_for(chain["glow"], ["orientation"], tmp_path, "pairs").name == "spec-orientation-pairs.safetensors"
    (args, kwargs), (_, plain) = calls
    assert args[4] == out and kwargs["given"] == "scale" and kwargs["vectors"] == "pairs"
    assert plain["given"] is None


@pytest.mark.slow
def test_table2_reuses_an_encoder_only_with_the_same_attack_set(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    """An encoder trained with ``--attack-spec`` names the certified spec as its parent, like one
    trained without: its card's attack set keeps the two apart (and two attack sets apart)."""
    from lassi.spec import AttackSet, EncoderCard, write_artifact

    run = _workspace(tmp_path)
    attack, other_attack = chain["glow"], chain["classifier"]  # any two files: judged by SHA-256
    plain = read_artifact(chain["encoder"], expect=EncoderCard)
    card = plain.meta.model_copy(update={"training": plain.meta.training.model_copy(
        update={"attack_set": AttackSet(spec=read_artifact(attack).sha256, extra_vectors=["extra_0"])}
    )})  # fmt: skip
    extended = tmp_path / "sibling-probe" / "seed0" / "encoder.safetensors"
    extended.parent.mkdir(parents=True)
    write_artifact(extended, card, plain.tensors)
    config = _config_of(extended)
    target = tmp_path / "table2-authors" / "run" / "encoder.safetensors"
    assert not run.trained_twin(config, chain["spec"], target)  # no attack set asked for
    assert not run.trained_twin(config, chain["spec"], target, other_attack)
    assert not target.exists()
    assert run.trained_twin(config, chain["spec"], target, attack)
    assert target.read_bytes() == extended.read_bytes()
