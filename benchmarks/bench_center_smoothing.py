"""Benchmark: center smoothing of the authors' latent encoder on the CPU.

Setting (the authors' CelebA 64×64 configuration): Glow latent of 3·64·64 = 12288 numbers, E_L = LatentMLP(12288,
(2048, 1024), 512) in eval mode, σ = 0.65, ε = 1, n0 = n = 10⁴, m sensitive attributes.
Reports seconds per certified sample (target ≤ 1.5 s on 2 cores) split into network and
the rest, the network's achieved GFLOP/s against a torch matmul peak measured in the same run,
the speed-up of the affine trick over plain evaluation (every draw through the full first
Linear), and the peak RSS of a certification with n = 10⁶ draws in a fresh process (target
≤ 2 GB).

    PYTHONPATH=spec_schema/src:regulator/src:producer/src:consumer/src \\
        .venv/bin/python benchmarks/bench_center_smoothing.py [--quick] [--n-large N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
SRC_DIRS = [ROOT / d / "src" for d in ("spec_schema", "regulator", "producer", "consumer")]
try:
    import lassi.spec.runtime.center_smoothing  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path[:0] = [str(d) for d in SRC_DIRS]

from lassi.producer.base_function import BaseFunction  # noqa: E402
from lassi.regulator.encoders import LatentMLP  # noqa: E402
from lassi.spec.contract.models import CenterSmoothingParams  # noqa: E402
from lassi.spec.runtime.center_smoothing import BATCH_SIZE, CenterSmoothing  # noqa: E402

LATENT_DIM = 3 * 64 * 64
HIDDEN = (2048, 1024)
K = 512


class Timed(nn.Module):
    """Wraps a base module and accumulates its wall time and number of draws."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seconds = 0.0
        self.draws = 0

    def forward(self, t: Tensor) -> Tensor:
        start = time.perf_counter()
        out = self.inner(t)
        self.seconds += time.perf_counter() - start
        self.draws += t.shape[0]
        return out


def make_encoder(seed: int = 0) -> LatentMLP:
    """A LatentMLP whose BatchNorm statistics are calibrated on standard-normal latents."""
    torch.manual_seed(seed)
    encoder = LatentMLP(LATENT_DIM, HIDDEN, K)
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(2):
            encoder(torch.randn(256, LATENT_DIM))
    return encoder.eval()


def make_sample(m: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z_g = torch.randn(LATENT_DIM, generator=gen)
    attrs = 0.05 * torch.randn(m, LATENT_DIM, generator=gen)  # ||a|| ≈ 5.5
    return z_g, attrs


def flops_per_draw(m: int, plain: bool) -> float:
    first = 2.0 * LATENT_DIM * HIDDEN[0] + 2.0 * m * LATENT_DIM if plain else 2.0 * m * HIDDEN[0]
    return first + 2.0 * (HIDDEN[0] * HIDDEN[1] + HIDDEN[1] * K)


def matmul_peak(batch: int, repeats: int = 8) -> float:
    """Best GFLOP/s of the dominant layer's matmul [batch, 2048] x [2048, 1024] in float32."""
    a, w = torch.randn(batch, HIDDEN[0]), torch.randn(HIDDEN[1], HIDDEN[0])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ w.T
        best = max(best, 2.0 * batch * HIDDEN[0] * HIDDEN[1] / (time.perf_counter() - start))
    return best / 1e9


def certify_timed(base: nn.Module, m: int, params: CenterSmoothingParams, sample_ids: range):
    timed = Timed(base).eval()
    smoother = CenterSmoothing(timed, m, params)
    certs = [smoother.certify(seed=0, sample_id=i) for i in sample_ids]
    return certs, timed


def child_large(n_large: int, m: int, params: CenterSmoothingParams) -> None:
    """Fresh process: peak RSS (resource.getrusage) after a certification with n = n0 and then
    with n = n_large, on the first sample id that passes steps 2-3 (so step 4 runs)."""
    encoder = make_encoder()
    z_g, attrs = make_sample(m)
    base = BaseFunction(encoder, attrs).for_latent(z_g)
    rss = {"after_setup": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    runs = {}
    sample_id = 0
    while CenterSmoothing(base, m, params).certify(seed=0, sample_id=sample_id).abstained:
        sample_id += 1
    for n in (params.n0, n_large):
        cert = CenterSmoothing(base, m, params.replace(n=n)).certify(seed=0, sample_id=sample_id)
        runs[str(n)] = {"seconds": cert.seconds, "r_cs": cert.r_cs, "abstained": cert.abstained}
        rss[str(n)] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_kib": rss, "runs": runs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n0 = n = 2000, few samples")
    parser.add_argument("--n-large", type=int, default=None, help="n of the RSS run (10⁶)")
    parser.add_argument("--m", type=int, default=1, help="sensitive attributes (1-3)")
    parser.add_argument("--samples", type=int, default=None, help="samples to certify")
    parser.add_argument("--child-large", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # --quick: n0 = n = 2000 with Δ = 0.1 (Δ1 = 0.039 would make Δ = 0.05 abstain often).
    if args.quick:
        params = CenterSmoothingParams(epsilon=1.0, sigma=0.65, n0=2_000, n=2_000, delta=0.1)
    else:
        params = CenterSmoothingParams(epsilon=1.0, sigma=0.65, n0=10_000, n=10_000)
    if args.child_large is not None:
        child_large(args.child_large, args.m, params)
        return
    n0 = params.n0
    n_large = args.n_large or (50_000 if args.quick else 1_000_000)
    samples = args.samples or (2 if args.quick else 5)
    m = args.m

    # The RSS run goes first: a child's ru_maxrss starts from the parent's RSS at fork time.
    child = subprocess.run(
        [sys.executable, __file__, "--child-large", str(n_large), "--m", str(m)]
        + (["--quick"] if args.quick else []),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, SRC_DIRS))},
    )
    large = json.loads(child.stdout.strip().splitlines()[-1])

    encoder = make_encoder()
    z_g, attrs = make_sample(m)
    affine = BaseFunction(encoder, attrs).for_latent(z_g)
    plain = BaseFunction(encoder, attrs, affine_trick=False).for_latent(z_g)
    with torch.inference_mode():
        t = torch.randn(BATCH_SIZE, m, dtype=torch.float64)
        agreement = float((affine(t) - plain(t)).abs().max())
    peak = matmul_peak(BATCH_SIZE)

    certify_timed(affine, m, params.replace(n0=600, n=600), range(1))  # warm-up
    certs, timed = certify_timed(affine, m, params, range(samples))
    per_sample = sum(c.seconds for c in certs) / samples
    certified = [c.seconds for c in certs if not c.abstained]
    per_certified = sum(certified) / len(certified) if certified else float("nan")
    net_per_sample = timed.seconds / samples
    net_gflops = timed.draws * flops_per_draw(m, plain=False) / timed.seconds / 1e9
    abstained = sum(c.abstained for c in certs)

    # Plain evaluation: throughput of both bases on the same draws, and (full run) one certify.
    draws = 2 * BATCH_SIZE if args.quick else 4 * BATCH_SIZE
    rates = {}
    with torch.inference_mode():
        for name, base in (("affine", affine), ("plain", plain)):
            base(t)
            start = time.perf_counter()
            for _ in range(draws // BATCH_SIZE):
                base(t)
            rates[name] = draws / (time.perf_counter() - start)
    plain_gflops = rates["plain"] * flops_per_draw(m, plain=True) / 1e9
    plain_certify = None
    if not args.quick:
        plain_certs, _ = certify_timed(plain, m, params, range(1))
        plain_certify = plain_certs[0].seconds

    rss_mib = {key: value / 1024 for key, value in large["rss_kib"].items()}

    rows = [
        ("threads", f"{torch.get_num_threads()}", ""),
        ("setting", f"D={LATENT_DIM}, m={m}", f"MLP {HIDDEN}->{K}, n0=n={n0}, σ=0.65, ε=1"),
        ("affine vs plain max |Δ|", f"{agreement:.2e}", "float32 outputs"),
        ("matmul peak", f"{peak:.1f} GFLOP/s", "[2000,2048]x[2048,1024] f32"),
        ("s / certified sample", f"{per_certified:.3f}", "target <= 1.5 (non-abstained)"),
        ("s / sample (all)", f"{per_sample:.3f}", f"{samples} samples"),
        ("  network", f"{net_per_sample:.3f}", f"{timed.draws // samples} draws"),
        ("  selection+rest", f"{per_sample - net_per_sample:.3f}", "step-1 MEB, distances, RNG"),
        ("network GFLOP/s", f"{net_gflops:.1f}", f"{100 * net_gflops / peak:.0f}% of peak"),
        ("abstained", f"{abstained}/{samples}", ", ".join(c.reason or "ok" for c in certs)),
        ("r_cs (first)", f"{certs[0].r_cs:.4f}", f"r_hat={certs[0].r_hat:.4f}"),
        ("draws/s affine", f"{rates['affine']:.0f}", ""),
        ("draws/s plain", f"{rates['plain']:.0f}", f"{plain_gflops:.1f} GFLOP/s"),
        ("affine speed-up", f"{rates['affine'] / rates['plain']:.1f}x", "network throughput"),
    ]
    if plain_certify is not None:
        rows.append(
            ("plain s / sample", f"{plain_certify:.2f}", f"{plain_certify / per_sample:.1f}x")
        )
    for n_key, run in large["runs"].items():
        state = "abstained" if run["abstained"] else "certified"
        rows.append(
            (f"n={int(n_key):,} certify", f"{run['seconds']:.2f} s", f"fresh process, {state}")
        )
        rows.append(("  peak RSS after", f"{rss_mib[n_key]:.0f} MiB", "target <= 2048 MiB"))
    rows.append(("  RSS after setup", f"{rss_mib['after_setup']:.0f} MiB", "model + sample"))
    width = max(len(r[0]) for r in rows)
    print(f"{'quantity':<{width}}  {'value':>14}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
