"""Hostile values that fit the schema: terminal controls in metadata and paths, declared sizes
that would exhaust memory (devices, huge Glows, class and vector counts), certificates the
schema accepts (each can be replayed), and all-or-nothing reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from factories import forge, invoke_bounded, one_line, parts, run_child, write_raw
from lassi.consumer.cli import main as consumer
from lassi.spec import EXIT_CODES, SCHEMA_VERSION, LassiError, read_artifact
from lassi.spec.contract.binding import read_spec_header
from lassi.spec.contract.models import (
    RepresentationBundle,
)
from lassi.spec.runtime.center_smoothing import CenterSmoothing

USAGE, INVALID = (EXIT_CODES[k] for k in ("usage", "invalid_artifact"))


# --------------------------------------------------------------------------- output that cannot be spoofed


@pytest.mark.slow
def test_inspect_escapes_terminal_controls(chain: dict[str, Path], tmp_path: Path) -> None:
    evil = "x\x1b[2J\x07\r\nparent:  glow " + "0" * 64 + "\nkind:    glow"
    bad = forge(chain["classifier"], tmp_path / "evil.safetensors", lambda m: m.__setitem__("tool", evil))
    text = CliRunner().invoke(consumer, ["inspect", str(bad)]).output
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert [line for line in text.splitlines() if line.startswith("kind:")] == [f"kind:    classifier (schema_version {SCHEMA_VERSION})"]
    parents = read_artifact(bad).meta.parents
    assert len([line for line in text.splitlines() if line.startswith("parent:")]) == len(parents)
    as_json = CliRunner().invoke(consumer, ["inspect", "--json", str(bad)])
    assert json.loads(as_json.output)["metadata"]["tool"] == evil


def test_errors_escape_controls_in_paths(tmp_path: Path) -> None:
    name = tmp_path / "a\x1b[31mb\nerror: all fine"
    result = CliRunner().invoke(consumer, ["inspect", str(name)])
    assert result.exit_code == USAGE and "\x1b" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_onnx_card_is_typed_and_bounded(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from lassi.spec.contract.onnx_check import set_onnx_card

    node = helper.make_node("Identity", ["z"], ["logits"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for card, fragment in (
        ({"num_classes": 10**9}, "num_classes"),
        ({"parents": {"encoder": "not a hash"}}, "parents"),
        ({"sigma_cls": "0.5"}, "sigma_cls"),
    ):
        set_onnx_card(model, card)
        path = tmp_path / "m.onnx"
        onnx.save(model, str(path))
        one_line(CliRunner().invoke(consumer, ["inspect", str(path)]), INVALID, path.name, fragment, warnings=True)


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize("target", ["/dev/zero", "bomb"])
@pytest.mark.slow
def test_peak_memory_of_a_cli_run_is_bounded(target: str, chain: dict[str, Path], tmp_path: Path) -> None:
    """Run in a child process; its peak resident memory stays far below 1 GB."""
    if target == "bomb":  # a header claiming a 10**12-element tensor
        bomb = forge(chain["test"], tmp_path / "bomb.safetensors")
        data = bomb.read_bytes()
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        header["z"]["shape"] = [10**6, 10**6]
        blob = json.dumps(header).encode()
        bomb.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + header_len :])
        target = str(bomb)
    code = "from lassi.consumer.cli import main; main()"
    run, peak_kib = run_child(code, ["inspect", target])
    assert run.returncode in (USAGE, INVALID) and "Traceback" not in run.stderr, run.stderr
    assert peak_kib < 1024 * 1024, f"peak {peak_kib} KiB"


def test_the_peak_memory_measure_of_the_corpus_can_fail() -> None:
    """invoke_bounded (used for every CLI case) catches a command that allocates past its limit.

    The block is far above the failing limit: the session's other threads and its garbage
    collector can lower the resident size by tens of MiB during the call (a 64 MiB block against
    a 32 MiB limit once went unseen in a full run)."""
    import click

    @click.command()
    def hungry() -> None:
        block = np.ones(256 * 1024 * 1024 // 8)  # 256 MiB, touched
        click.echo(block.sum())

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("no /proc/self/clear_refs here: the corpus runs unmeasured")
    assert invoke_bounded(hungry, [], limit_kib=1024 * 1024).exit_code == 0
    with pytest.raises(AssertionError, match="peak memory grew"):
        invoke_bounded(hungry, [], limit_kib=32 * 1024)


# --------------------------------------------------------------------------- metadata values


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.dictionaries(
    st.sampled_from(["sigma", "epsilon", "n0", "n", "alpha1", "alpha2", "delta", "beta", "seed"]),
    _values, min_size=1, max_size=3))
@pytest.mark.slow
def test_any_certificate_the_schema_accepts_can_be_replayed(edits, chain, tmp_path) -> None:
    meta, tensors = parts(chain["test"])
    meta["certificate"].update(edits)
    text = json.dumps(meta)  # NaN/Infinity become bare literals, which strict JSON refuses
    path = tmp_path / "values.safetensors"
    write_raw(path, text, tensors)
    try:
        bundle = read_artifact(path, expect=RepresentationBundle)
    except LassiError as error:
        assert error.exit_code == INVALID and "\n" not in str(error)
        return
    CenterSmoothing(lambda t: t, bundle.meta.certificate.m, bundle.meta.certificate)  # never raises



# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(("size", "levels", "steps", "hidden", "coupling"),
                         [(16, 2, 2, 16, "additive"), (32, 3, 1, 8, "affine"), (8, 1, 3, 4, "additive")])
@pytest.mark.slow
def test_glow_weight_count_matches_the_real_glow(size, levels, steps, hidden, coupling) -> None:
    """The count the reader checks before building equals the state dict a real Glow has
    (built on the meta device: nothing is allocated)."""
    import torch

    from lassi.regulator.training import build_glow
    from lassi.spec.contract.architecture import glow_weight_count
    from lassi.spec.contract.models import GlowConfig

    flow = GlowConfig(image_size=size, n_levels=levels, n_steps=steps, hidden=hidden, coupling=coupling)
    with torch.device("meta"):
        state = build_glow(flow).state_dict()
    assert glow_weight_count(size, levels, steps, hidden, coupling) == (
        sum(v.numel() for v in state.values()), len(state))


@pytest.mark.slow
def test_a_huge_declared_glow_is_refused_within_bounded_memory(chain: dict[str, Path], tmp_path: Path) -> None:
    """A small spec declaring a Glow of ~5e8 weights: refused before building, peak RSS < 1 GB."""
    bad = forge(chain["spec"], tmp_path / "bomb.safetensors", lambda m: m["flow"].update(n_steps=64, hidden=2048))
    code = "from lassi.producer.cli import main; main()"
    args = ["export-onnx", "--spec", str(bad), "--encoder", str(chain["encoder"]), "--out-dir", str(tmp_path / "o")]
    run, peak_kib = run_child(code, args)
    assert run.returncode == INVALID and "over the limit" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert peak_kib < 1024 * 1024, f"peak {peak_kib} KiB"
    assert bad.stat().st_size < 5 * 1024 * 1024 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_report_and_side_files_are_all_or_nothing(chain: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """A failure while rendering the figure leaves neither the report nor any side file."""
    import lassi.consumer.report as report

    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device", "r.png")

    monkeypatch.setattr(report, "plot_radii", broken)
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n0", "10",
            "--n", "20", "--quiet", "--out", str(tmp_path / "r.safetensors")]
    result = CliRunner().invoke(consumer, args)
    assert result.exit_code == USAGE and "No space left" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_spec_header_refuses_a_declared_architecture_its_weights_do_not_back(chain, tmp_path) -> None:
    """``verify --spec`` reads only the header; the architecture check runs there too."""
    bad = forge(chain["spec"], tmp_path / "lie.safetensors", lambda m: m["flow"].update(hidden=17))
    with pytest.raises(LassiError, match="architecture and weights disagree") as error:
        read_spec_header(bad)
    assert error.value.exit_code == INVALID


@pytest.mark.slow
def test_forged_report_scope_is_refused_at_read(chain: dict[str, Path], tmp_path: Path) -> None:
    """A report file that claims m and coverage without a bound spec (valid checksum) is refused
    by every reader with a one-line error, not shown as if a spec had vouched for it."""
    bad = forge(chain["report"], tmp_path / "report.safetensors",
                meta_edit=lambda m: m.update(scope={"attributes": ["orientation"], "epsilon": 1.0, "m": 49}))
    result = CliRunner().invoke(consumer, ["inspect", str(bad)])
    assert result.exit_code == INVALID, result.output
    assert "need spec_sha256" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- derived bounds


def test_an_attack_extension_of_349_vectors_is_valid_and_hostile_sizes_stay_bounded(tmp_path: Path) -> None:
    """The card of an encoder trained against a regulator's extension of 349 vectors (300 beyond
    the spec's 49) was refused by a hard cap of 256 after training; the bound is now
    MAX_VECTORS, the rows a spec file can reasonably hold, for every count of attribute vectors."""
    from lassi.spec.contract.models import MAX_VECTORS, AttackSet, CenterSmoothingParams, OnnxCard

    sha = "0" * 64
    assert len(AttackSet(spec=sha, extra_vectors=[f"v{i}" for i in range(300)]).extra_vectors) == 300
    assert OnnxCard(m=349).m == 349
    params = dict(sigma=0.1, epsilon=1.0, n0=10, n=10, alpha1=0.01, alpha2=0.01, delta=0.1, seed=0,
                  bounds="hoeffding")
    assert CenterSmoothingParams(**params, m=349).m == 349
    for build in (
        lambda: AttackSet(spec=sha, extra_vectors=[f"v{i}" for i in range(MAX_VECTORS + 1)]),
        lambda: OnnxCard(m=MAX_VECTORS + 1),
        lambda: CenterSmoothingParams(**params, m=10**9),  # t-noise in 10**9 dimensions: refused
    ):
        with pytest.raises(ValidationError):
            build()


def test_nan_weights_at_a_checkpoint_say_training_diverged(tmp_path: Path) -> None:
    """A run whose weights became NaN used to fail writing its own checkpoint, blamed as an
    invalid artifact (exit 3); it is the training that diverged (exit 2), and nothing is written."""
    from lassi.spec.contract.io import write_artifact
    from lassi.spec.contract.models import Checkpoint

    meta = Checkpoint(tool="test", stage="glow", run_key="k", step=17)
    path = tmp_path / "run.ckpt"
    with pytest.raises(LassiError, match=r"training diverged \(glow: the weights are NaN or Inf at step 17\); lower --lr") as error:
        write_artifact(path, meta, {"model.w": np.array([1.0, np.nan], np.float32)})
    assert error.value.exit_code == USAGE and list(tmp_path.iterdir()) == []
