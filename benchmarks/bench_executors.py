"""Benchmark: certification throughput of the local executor against Ray with 1 and 2 workers.

The workload is the producer's center smoothing (exact bounds) of a latent MLP encoder with the
affine trick, per-sample seeds, through the one per-sample loop (lassi.spec.runtime.per_sample) — the
path `lassi-producer encode --certify` runs. All three configurations run in one process, one
after the other, on the same samples; every worker (and the local run) uses one torch thread, so
"2 workers" uses both cores of this machine. The certificates of the three runs are compared
bit for bit. Reports samples/s and the ratios the scale-out issue asks for:
Ray(2)/Ray(1) (target ≥ 1.7) and Ray(1)/local (overhead target ≤ 10 %).

    .venv/bin/python benchmarks/bench_executors.py [--quick] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lassi.producer.base_function import BaseFunction
from lassi.regulator.encoders import LatentMLP
from lassi.spec.contract.io import atomic_write_bytes
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.runtime.center_smoothing import CenterSmoothing
from lassi.spec.runtime.executors import RayExecutor
from lassi.spec.runtime.per_sample import LocalExecutor, PerSampleLoop

OUT = Path(__file__).resolve().parent / "out" / "executors"


def make_workload(latent_dim: int, hidden: tuple[int, ...], k: int, m: int, samples: int):
    """A calibrated latent MLP, the spec-like attribute vectors and the samples' latents."""
    torch.manual_seed(0)
    encoder = LatentMLP(latent_dim, hidden, k)
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = None
    with torch.no_grad():
        encoder(torch.randn(512, latent_dim))
    encoder.eval()
    gen = torch.Generator().manual_seed(1)
    vectors = 0.05 * torch.randn(m, latent_dim, generator=gen)
    z_g = torch.randn(samples, latent_dim, generator=gen)
    return BaseFunction(encoder, vectors).eval(), z_g


def run(executor, base: BaseFunction, z_g: torch.Tensor, params, tag: str) -> tuple[dict, float]:
    n = len(z_g)
    with torch.no_grad():
        k = base(z_g[:1]).shape[1]
    result = {"z_cs": np.zeros((n, k), np.float32), "r_cs": np.zeros(n, np.float32),
              "status": np.zeros(n, np.uint8)}  # fmt: skip
    m = base.m

    def certify_one(i: int) -> dict[str, object]:
        cert = CenterSmoothing(base.for_latent(z_g[i]), m, params).certify(0, i)
        return {"z_cs": cert.center, "r_cs": cert.r_cs, "status": cert.status}

    checkpoint = OUT / f"{tag}.ckpt"
    checkpoint.unlink(missing_ok=True)
    loop = PerSampleLoop(result, checkpoint, tool="bench", stage=tag, key=tag, desc=tag,
                         what="benchmark", progress=False)  # fmt: skip
    start = time.perf_counter()
    loop.run(certify_one, executor)
    seconds = time.perf_counter() - start
    loop.finish()
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--n", type=int, default=10_000, help="n0 = n of center smoothing")
    args = parser.parse_args()
    latent_dim, hidden, k, samples, n = 3 * 32 * 32, (2048, 1024), 512, args.samples, args.n
    if args.quick:
        latent_dim, hidden, k, samples, n = 3 * 16 * 16, (256, 128), 64, 8, 2000
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    base, z_g = make_workload(latent_dim, hidden, k, m=1, samples=samples)
    params = CenterSmoothingParams(sigma=0.65, epsilon=1.0, n0=n, n=n)  # 2000 draws a batch
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = {}
    with LocalExecutor() as executor:
        reference, rows["local"] = run(executor, base, z_g, params, "local")
    for workers in (1, 2):
        with RayExecutor(workers=workers, threads=1) as executor:
            # warm the actors up (start-up and model transfer) on one sample, then time the run
            run(executor, base, z_g[:workers], params, f"warm{workers}")
            result, rows[f"ray{workers}"] = run(executor, base, z_g, params, f"ray{workers}")
        for name in reference:
            assert np.array_equal(reference[name], result[name]), f"ray{workers}: {name} differs"
    ray.shutdown()
    rate = {name: samples / seconds for name, seconds in rows.items()}
    summary = {
        "samples": samples,
        "n0=n": n,
        "latent_dim": latent_dim,
        "hidden": list(hidden),
        "samples_per_s": rate,
        "ray2_over_ray1": rate["ray2"] / rate["ray1"],
        "ray1_overhead_vs_local": rate["local"] / rate["ray1"] - 1,
        "identical_certificates": True,
    }
    print(json.dumps(summary, indent=2))
    atomic_write_bytes(OUT / "results.json", json.dumps(summary, indent=2).encode())


if __name__ == "__main__":
    main()
