"""Ed25519 hand-over: keygen, sign, and --trusted-key refusing unsigned or foreign-signed input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from factories import make
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, SignatureError, write_artifact
from lassi.spec.contract.signing import sign_file, verify_file


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("producer", "mallory"):
        result = CliRunner().invoke(producer, ["keygen", "--out", str(tmp_path / f"{name}.key")])
        assert result.exit_code == 0, result.output
        out[name] = tmp_path / f"{name}.key"
        assert (tmp_path / f"{name}.key.pub").exists()
    assert (out["producer"].stat().st_mode & 0o777) == 0o600
    return out


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    meta, tensors = make("representations", n=40, k=4)
    path = tmp_path / "bundle.safetensors"
    write_artifact(path, meta, tensors)
    return path


def _train(bundle: Path, out: Path, key: Path) -> object:
    return CliRunner().invoke(
        consumer,
        [
            "train",
            "--bundle",
            str(bundle),
            "--task",
            "object_hue",
            "--quiet",
            "--trusted-key",
            str(key),
            "--out",
            str(out),
        ],
    )


@pytest.mark.slow
def test_signed_bundle_is_accepted(tmp_path: Path, keys: dict[str, Path], bundle: Path) -> None:
    result = CliRunner().invoke(producer, ["sign", str(bundle), "--key", str(keys["producer"])])
    assert result.exit_code == 0, result.output
    out = tmp_path / "classifier.safetensors"
    result = _train(bundle, out, Path(f"{keys['producer']}.pub"))
    assert result.exit_code == 0, result.output
    assert out.exists()
    check = CliRunner().invoke(
        regulator, ["verify-signature", str(bundle), "--trusted-key", f"{keys['producer']}.pub"]
    )
    assert check.exit_code == 0 and "signed by key" in check.output


def test_unsigned_input_is_refused(tmp_path: Path, keys: dict[str, Path], bundle: Path) -> None:
    out = tmp_path / "classifier.safetensors"
    result = _train(bundle, out, Path(f"{keys['producer']}.pub"))
    assert result.exit_code == EXIT_CODES["signature"]
    assert "is not signed" in result.output and not out.exists()


def test_wrong_signer_and_modified_file_are_refused(
    tmp_path: Path, keys: dict[str, Path], bundle: Path
) -> None:
    sign_file(bundle, keys["mallory"])
    out = tmp_path / "classifier.safetensors"
    result = _train(bundle, out, Path(f"{keys['producer']}.pub"))
    assert (
        result.exit_code == EXIT_CODES["signature"]
        and "not made by any trusted key" in result.output
    )
    sign_file(bundle, keys["producer"])
    assert verify_file(bundle, [Path(f"{keys['producer']}.pub")])
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1
    bundle.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="modified after it was signed"):
        verify_file(bundle, [Path(f"{keys['producer']}.pub")])
    bundle.with_name(bundle.name + ".sig").write_text("{not json")
    with pytest.raises(SignatureError, match="malformed"):
        verify_file(bundle, [Path(f"{keys['producer']}.pub")])
    assert not out.exists()


def test_keygen_refuses_to_overwrite(keys: dict[str, Path]) -> None:
    result = CliRunner().invoke(consumer, ["keygen", "--out", str(keys["producer"])])
    assert result.exit_code == EXIT_CODES["usage"] and "refusing to overwrite" in result.output


# ----------------------------------------------------------------- the regulator is accountable


@pytest.fixture()
def handed_over(tmp_path: Path, chain: dict[str, Path]) -> dict[str, Path]:
    """Copies of the chain's spec, certified bundle and classifier, a regulator and a producer
    key pair; the bundle signed by the producer, the spec not (yet) signed."""
    files = {}
    for name in ("spec", "test", "classifier", "encoder"):
        files[name] = tmp_path / chain[name].name
        files[name].write_bytes(chain[name].read_bytes())
    for name in ("producer", "regulator", "mallory"):
        result = CliRunner().invoke(producer, ["keygen", "--out", str(tmp_path / f"{name}.key")])
        assert result.exit_code == 0, result.output
        files[name] = tmp_path / f"{name}.key"
        files[f"{name}.pub"] = tmp_path / f"{name}.key.pub"
    sign_file(files["test"], files["producer"])
    return files


def _verify(files: dict[str, Path], out: Path, *keys: str) -> object:
    args = ["verify", "--classifier", files["classifier"], "--bundle", files["test"], "--spec",
            files["spec"], "--n0", "10", "--n", "100", "--quiet", "--out", out, *keys]  # fmt: skip
    return CliRunner().invoke(consumer, [str(a) for a in args])


@pytest.mark.slow
def test_consumer_refuses_a_spec_without_the_regulators_signature(
    tmp_path: Path, handed_over: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    f, out = handed_over, tmp_path / "report.safetensors"
    producer_key = ["--trusted-key", f["producer.pub"]]
    # the case: the spec's signature deleted, only the producer's key given
    result = _verify(f, out, *producer_key)
    assert result.exit_code == EXIT_CODES["signature"], result.output
    assert "spec.safetensors: is not signed (no spec.safetensors.sig) but the regulator's key " \
        "(--regulator-key, or a --trusted-key) is required" in result.output
    assert not out.exists()
    sign_file(f["spec"], f["regulator"])
    # signed by the regulator, but its key is not among those given
    result = _verify(f, out, *producer_key)
    assert result.exit_code == EXIT_CODES["signature"]
    assert "signature was not made by the regulator's key" in result.output
    result = _verify(f, out, *producer_key, "--regulator-key", f["regulator.pub"])
    assert result.exit_code == 0, result.output
    out.unlink()
    for side in out.parent.glob("report.*"):
        side.unlink()
    # the regulator's key from the environment; a spec another key signed is refused
    monkeypatch.setenv("LASSI_REGULATOR_KEYS", str(f["regulator.pub"]))
    assert _verify(f, out, *producer_key).exit_code == 0
    for side in out.parent.glob("report.*"):
        side.unlink()
    sign_file(f["spec"], f["mallory"])
    result = _verify(f, out, *producer_key)
    assert result.exit_code == EXIT_CODES["signature"] and not out.exists()
    # the producer's key does not stand in for the regulator's when --regulator-key is given
    sign_file(f["spec"], f["producer"])
    result = _verify(f, out, *producer_key)
    assert result.exit_code == EXIT_CODES["signature"], result.output
    # without any key nothing is checked (the report says the binding's scope)
    monkeypatch.delenv("LASSI_REGULATOR_KEYS")
    assert _verify(f, out).exit_code == 0


@pytest.mark.parametrize("command", ["encode", "export-onnx"])
@pytest.mark.slow
def test_producer_refuses_a_spec_without_the_regulators_signature(
    tmp_path: Path, handed_over: dict[str, Path], command: str
) -> None:
    f = handed_over
    out = tmp_path / ("b.safetensors" if command == "encode" else "onnx")
    if command == "encode":
        from factories import DATA

        args = ["encode", "--spec", f["spec"], "--encoder", f["encoder"], *DATA, "--split",
                "test", "--limit", "2", "--quiet", "--out", out]  # fmt: skip
    else:
        args = ["export-onnx", "--spec", f["spec"], "--encoder", f["encoder"], "--out-dir", out]
    args += ["--regulator-key", f["regulator.pub"]]
    result = CliRunner().invoke(producer, [str(a) for a in args])
    assert result.exit_code == EXIT_CODES["signature"], result.output
    assert "is not signed (no spec.safetensors.sig)" in result.output and not out.exists()
    sign_file(f["spec"], f["regulator"])
    result = CliRunner().invoke(producer, [str(a) for a in args])
    assert result.exit_code == 0, result.output
