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
from lassi.spec.signing import sign_file, verify_file


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
