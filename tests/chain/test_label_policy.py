"""No sensitive labels handed on: bundles carry only the labels asked for, never a sensitive one
without the explicit flag, and neither role trains a model to predict a sensitive attribute."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import DATA, one_line
from lassi.spec import RepresentationBundle, read_artifact

pytestmark = pytest.mark.slow  # every test reads the session's chain


def _invoke(main, args: list[str]):
    return CliRunner().invoke(main, args)


def test_bundles_carry_only_the_task_label_by_default(chain: dict[str, Path]) -> None:
    for name in ("train", "test"):
        meta = read_artifact(chain[name], expect=RepresentationBundle).meta
        assert meta.label_names == ["object_hue"]
        assert meta.sensitive_labels == []


def test_sensitive_labels_only_with_the_flag(chain: dict[str, Path], tmp_path: Path) -> None:
    from lassi.consumer.cli import main as consumer
    from lassi.producer.cli import main as producer

    encode = ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
              "--split", "val", "--limit", "20", "--quiet"]  # fmt: skip
    refused = tmp_path / "refused.safetensors"
    result = _invoke(producer, [*encode, "--labels", "object_hue,orientation", "--out", str(refused)])
    one_line(result, 2, "orientation", "--include-sensitive-labels")
    assert not refused.exists()

    out = tmp_path / "with.safetensors"
    result = _invoke(producer, [*encode, "--labels", "shape,orientation", "--include-sensitive-labels",
                                "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_artifact(out, expect=RepresentationBundle).meta
    assert meta.label_names == ["orientation", "shape"]
    assert meta.sensitive_labels == ["orientation"]

    # the consumer refuses to learn the sensitive attribute, even when the labels are there
    classifier = tmp_path / "classifier.safetensors"
    result = _invoke(consumer, ["train", "--bundle", str(out), "--task", "orientation", "--sigma",
                                "0.5", "--quiet", "--out", str(classifier)])  # fmt: skip
    one_line(result, 2, "orientation", "sensitive")
    assert not classifier.exists()

    result = _invoke(producer, [*encode, "--labels", "no_such_label", "--out", str(refused)])
    one_line(result, 2, "no_such_label")


def test_the_encoder_is_not_trained_on_a_sensitive_task(chain: dict[str, Path], tmp_path: Path) -> None:
    from lassi.producer.cli import main as producer

    out = tmp_path / "encoder.safetensors"
    result = _invoke(producer, ["train", "--spec", str(chain["spec"]), *DATA, "--task", "orientation",
                                "--epochs", "1", "--quiet", "--out", str(out)])  # fmt: skip
    one_line(result, 2, "orientation", "sensitive")
    assert not out.exists()


def test_settings_that_can_never_certify_are_refused_up_front(
    chain: dict[str, Path], tmp_path: Path
) -> None:
    from lassi.producer.cli import main as producer

    out = tmp_path / "bundle.safetensors"
    encode = ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), *DATA,
              "--split", "test", "--limit", "2", "--certify", "--quiet", "--out", str(out)]  # fmt: skip
    # Hoeffding: Δ1 = sqrt(ln(2/α1)/(2 n0)) > Δ = 0.05 below n0 = 1199 at α1 = 0.005
    result = _invoke(producer, [*encode, "--bounds", "hoeffding", "--n0", "1198", "--n", "2000"])
    one_line(result, 2, "n0=1198", "Hoeffding")
    # Hoeffding: q > 1 for a tiny n
    result = _invoke(producer, [*encode, "--bounds", "hoeffding", "--n0", "2000", "--n", "20"])
    one_line(result, 2, "n=20", "q =")
    # exact bounds: even p̂ = 1 cannot pass step 2
    result = _invoke(producer, [*encode, "--n0", "5", "--n", "2000"])
    one_line(result, 2, "n0=5")
    assert not out.exists()
