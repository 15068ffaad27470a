"""``lassi-regulator import-glow``: rosinality/glow-pytorch checkpoints against the reference
implementation's own outputs (tests/data/rosinality, produced once by running it), and hostile
checkpoints refused with exit 3 and nothing executed."""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, safe_open

from factories import TEST_DATA, build_chain, run
from lassi.regulator.cli import main as regulator
from lassi.regulator.glow import preprocess
from lassi.regulator.similarity import load_glow
from lassi.spec import EXIT_CODES, GlowArtifact, read_artifact

DATA = TEST_DATA / "rosinality"
CASES = ("affine_lu", "additive_plain")
INVALID = EXIT_CODES["invalid_artifact"]


def reference(case: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    state = load_file(DATA / f"{case}.state.safetensors")
    outputs = load_file(DATA / f"{case}.outputs.safetensors")
    with safe_open(DATA / f"{case}.outputs.safetensors", "pt") as f:
        meta = f.metadata()
    return state, outputs, meta


def import_cli(checkpoint: Path, out: Path, size: int | str, *extra: str):
    args = ["import-glow", str(checkpoint), "--out", str(out), "--image-size", str(size), *extra]
    return CliRunner().invoke(regulator, args)


def save_pt(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("container", ["pt", "safetensors", "dataparallel"])
@pytest.mark.slow
def test_import_matches_the_reference_outputs(case: str, container: str, tmp_path: Path) -> None:
    """z (every level, in order), log-det, log p(z) and the reconstruction of the imported Glow
    equal those the reference implementation computed, within 1e-5; its preprocessing of the
    same uint8 images is the reference's quantisation exactly."""
    state, ref, meta = reference(case)
    if container == "safetensors":
        checkpoint = DATA / f"{case}.state.safetensors"
    elif container == "pt":
        checkpoint = save_pt(state, tmp_path / "model.pt")
    else:  # saved from nn.DataParallel, as rosinality's train.py does
        checkpoint = save_pt({"module." + k: v for k, v in state.items()}, tmp_path / "model.pt")
    out = tmp_path / "glow.safetensors"
    result = import_cli(checkpoint, out, meta["image_size"], "--n-bits", meta["n_bits"])
    assert result.exit_code == 0, result.output
    glow, artifact = load_glow(out)
    assert artifact.meta.imported is not None and artifact.meta.training is None
    assert artifact.meta.imported.plain_convs == (2 if case == "additive_plain" else 0)
    assert artifact.meta.flow.coupling == ("affine" if meta["affine"] == "True" else "additive")
    assert (artifact.meta.flow.n_levels, artifact.meta.flow.n_steps) == (int(meta["n_block"]), int(meta["n_flow"]))
    assert torch.equal(preprocess(ref["images"], int(meta["n_bits"])), ref["x"])

    close = dict(atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        z, logdet, log_pz = glow.encode_with_logdet(ref["input"])
        want = torch.cat([ref[f"z_{i}"].flatten(1) for i in range(glow.n_levels)], dim=1)
        torch.testing.assert_close(z, want, **close)
        torch.testing.assert_close(logdet, ref["logdet"].expand(len(z)), **close)
        torch.testing.assert_close(log_pz, ref["log_p"], **close)
        torch.testing.assert_close(glow.decode(want), ref["reconstruction"], **close)
        for level, z_level in enumerate(glow.split_latent(z)):
            torch.testing.assert_close(z_level, ref[f"z_{level}"], **close)
        # the reference train.py's loss: -(log_p + logdet - D log n_bins) / (D log 2) per image
        d, n_bins = ref["input"][0].numel(), 2.0 ** int(meta["n_bits"])
        loss = -(ref["log_p"] + ref["logdet"] - d * math.log(n_bins)) / (d * math.log(2.0))
        torch.testing.assert_close(glow.bits_per_dim(ref["input"]), loss, **close)


@pytest.mark.slow
def test_imported_glow_runs_define_show_and_the_whole_chain(tmp_path: Path) -> None:
    """The imported 16x16 Glow serves define, show and producer -> consumer like a trained one."""
    glow = tmp_path / "imported.safetensors"
    assert import_cli(DATA / "affine_lu.state.safetensors", glow, 16).exit_code == 0
    chain = build_chain(tmp_path, glow=glow)
    assert chain["report"].is_file()
    spec = read_artifact(chain["spec"], parents={"glow": glow})
    assert spec.meta.flow == read_artifact(glow, expect=GlowArtifact).meta.flow
    run(regulator, ["show", str(chain["spec"]), "--inputs", "2", "--steps", "3", "--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").stat().st_size > 100


# --------------------------------------------------------------------------- hostile checkpoints


class _Payload:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_pickle(obj: object, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


def _torch_zip(obj: object, path: Path) -> Path:
    torch.save(obj, path)  # the zip container torch.load expects, with a hostile data.pkl
    return path


def _state_with_payload(marker: Path) -> dict:
    state, _, _ = reference("additive_plain")
    return {**state, "blocks.0.flows.0.actnorm.loc": _Payload(marker)}


@pytest.mark.parametrize(
    "make",
    [
        lambda m, p: _legacy_pickle(_Payload(m), p),
        lambda m, p: _torch_zip(_Payload(m), p),
        lambda m, p: _torch_zip(_state_with_payload(m), p),
        lambda m, p: _torch_zip({"a": torch.zeros(2), "b": [_Payload(m)]}, p),
    ],
    ids=["raw_pickle", "torch_zip", "payload_inside_state_dict", "payload_nested"],
)
def test_hostile_pickles_are_refused_and_nothing_runs(make, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    checkpoint = make(marker, tmp_path / "evil.pt")
    out = tmp_path / "glow.safetensors"
    result = import_cli(checkpoint, out, 8)
    assert result.exit_code == INVALID, result.output
    assert "weights-only" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not out.exists()


def _edit(key: str, value):
    def change(state: dict) -> dict:
        state = dict(state)
        if value is None:
            del state[key]
        else:
            state[key] = value(state[key]) if callable(value) else value
        return state

    return change


L0 = "blocks.0.flows.0."
NOT_MAPPABLE = [
    ("not_a_dict", lambda s: [s[k] for k in sorted(s)], "not a state dict"),
    ("nested", lambda s: {"model": s, "step": torch.tensor(3)}, "is a dict, not a tensor"),
    ("a_number", lambda s: {**s, "epoch": 7}, "is a int, not a tensor"),
    ("stranger_key", lambda s: {**s, "blocks.0.extra": torch.zeros(1)}, "blocks.0.extra"),
    ("other_model", lambda s: {"encoder.weight": torch.zeros(2, 2)}, "encoder.weight"),
    ("missing_key", _edit(L0 + "coupling.net.2.bias", None), L0 + "coupling.net.2.bias"),
    ("wrong_shape", _edit(L0 + "coupling.net.2.bias", torch.zeros(3)), "expected [8]"),
    ("uninitialised_actnorm", _edit(L0 + "actnorm.initialized", torch.tensor(0, dtype=torch.uint8)), "never initialised"),
    ("negative_actnorm_scale", _edit(L0 + "actnorm.scale", lambda t: -t), "actnorm.scale"),
    ("not_a_permutation", _edit("blocks.1.flows.0.invconv.w_p", lambda t: t * 2), "not a permutation"),
    ("changed_mask", _edit("blocks.1.flows.0.invconv.u_mask", lambda t: t.T), "u_mask"),
    ("bad_sign", _edit("blocks.1.flows.0.invconv.s_sign", lambda t: t * 0.5), "s_sign"),
    ("singular_conv", _edit(L0 + "invconv.weight", lambda t: t * 0), "singular"),
    ("nan", _edit(L0 + "coupling.net.0.bias", lambda t: t * float("nan")), "NaN"),
    ("sparse", _edit(L0 + "coupling.net.0.bias", lambda t: t.to_sparse()), "dense"),
    ("five_dims", _edit(L0 + "coupling.net.0.bias", lambda t: t.reshape(1, 1, 1, 1, -1)), "dimensions"),
    ("uneven_flows", lambda s: {k: v for k, v in s.items() if not k.startswith("blocks.1.flows.1.")}, "same K"),
]


@pytest.mark.parametrize("name,change,needle", NOT_MAPPABLE, ids=[c[0] for c in NOT_MAPPABLE])
@pytest.mark.slow
def test_what_cannot_be_mapped_is_refused_naming_it(name, change, needle, tmp_path: Path) -> None:
    state, _, _ = reference("additive_plain")
    checkpoint = save_pt(change(state), tmp_path / "model.pt")
    out = tmp_path / "glow.safetensors"
    result = import_cli(checkpoint, out, 8)
    assert result.exit_code == INVALID, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_damaged_and_oversized_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (DATA / "additive_plain.state.safetensors").read_bytes()
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    pt = save_pt(reference("additive_plain")[0], tmp_path / "model.pt")
    cut_pt = tmp_path / "cut.pt"
    cut_pt.write_bytes(pt.read_bytes()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    for bad in (truncated, cut_pt, garbage):
        result = import_cli(bad, tmp_path / "o.safetensors", 8)
        assert result.exit_code == INVALID and "Traceback" not in result.output, (bad, result.output)
    assert zipfile.is_zipfile(pt)
    import lassi.regulator.glow.rosinality as rosinality

    monkeypatch.setattr(rosinality, "MAX_CHECKPOINT_BYTES", 10_000)
    result = import_cli(pt, tmp_path / "o.safetensors", 8)
    assert result.exit_code == INVALID and "over the limit" in result.output, result.output
    assert not (tmp_path / "o.safetensors").exists()


def test_usage_errors_name_the_option(tmp_path: Path) -> None:
    checkpoint = DATA / "additive_plain.state.safetensors"
    for size, needle in ((10, "divisible by 2**L = 4"), (2, "image_size")):
        result = import_cli(checkpoint, tmp_path / "o.safetensors", size)
        assert result.exit_code == EXIT_CODES["usage"] and needle in result.output, result.output
    result = import_cli(checkpoint, tmp_path / "o.safetensors", 8, "--n-bits", "9")
    assert result.exit_code == EXIT_CODES["usage"] and "n_bits" in result.output, result.output
    result = import_cli(tmp_path / "absent.pt", tmp_path / "o.safetensors", 8)
    assert result.exit_code == EXIT_CODES["usage"], result.output


def test_state_dict_saved_by_torch_is_not_unpickled_outside_weights_only(tmp_path: Path) -> None:
    """A legitimate rosinality checkpoint holds only an OrderedDict of tensors: weights_only
    accepts it, the flat-dict check passes, and its bytes' SHA-256 is recorded."""
    import hashlib

    state, _, _ = reference("additive_plain")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    checkpoint = tmp_path / "model_100000.pt"
    checkpoint.write_bytes(buffer.getvalue())
    out = tmp_path / "glow.safetensors"
    assert import_cli(checkpoint, out, 8).exit_code == 0
    imported = read_artifact(out, expect=GlowArtifact).meta.imported
    assert imported.sha256 == hashlib.sha256(buffer.getvalue()).hexdigest()
    assert imported.file == "model_100000.pt" and imported.format == "rosinality/glow-pytorch"


@pytest.mark.parametrize("size,levels", [(64, 4), (128, 5), (64, 3)], ids=["celeba64", "celeba128", "shapes3d"])
@pytest.mark.slow
def test_the_authors_released_glow_sizes_are_within_the_readers_bounds(size: int, levels: int) -> None:
    """The authors' Glows (K = 32 steps, width 512, additive; CelebA 64 and FairFace L = 4,
    CelebA 128 L = 5, 3D Shapes L = 3) pass the architecture check every reader applies
    (built on the meta device: nothing allocated)."""
    from lassi.regulator.training import build_glow
    from lassi.spec.contract.architecture import check_glow
    from lassi.spec.contract.models import GlowConfig

    flow = GlowConfig(image_size=size, n_levels=levels, n_steps=32, hidden=512, coupling="additive")
    with torch.device("meta"):
        state = build_glow(flow).state_dict()
    assert check_glow(flow, {"glow." + k: list(v.shape) for k, v in state.items()}) is None
