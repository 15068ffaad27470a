"""The experiments' settings are data (settings.toml, protocols.toml): they hold the values the
experiments always used, and a bad settings file is a one-line usage error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lassi.experiments import load_settings
from lassi.experiments.cli import main
from lassi.spec import LossWeights, UsageError
from lassi.spec.contract.models import CenterSmoothingParams


def test_the_packaged_settings_are_the_papers() -> None:
    s = load_settings()
    assert {k: m.loss for k, m in s.methods.items()} == {
        "baseline": LossWeights(adv=0.0, contr=0.0, attack_points=20),
        "adversarial": LossWeights(adv=0.1, contr=0.0, attack_points=20),
        "adversarial+contrastive": LossWeights(adv=0.1, contr=0.1, delta_contr=10.0, attack_points=20),
        "augmentation": LossWeights(adv=0.0, contr=0.0, attack_points=20),
    }  # fmt: skip
    assert [m.sigma_cls for m in s.methods.values()] == [5.0, 1.0, 1.0, 5.0]
    assert [m.augment for m in s.methods.values()] == [0, 0, 0, 10]  # the authors' 10 points
    assert s.cert == CenterSmoothingParams(
        sigma=0.65, epsilon=1.0, n0=10_000, n=10_000, alpha1=0.005, alpha2=0.005, delta=0.05
    )
    assert s.verify == {"n0": 2_000, "n": 100_000, "alpha": 0.001}
    assert s.pairs_protocols == ["authors", "authors-given-scale"]
    assert (s.regulator.epsilon, s.regulator.fidelity_images, s.celeba.epsilon) == (1.0, 32, 1.0)
    assert s.celeba.encoder.model_dump() == {  # the authors' CelebA encoder
        "hidden": [2048, 1024], "k": 512, "epochs": 5, "batch_size": 500, "lr": 0.001, "keep": "last"
    }  # fmt: skip


def test_a_key_set_overrides_the_default_it_would_take(tmp_path: Path) -> None:
    """Settings left out take the roles' defaults; a key set in the file overrides one."""
    import lassi.experiments.settings as module

    text = (Path(module.__file__).parent / "settings.toml").read_text()
    packaged = module.tomllib.loads(text)  # tomllib, or tomli before Python 3.11
    assert "epsilon" not in packaged["regulator"] and "epsilon" not in packaged["celeba"]
    custom = tmp_path / "settings.toml"
    custom.write_text(
        text.replace("[regulator]\n", "[regulator]\nepsilon = 0.25\n").replace(
            "[celeba.encoder]\n", "[celeba.encoder]\nk = 64\n"
        )
    )
    s = load_settings(custom)
    assert (s.regulator.epsilon, s.regulator.fidelity_images) == (0.25, 32)
    assert (s.celeba.encoder.k, s.celeba.encoder.epochs) == (64, 5)


def test_the_certificates_epsilon_is_the_specs(tmp_path: Path) -> None:
    """Center smoothing certifies at the ε of the specs the settings define ([regulator] and
    celeba.epsilon); a [center_smoothing] ε that differs is refused in one line."""
    import lassi.experiments.settings as module

    text = (Path(module.__file__).parent / "settings.toml").read_text()
    custom = tmp_path / "settings.toml"
    custom.write_text(text.replace("[regulator]\n", "[regulator]\nepsilon = 0.5\n"))
    s = load_settings(custom)
    assert s.cert.epsilon == 0.5 and s.celeba.cert.epsilon == 1.0
    custom.write_text(text.replace("[center_smoothing]\n", "[center_smoothing]\nepsilon = 0.5\n"))
    with pytest.raises(UsageError, match="epsilon = 0.5 differs from the spec's epsilon 1: a certificate's") as error:
        load_settings(custom)
    assert "center_smoothing" in str(error.value) and "\n" not in str(error.value)
    # a spec epsilon center smoothing can never certify at (sigma 0.65, n = 10^4): one line
    custom.write_text(text.replace("[regulator]\n", "[regulator]\nepsilon = 2.5\n"))
    with pytest.raises(UsageError, match="setting 'center_smoothing': n=10000 can never certify") as error:
        load_settings(custom)
    assert "\n" not in str(error.value) and "\\x0a" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[regulator\n", "cannot read"),
        ('[regulator]\nepsilon = "one"\n', "regulator"),
    ],
)
def test_a_bad_settings_file_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text(text)
    with pytest.raises(UsageError, match=message) as error:
        load_settings(bad)
    assert "settings.toml" in str(error.value) and "\n" not in str(error.value)


def test_the_cli_exits_2_on_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text("[center_smoothing]\nsigma = -1\n")
    assert main(["--settings", str(bad), "report", "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_a_subcommands_protocol_option_is_not_the_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``table2 --protocol authors`` must reach table2 (argparse would otherwise read it as an
    abbreviation of the top-level ``--protocols FILE``): here it fails on the missing Glow."""
    glow = tmp_path / "missing-glow.safetensors"
    code = main(["table2", "--glow", str(glow), "--protocol", "authors", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "missing-glow" in err[0], err
