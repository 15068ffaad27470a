"""Caches and checkpoints are keyed by the content of the data: two data sets never mix.

Each scenario changes image files under a command that has a checkpoint or a cache of the old
files, and checks that the output equals a fresh run's on the new files:

- ``encode --certify`` stopped after one sample on folder A, then the same command on folder B
  (same CSV and ids, other pixels): the note "data changed since the checkpoint: starting over",
  and B's certificate;
- ``encode``, one image changed, ``encode`` again with the same latent cache: the changed
  image's latent is encoded anew (note), the bundle equals a fresh run's;
- encoder training stopped after an epoch, a training image changed, the run resumed: it starts
  over (note) and ends with the weights of a fresh run on the new data;
- Glow training, which reads its images at every step: a file changed between two steps is
  refused (exit 2, naming it; the run would otherwise mix two versions of its data), and the
  rerun starts over from the checkpoint's step 0 with the weights of a fresh run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import run
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import Checkpoint, read_artifact

CERTIFICATE = ("z", "ids", "z_cs", "r_cs", "status", "center_shift", "file_sha256")
CHANGED_NOTE = "data changed since the checkpoint"


def _image(path: Path, seed: int) -> None:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _folder(root: Path, seed: int) -> Path:
    """Twelve random 20x20 PNGs (six train, three val, three test) with an object_hue label;
    the CSV is the same for every seed, the pixels are not."""
    root.mkdir(parents=True)
    rows = ["file,split,object_hue"]
    for i in range(12):
        _image(root / f"img{i}.png", seed * 100 + i)
        split = "train" if i < 6 else "val" if i < 9 else "test"
        rows.append(f"img{i}.png,{split},{i % 2}")
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    return root


def _encode(chain, data: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), "--dataset", "folder",
            "--data-root", str(data), "--split", "test", "--quiet", *extra, "--out", str(out)]  # fmt: skip


def _same_tensors(a: Path, b: Path, names=None) -> None:
    __tracebackhide__ = True
    ta, tb = read_artifact(a).tensors, read_artifact(b).tensors
    assert ta.keys() == tb.keys()
    for name in names or ta:
        np.testing.assert_array_equal(ta[name], tb[name], err_msg=name)


@pytest.fixture()
def fast_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LASSI_CHECKPOINT_SECONDS", "0")


@pytest.mark.slow
def test_certification_stopped_on_one_folder_starts_over_on_another(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_checkpoints
) -> None:
    from lassi.spec.runtime.center_smoothing import CenterSmoothing

    a, b = _folder(tmp_path / "a", seed=0), _folder(tmp_path / "b", seed=1)
    certify = ["--certify", "--n0", "1500", "--n", "2000", "--delta", "0.1"]
    fresh = tmp_path / "fresh" / "bundle.safetensors"
    run(producer, _encode(chain, b, fresh, *certify))
    real, calls = CenterSmoothing.certify, []

    def stopped(self, seed: int, sample_id: int):
        calls.append(sample_id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run on A is stopped during its second sample
        return real(self, seed, sample_id)

    monkeypatch.setattr(CenterSmoothing, "certify", stopped)
    out = tmp_path / "run" / "bundle.safetensors"
    result = CliRunner().invoke(producer, _encode(chain, a, out, *certify))
    assert result.exit_code != 0 and not out.exists(), result.output
    checkpoint = out.with_name(out.name + ".ckpt")
    assert read_artifact(checkpoint, expect=Checkpoint).meta.step == 1
    monkeypatch.setattr(CenterSmoothing, "certify", real)
    calls.clear()
    result = CliRunner().invoke(producer, _encode(chain, b, out, *certify))
    assert result.exit_code == 0, result.output
    assert f"{CHANGED_NOTE} {checkpoint}: starting over" in result.output
    _same_tensors(out, fresh, CERTIFICATE)
    assert read_artifact(out).meta.data == read_artifact(fresh).meta.data
    assert not checkpoint.exists()
    # and the same command on the same data resumes (the key is the data, not the folder's name)
    monkeypatch.setattr(CenterSmoothing, "certify", stopped)
    calls.clear()
    again = tmp_path / "again" / "bundle.safetensors"
    assert CliRunner().invoke(producer, _encode(chain, b, again, *certify)).exit_code != 0
    monkeypatch.setattr(CenterSmoothing, "certify", real)
    moved = shutil.copytree(b, tmp_path / "b-moved")
    result = CliRunner().invoke(producer, _encode(chain, moved, again, *certify))
    assert result.exit_code == 0 and CHANGED_NOTE not in result.output, result.output
    _same_tensors(again, fresh, CERTIFICATE)


@pytest.mark.slow
def test_a_changed_image_is_never_served_from_the_latent_cache(chain, tmp_path: Path) -> None:
    data = _folder(tmp_path / "data", seed=0)
    first, second = tmp_path / "out" / "first.safetensors", tmp_path / "out" / "second.safetensors"
    run(producer, _encode(chain, data, first))
    _image(data / "img10.png", seed=999)  # test sample 1 of 3
    result = CliRunner().invoke(producer, _encode(chain, data, second))
    assert result.exit_code == 0, result.output
    assert "1 of 3 images changed since the latent cache" in result.output
    fresh = tmp_path / "fresh" / "fresh.safetensors"  # its own, empty cache
    run(producer, _encode(chain, data, fresh))
    _same_tensors(second, fresh)
    assert read_artifact(second).meta.data == read_artifact(fresh).meta.data
    old, new = read_artifact(first).tensors, read_artifact(second).tensors
    assert not np.array_equal(old["z"][1], new["z"][1])
    assert (old["file_sha256"][[0, 2]] == new["file_sha256"][[0, 2]]).all()
    assert (old["file_sha256"][1] != new["file_sha256"][1]).any()


def _starts_over_like_a_fresh_run(cli, command: Callable[[Path], list[str]], out: Path, tmp_path: Path) -> Path:
    """Run ``command(out)`` again: it notes that the checkpoint beside ``out`` was made on other
    data, starts over and ends with the tensors of a fresh run (whose output is returned)."""
    result = CliRunner().invoke(cli, command(out))
    assert result.exit_code == 0, result.output
    assert f"{CHANGED_NOTE} {out.with_name(out.name + '.ckpt')}: starting over" in result.output
    fresh = tmp_path / "fresh" / out.name
    run(cli, command(fresh))
    _same_tensors(out, fresh)
    return fresh


@pytest.mark.slow
def test_encoder_training_resumed_over_a_changed_file_starts_over(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lassi.producer.training as training

    data = _folder(tmp_path / "data", seed=0)

    def train(out: Path) -> list[str]:
        return ["train", "--spec", str(chain["spec"]), "--dataset", "folder", "--data-root", str(data),
                "--image-size", "16", "--task", "object_hue", "--hidden", "8", "--k", "4", "--epochs", "3",
                "--batch-size", "4", "--attack-points", "2", "--quiet", "--out", str(out)]  # fmt: skip

    save = training.save_checkpoint

    def stop_after_epoch(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", stop_after_epoch)
    out = tmp_path / "run" / "encoder.safetensors"
    assert CliRunner().invoke(producer, train(out)).exit_code != 0
    checkpoint = out.with_name(out.name + ".ckpt")
    assert read_artifact(checkpoint, expect=Checkpoint).meta.step == 1
    monkeypatch.setattr(training, "save_checkpoint", save)
    _image(data / "img3.png", seed=999)  # a training image changes between epochs 1 and 2
    fresh = _starts_over_like_a_fresh_run(producer, train, out, tmp_path)
    assert read_artifact(out).meta.data.content_sha256 == read_artifact(fresh).meta.data.content_sha256


@pytest.mark.slow
def test_glow_training_refuses_a_file_changed_between_steps_then_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lassi.regulator.training as training

    data = _folder(tmp_path / "data", seed=0)

    def train_glow(out: Path) -> list[str]:
        return ["train-glow", "--dataset", "folder", "--data-root", str(data), "--image-size", "8", "--levels", "2",
                "--depth", "1", "--hidden", "4", "--steps", "4", "--batch-size", "8", "--warmup", "1",
                "--checkpoint-every", "1", "--quiet", "--out", str(out)]  # fmt: skip

    step, calls = training.optimisation_step, []

    def changing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # every batch holds all six training images
            _image(data / "img3.png", seed=999)
        return step(*args, **kwargs)

    monkeypatch.setattr(training, "optimisation_step", changing)
    out = tmp_path / "run" / "glow.safetensors"
    result = CliRunner().invoke(regulator, train_glow(out))
    assert result.exit_code == 2 and not out.exists(), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "img3.png" in lines[0] and "changed while the run" in lines[0], lines
    checkpoint = out.with_name(out.name + ".ckpt")
    assert read_artifact(checkpoint, expect=Checkpoint).meta.step == 2
    monkeypatch.setattr(training, "optimisation_step", step)
    _starts_over_like_a_fresh_run(regulator, train_glow, out, tmp_path)
    glow = read_artifact(out).meta
    assert glow.data.content_hash == "per-file" and glow.data.content_sha256 is not None


def test_id_ranges_and_the_file_list_hash() -> None:
    from lassi.spec.contract.data_identity import file_list_sha256, id_ranges

    assert id_ranges([9, 0, 1, 2, 3, 7]) == "0–3, 7, 9"
    assert id_ranges([]) == "none"
    assert id_ranges(range(0, 40, 2), limit=4) == "0, 2, 4, …, 38"
    digests = np.arange(3 * 32, dtype=np.uint8).reshape(3, 32)
    names = ["a.png", "b.png", "c.png"]
    reference = file_list_sha256([0, 1, 2], names, digests)
    # the listing order does not matter, a changed name or file hash does
    assert file_list_sha256([2, 0, 1], [names[2], names[0], names[1]], digests[[2, 0, 1]]) == reference
    assert file_list_sha256([0, 1, 2], ["a.png", "b2.png", "c.png"], digests) != reference
    changed = digests.copy()
    changed[1, 0] ^= 1
    assert file_list_sha256([0, 1, 2], names, changed) != reference


def _forged_checkpoint(path: Path, state: dict, tensors: dict) -> None:
    """A checkpoint that passes every artifact check (a valid file with its checksum) and
    holds what a hostile or buggy writer chose."""
    from lassi.spec.contract.io import write_artifact

    write_artifact(path, Checkpoint(tool="t", stage="s", run_key="k", step=1, state=state), tensors)


@pytest.mark.parametrize(
    ("state", "tensors"),
    [
        ({"optimizer_param_groups": [{"params": [0, 1, 2, 3, 4, 5]}]}, {}),  # groups of another model
        ({"optimizer_param_groups": "not a list"}, {}),
        ({"optimizer_param_groups": [{"lr": 0.1, "params": [0, 1]}]}, {"optim.x.step": np.zeros(1, np.float32)}),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_run_is_refused_in_one_line(tmp_path: Path, state, tensors) -> None:
    import torch

    from lassi.spec import LassiError
    from lassi.spec.contract.torch_state import load_checkpoint, module_tensors

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "run.ckpt"
    _forged_checkpoint(path, state, module_tensors(model, "model.m.") | tensors)
    with pytest.raises(LassiError, match="checkpoint") as error:
        load_checkpoint(path, stage="s", key="k", modules={"m": model}, optimizer=optimizer)
    assert error.value.exit_code == 3 and "\n" not in str(error.value) and str(path) in str(error.value)
