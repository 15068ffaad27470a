"""Real users' data and choices: label policy, CelebA layouts, no silent fallbacks (CLIs)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from factories import DATA

from lassi.spec import RepresentationBundle, read_artifact


def invoke(main, args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def encode_args(chain: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["encode", "--spec", chain["spec"], "--encoder", chain["encoder"], *DATA,
            "--split", "val", "--limit", "5", "--quiet", "--out", out, *extra]  # fmt: skip


# ------------------------------------------------------------------------------- label policy


def test_bundle_carries_only_the_task_label_by_default(chain):
    meta = read_artifact(chain["train"], expect=RepresentationBundle).meta
    assert meta.label_names == ["object_hue"]
    assert meta.sensitive_labels == []


def test_encode_exports_the_labels_asked_for(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    result = invoke(main, encode_args(chain, out, "--labels", "shape,floor_hue"))
    assert result.exit_code == 0, result.output
    bundle = read_artifact(out, expect=RepresentationBundle)
    assert bundle.meta.label_names == ["floor_hue", "shape"]
    assert set(k for k in bundle.tensors if k.startswith("labels.")) == {
        "labels.floor_hue",
        "labels.shape",
    }


def test_sensitive_label_needs_the_explicit_flag(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    result = invoke(main, encode_args(chain, out, "--labels", "object_hue,orientation"))
    assert result.exit_code == 2
    assert "orientation" in result.output and "--include-sensitive-labels" in result.output
    assert not out.exists()
    result = invoke(main, encode_args(chain, out, "--include-sensitive-labels"))
    assert result.exit_code == 0, result.output
    meta = read_artifact(out, expect=RepresentationBundle).meta
    assert meta.label_names == ["object_hue", "orientation"]
    assert meta.sensitive_labels == ["orientation"]


def test_consumer_refuses_to_train_on_a_sensitive_label(chain, tmp_path):
    from lassi.consumer.cli import main as consumer
    from lassi.producer.cli import main as producer

    bundle = tmp_path / "b.safetensors"
    result = invoke(producer, encode_args(chain, bundle, "--include-sensitive-labels"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "c.safetensors"
    result = invoke(consumer, ["train", "--bundle", bundle, "--task", "orientation",
                               "--sigma", "0.5", "--quiet", "--out", out])  # fmt: skip
    assert result.exit_code == 2
    assert "sensitive" in result.output and not out.exists()


def test_encoder_training_on_a_sensitive_attribute_is_a_usage_error(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "e.safetensors"
    result = invoke(main, ["train", "--spec", chain["spec"], *DATA, "--task", "orientation",
                           "--epochs", "1", "--quiet", "--out", out])  # fmt: skip
    assert result.exit_code == 2
    assert "sensitive" in result.output and not out.exists()
