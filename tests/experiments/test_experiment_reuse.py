"""lassi-experiments reuses an encoder another experiment trained with the same configuration
(the sibling probe's for Table 2), judged by the encoder's card, and nothing else."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from lassi.experiments import load_settings
from lassi.experiments import table2 as table2_module
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


def _settings_with(tmp_path: Path, line: str, replacement: str) -> Path:
    """The packaged settings.toml with its one ``line`` replaced."""
    from lassi.experiments import settings as settings_module

    packaged = (Path(settings_module.__file__).parent / "settings.toml").read_text()
    assert packaged.count(line) == 1, line
    path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*.toml')))}.toml"
    path.write_text(packaged.replace(line, replacement))
    return path


def _stamps(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_run_made_with_other_settings_is_refused_never_reused(
    chain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a table2 run, a rerun whose settings.toml changes what the spec, the encoder, the
    certified test bundle or the report records (none of it in a folder name) stops in one line
    (exit 2) naming the file and the setting, recorded and requested, and modifies no file; the
    train bundle and the classifier likewise through the Workspace API; the unchanged rerun still
    reuses every file and reports the same figures."""
    from lassi.experiments.cli import main
    from lassi.spec import LossWeights, UsageError

    out = tmp_path / "experiments"
    args = ["table2", "--glow", str(chain["glow"]), "--out", str(out), "--seeds", "0",
            "--methods", "baseline", "--test", "2", "--epochs", "1", "--cert-n", "300",
            "--verify-n", "1000", "--protocol", "strength0.9", "--threads", "1"]  # fmt: skip
    assert main(args) == 0  # siblings through PREDICT
    capsys.readouterr()
    (results,) = (out / "table2").glob("results*.json")
    figures = json.loads(results.read_text())["rows"]
    before = _stamps(out)
    run = out / "table2" / "baseline-seed0-epochs1-cert300-rs1000"
    assert {p.name for p in run.glob("*.safetensors")} == {
        "encoder.safetensors", "train.safetensors", "test.safetensors",
        "classifier-object_hue-sigma5.0.safetensors", "report-object_hue-sigma5.0.safetensors",
    }  # fmt: skip

    changes = [  # (settings line, its replacement, the file named, the setting named with its two values)
        ("[regulator]\n", "[regulator]\nepsilon = 0.5\n", "spec-orientation.safetensors",
         "epsilon 1.0, this run asks for 0.5"),
        ("batch_size = 250", "batch_size = 200", "encoder.safetensors", "batch_size 250, this run asks for 200"),
        ("[center_smoothing]\n", "[center_smoothing]\ndelta = 0.1\n", "test.safetensors",
         "center smoothing delta 0.05, this run asks for 0.1"),
        ("[randomized_smoothing]\n", "[randomized_smoothing]\nalpha = 0.01\n", "report-object_hue-sigma5.0.safetensors",
         "randomized smoothing alpha 0.001, this run asks for 0.01"),
    ]  # fmt: skip
    for line, replacement, name, setting in changes:
        assert main(["--settings", str(_settings_with(tmp_path, line, replacement)), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
        assert f"/{name}: was made with {setting}; remove its run folder or choose another --out" in err[0]
        assert _stamps(out) == before, name

    ws = _workspace(out)
    spec = out / "table2" / "spec-orientation.safetensors"
    data = workspace_module.data_config(chain["glow"], "orientation:object_hue:0.9")
    loss = ws.settings.methods["baseline"].loss
    with pytest.raises(UsageError, match=r"train\.safetensors: was made with labels \['object_hue'\], this run asks for \['object_hue', 'shape'\]"):
        ws.producer_run(spec, data, "baseline", 0, run, 2, loss, 1, ws.settings.cert.replace(n0=300, n=300),
                        labels=["object_hue", "shape"])  # fmt: skip
    with pytest.raises(UsageError, match=r"classifier-object_hue-sigma5\.0\.safetensors: was made with seed 0, this run asks for 1;"):
        ws.consumer_run(spec, run / "train.safetensors", run / "test.safetensors", "object_hue", 5.0, run, 1)
    other_loss = LossWeights.model_validate(loss.model_dump() | {"attack_points": 3})
    with pytest.raises(UsageError, match=r"encoder\.safetensors: was made with loss attack_points 20, this run asks for 3;"):
        ws.producer_run(spec, data, "baseline", 0, run, 2, other_loss, 1)
    with pytest.raises(UsageError, match=r"test\.safetensors: was made with data samples 2, this run asks for 3;"):
        ws.producer_run(spec, data, "baseline", 0, run, 3, loss, 1, ws.settings.cert.replace(n0=300, n=300))
    # the ground truth's cache: the siblings' PREDICT with other draws
    cert = ws.settings.cert.replace(n0=300, n=300)
    other = argparse.Namespace(protocol="strength0.9", cert=cert, sibling_n0=200,
                               verify={"n0": 100, "n": 1000, "alpha": 0.001})  # fmt: skip
    files = [run / f"{name}.safetensors" for name in ("encoder", "classifier-object_hue-sigma5.0", "test", "report-object_hue-sigma5.0")]
    with pytest.raises(UsageError, match=r"ground_truth-classifier-object_hue-sigma5\.0\.json: was made with sibling sibling_n0 300, this run asks for 200;"):
        table2_module.ground_truth(ws, other, spec, *files, 0, run)
    assert _stamps(out) == before

    assert main(args) == 0  # the unchanged rerun: every file reused, the same figures
    assert _stamps(out) == before | {results: results.stat().st_mtime_ns}
    assert json.loads(results.read_text())["rows"] == figures


@pytest.mark.slow
def test_the_sibling_probe_reuses_only_its_own_settings(
    chain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe's classifier is refused when settings.toml changes its sigma_cls, and its
    encoder when the same --name asks for another attack scale (which only the folder's mark
    records); the unchanged rerun reuses every file."""
    from lassi.experiments.cli import main

    out = tmp_path / "experiments"
    args = ["sibling-probe", "--glow", str(chain["glow"]), "--out", str(out), "--epochs", "1", "--hidden", "32",
            "--k", "8", "--test", "2", "--name", "probe"]  # fmt: skip
    assert main(args) == 0
    folder = out / "sibling-probe" / "probe"
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")}
    assert len(stamps) == 3 and not (folder / _workspace(out).VARIANT_MARK).exists()
    capsys.readouterr()

    section = '[sibling_probe]\nepochs = 40\nkeep = "last"\nsigma_cls = '
    other = _settings_with(tmp_path, section + "2.5", section + "1.0")
    assert main(["--settings", str(other), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "/classifier.safetensors: was made with sigma_cls 2.5, this run asks for 1.0;" in err[-1]
    assert main([*args, "--attack-scale", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "/encoder.safetensors: was made with attack scale 1.0, this run asks for 0.5;" in err[-1], err[-1]
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")} == stamps
    assert not (folder / _workspace(out).VARIANT_MARK).exists()

    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")} == stamps
