"""--device auto|cpu|cuda[:N] (lassi.spec.runtime.device) on every heavy command.

On the CPU: --device cpu and --device auto give the same artifacts as no option (timings aside);
--device cuda without CUDA is a one-line usage error (exit 2). The device paths of the smoothing
procedures are checked against the CPU ones (on CUDA when there is one: ``-m gpu``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from factories import DATA, similarity_set
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import UsageError
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.runtime.center_selection import distances_to
from lassi.spec.runtime.center_smoothing import CenterSmoothing, device_distances
from lassi.spec.runtime.device import parse_device, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_parse_device() -> None:
    assert parse_device("auto") == ("auto", None)
    assert parse_device("cpu") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", None)
    assert parse_device("CUDA:1") == ("cuda", 1)
    for bad in ("gpu", "cpu:0", "cuda:", "cuda:x", "auto:1", ""):
        with pytest.raises(UsageError):
            parse_device(bad)


def test_resolve_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(UsageError, match="CUDA is not available") as error:
            resolve_device(name)
        assert error.value.exit_code == 2


def test_resolve_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UsageError, match="only 2 CUDA"):
        resolve_device("cuda:2")


# ---------------------------------------------------------------- the commands, on the CPU


def _commands(chain: dict[str, Path], d: Path) -> dict[str, tuple]:
    """Each heavy command at tiny sizes: (CLI group, arguments without --out/--out-dir, output
    option). Timings ("seconds") are the only fields allowed to differ between runs."""
    # fmt: off
    spec, encoder = str(chain["spec"]), str(chain["encoder"])
    return {
        "train-glow": (regulator, ["train-glow", *DATA, "--levels", "2", "--depth", "1", "--hidden", "8",
                                   "--steps", "3", "--batch-size", "8", "--warmup", "1", "--quiet"], "--out"),
        "producer-train": (producer, ["train", "--spec", spec, *DATA, "--task", "object_hue", "--hidden", "16",
                                      "--k", "8", "--epochs", "1", "--batch-size", "64", "--max-train", "128",
                                      "--attack-points", "4", "--cache-dir", str(d / "cache"), "--quiet"], "--out"),
        "encode": (producer, ["encode", "--spec", spec, "--encoder", encoder, *DATA, "--split", "test",
                              "--limit", "2", "--certify", "--n0", "300", "--n", "400", "--delta", "0.2",
                              "--cache-dir", str(d / "cache"), "--quiet"], "--out"),
        "export-onnx": (producer, ["export-onnx", "--spec", spec, "--encoder", encoder], "--out-dir"),
        "consumer-train": (consumer, ["train", "--bundle", str(chain["train"]), "--task", "object_hue",
                                      "--sigma", "0.5", "--quiet"], "--out"),
        "verify": (consumer, ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
                              "--n0", "50", "--n", "300", "--quiet"], "--out"),
    }
    # fmt: on


def _tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor an output holds (a folder: each ONNX file's bytes), timings left out."""
    from safetensors.numpy import load_file

    if path.is_dir():
        return {f.name: np.frombuffer(f.read_bytes(), np.uint8) for f in sorted(path.glob("*.onnx"))}
    return {k: v for k, v in load_file(str(path)).items() if k != "seconds"}


COMMANDS = ["train-glow", "producer-train", "encode", "export-onnx", "consumer-train", "verify"]
"""The keys of ``_commands``: every command that takes ``--device``."""


def _run(command: tuple, label: str, extra: list[str], d: Path) -> Path:
    """Run one of ``_commands`` with ``extra`` options, writing to ``d/label``; its output path."""
    group, args, out_option = command
    out = d / (label if out_option == "--out-dir" else f"{label}.safetensors")
    result = CliRunner().invoke(group, [*args, *extra, out_option, str(out)])
    assert result.exit_code == 0, result.output
    return out


def _optimiser_steps(args: list[str]) -> int:
    """Optimiser steps a training command of ``_commands`` takes: train-glow's --steps, or
    producer train's epochs x ceil(--max-train / --batch-size)."""
    value = dict(zip(args, args[1:], strict=False))
    if "--steps" in value:
        return int(value["--steps"])
    return int(value["--epochs"]) * -(-int(value["--max-train"]) // int(value["--batch-size"]))


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.slow
def test_device_cpu_and_auto_equal_no_option(
    name: str, chain: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto = cpu, also on a GPU
    command = _commands(chain, tmp_path)[name]
    results = {}
    for label, extra in (("none", []), ("cpu", ["--device", "cpu"]), ("auto", ["--device", "auto"])):
        results[label] = _tensors(_run(command, label, extra, tmp_path))
    assert results["none"], "the command wrote no tensor"
    for label in ("cpu", "auto"):
        assert results[label].keys() == results["none"].keys()
        for key, value in results["none"].items():
            np.testing.assert_array_equal(results[label][key], value, err_msg=f"{label}: {key}")


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.slow
def test_device_cuda_without_cuda_is_one_line(
    name: str, chain: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    group, args, out_option = _commands(chain, tmp_path)[name]
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(group, [*args, "--device", "cuda:0", out_option, str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == ["error: --device cuda:0: CUDA is not available on this machine"]
    assert not out.exists()
    bad = CliRunner().invoke(group, [*args, "--device", "gpu", out_option, str(out)])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output


# ------------------------------------------------------- the device paths of the smoothing


def test_device_distances_equal_numpy_distances() -> None:
    rng = np.random.default_rng(0)
    points = rng.standard_normal((257, 16)).astype(np.float32)
    center = rng.standard_normal(16).astype(np.float32)
    on_device = device_distances(torch.from_numpy(points), center)
    np.testing.assert_allclose(on_device, distances_to(points, center), rtol=1e-14, atol=0)


def _affine_base():
    """A small latent-MLP base function f(t) of one latent (the affine trick), in eval mode."""
    from lassi.producer.base_function import BaseFunction
    from lassi.regulator.encoders import LatentMLP

    sim = similarity_set(m=3)
    torch.manual_seed(0)
    base = BaseFunction(LatentMLP(sim.glow.latent_dim, (32,), 8), sim.vectors).eval()
    z_g = torch.randn(4, sim.glow.latent_dim, generator=torch.Generator().manual_seed(1))
    return base, z_g, sim.m


def test_center_smoothing_device_branch_matches_host_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch that keeps outputs on the device (taken on CUDA) certifies like the host one;
    run here on CPU tensors by declaring the module an accelerator one."""
    import lassi.spec.runtime.center_smoothing as cs

    base, z_g, m = _affine_base()
    params = CenterSmoothingParams(n0=300, n=400, delta=0.2, epsilon=0.3, sigma=0.5)
    host = [CenterSmoothing(base.for_latent(z), m, params, batch_size=128).certify(0, i) for i, z in enumerate(z_g)]
    monkeypatch.setattr(cs, "_on_accelerator", lambda module: True)
    device = [CenterSmoothing(base.for_latent(z), m, params, batch_size=128).certify(0, i) for i, z in enumerate(z_g)]
    assert any(not c.abstained for c in host)
    for a, b in zip(host, device, strict=True):
        np.testing.assert_array_equal(a.center, b.center)
        assert (a.status, a.p_hat) == (b.status, b.p_hat)
        assert b.r_cs == pytest.approx(a.r_cs, rel=1e-12, abs=0)


def _image_base():
    """A tiny image-path base E_L(D_G(z)) (Glow 16x16, ResNet-18 width 8), inverses cached."""
    from lassi.producer.base_function import BaseFunction
    from lassi.regulator.encoders import ImageResNet18
    from lassi.regulator.glow import Glow

    torch.manual_seed(0)
    glow = Glow(16, 2, 2, 16)
    glow.initialize_actnorm(torch.rand(4, 3, 16, 16) - 0.5)
    glow.cache_inverse()
    vectors = 0.1 * torch.randn(2, glow.latent_dim)
    base = BaseFunction(ImageResNet18(8, width=8), vectors, glow).eval()
    z_g = torch.randn(2, glow.latent_dim, generator=torch.Generator().manual_seed(1))
    return base, z_g


def test_moves_and_casts_keep_the_cached_glow_inverses() -> None:
    """The 1x1-convolution inverses are keyed on the parameters' storage; moving the base
    function (``.to(device)``, casts) must not silently drop them."""
    base, _ = _image_base()
    convs = list(base.glow.invconvs())
    base.double()
    assert all(c._cached_inverse() is not None for c in convs)
    assert all(c.inverse_cache.dtype == torch.float64 for c in convs)
    base.float()
    for conv in convs:
        assert conv._cached_inverse() is not None
        torch.testing.assert_close(conv.inverse_cache, conv.inverse_weight(), rtol=0, atol=0)


def test_strict_float32_context_turns_tf32_off_and_restores() -> None:
    import lassi.spec.runtime.center_smoothing as cs

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with cs._strict_float32(torch, torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with cs._strict_float32(torch, torch.device("cpu")):  # nothing to change on the CPU
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_image_path_on_cuda_matches_cpu_in_float32() -> None:
    """E_L o D_G on CUDA: the cached inverses survive the move, every draw runs with TF32 off,
    and the certificates agree with the CPU's to float32 rounding."""
    base, z_g = _image_base()
    params = CenterSmoothingParams(n0=300, n=400, delta=0.2, epsilon=0.3, sigma=0.5)
    cpu = [CenterSmoothing(base.for_latent(z), 2, params, batch_size=128).certify(0, i) for i, z in enumerate(z_g)]
    base.to("cuda")
    assert all(c._cached_inverse() is not None for c in base.glow.invconvs())
    flags = []
    forward = base.encoder.forward
    base.encoder.forward = lambda x: flags.append(torch.backends.cudnn.allow_tf32) or forward(x)
    gpu = [
        CenterSmoothing(base.for_latent(z.cuda()), 2, params, batch_size=128).certify(0, i)
        for i, z in enumerate(z_g)
    ]
    assert flags and not any(flags)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.status == b.status
        np.testing.assert_allclose(b.center, a.center, rtol=1e-4, atol=1e-5)
        assert b.r_cs == pytest.approx(a.r_cs, rel=1e-4, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_certificates_on_cuda_match_cpu() -> None:
    """Same draws on both devices (CPU-seeded); the network's float32 rounding differs, so the
    certificates agree to rounding, not bit for bit."""
    from lassi.consumer.randomized_smoothing import Smooth

    base, z_g, m = _affine_base()
    params = CenterSmoothingParams(n0=500, n=1000, delta=0.2, epsilon=0.3, sigma=0.5)
    cpu = [CenterSmoothing(base.for_latent(z), m, params, batch_size=256).certify(0, i) for i, z in enumerate(z_g)]
    base.to("cuda")
    gpu = [
        CenterSmoothing(base.for_latent(z.cuda()), m, params, batch_size=256).certify(0, i)
        for i, z in enumerate(z_g)
    ]
    for a, b in zip(cpu, gpu, strict=True):
        assert a.status == b.status
        np.testing.assert_allclose(b.center, a.center, rtol=1e-4, atol=1e-5)
        assert b.r_cs == pytest.approx(a.r_cs, rel=1e-4, abs=1e-6)

    head = torch.nn.Linear(8, 3)
    z = torch.randn(8)
    cpu_rs = Smooth(head, 3, 0.5).certify(z, 100, 2000, 0.001, seed=0, sample_id=7)
    gpu_rs = Smooth(head.to("cuda"), 3, 0.5, device="cuda").certify(z, 100, 2000, 0.001, 0, 7)
    assert cpu_rs.prediction == gpu_rs.prediction
    assert abs(cpu_rs.count - gpu_rs.count) <= 2  # argmax flips only at float32 near-ties


TRAINING = ("train-glow", "producer-train")  # Adam-trained weights; consumer train matches closely


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.slow
def test_commands_on_cuda_match_cpu(name: str, chain: dict[str, Path], tmp_path: Path) -> None:
    """Each heavy command with --device cuda writes what --device cpu writes, up to float32
    rounding: the same keys, dtypes and shapes, integer tensors (statuses, predictions, counts)
    equal, floating ones close; the ONNX export gives the same outputs on the same input.

    The trained weights can differ by more than rounding: Adam moves a weight by about lr per step
    whatever its gradient's size, so a gradient that rounds to the other sign near zero moves it
    the other way. Their bound is 2 * lr per optimiser step (lr 1e-3, both commands' default)."""
    command = _commands(chain, tmp_path)[name]
    results = {label: _run(command, label, ["--device", label], tmp_path) for label in ("cpu", "cuda")}
    if command[2] == "--out-dir":
        _assert_onnx_equal(results["cpu"], results["cuda"])
        return
    atol = 2 * 1e-3 * _optimiser_steps(command[1]) if name in TRAINING else 1e-4
    cpu, cuda = _tensors(results["cpu"]), _tensors(results["cuda"])
    assert cpu and cuda.keys() == cpu.keys()
    for key, value in cpu.items():
        other = cuda[key]
        assert (other.dtype, other.shape) == (value.dtype, value.shape), key
        if np.issubdtype(value.dtype, np.floating):
            diff = float(np.max(np.abs(other.astype(np.float64) - value), initial=0.0))
            assert np.isfinite(other).all(), key
            assert np.allclose(other, value, rtol=1e-3, atol=atol), f"{key}: max |diff| {diff:.3g}"
        else:
            np.testing.assert_array_equal(other, value, err_msg=key)


def _assert_onnx_equal(cpu_dir: Path, cuda_dir: Path) -> None:
    import onnxruntime as ort

    names = sorted(f.name for f in cpu_dir.glob("*.onnx"))
    assert names and names == sorted(f.name for f in cuda_dir.glob("*.onnx"))
    rng = np.random.default_rng(0)
    for name in names:
        sessions = [
            ort.InferenceSession(str(d / name), providers=["CPUExecutionProvider"])
            for d in (cpu_dir, cuda_dir)
        ]
        feed = {}
        for arg in sessions[0].get_inputs():
            shape = [dim if isinstance(dim, int) else 2 for dim in arg.shape]
            feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
        a, b = (s.run(None, feed) for s in sessions)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)
