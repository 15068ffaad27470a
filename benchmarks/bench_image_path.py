"""Benchmark: the image path of center smoothing, f(t) = E_L(D_G(z_G + t A)), on this device.

The paper's CelebA encoder reads the decoded image (Sec. 4.3, E_L ∘ D_G with a ResNet-18), so
every smoothing draw decodes through the Glow. Sizes (random initialisation; timing does not
depend on the weights' values):

* ``demo``: 32×32, L = 3, K = 8, hidden 128 (scripts/demo.py), ResNet-18 width 64, k = 256;
* ``paper``: 64×64, L = 4, K = 32, hidden 512 (the authors' CelebA Glow, rosinality/glow-pytorch
  defaults, additive coupling), ResNet-18 width 64, k = 512;
* ``tiny``: 16×16, L = 2, K = 2, hidden 16, width 8, k = 16 (smoke runs and tests only).

For each size and each variant (threads, batch size, channels-last memory format; on CUDA also
TF32 against strict float32) it times the decode D_G and the encoder E_L per image on the same
draws, counts their FLOPs (torch's FlopCounterMode), and reports GFLOP/s beside a dense float32
matmul peak measured in the same run ([2048, 2048] squared on the CPU, [8192, 8192] on CUDA). Each
variant's outputs are compared with the baseline's (max |Δ|): a variant that changes only rounding
leaves the certified function the same function of the seed up to float32 rounding, as a different
batch size does.

Per certified sample: per-image cost × (2 n0 + n) base evaluations (n0 = 5000, n = 2000; the paper's
n0 = n = 10⁴), plus the step-1 selection (timed on random [n0, k] outputs), i.e. an extrapolation
from the timed draws (stated in the output). ``--certify`` also runs a real certification of one
sample through :class:`~lassi.spec.runtime.center_smoothing.CenterSmoothing` at the given (n0, n).

    .venv/bin/python benchmarks/bench_image_path.py --quick
    nice -n 10 .venv/bin/python benchmarks/bench_image_path.py --sizes demo,paper --draws 64 \\
        --results docs/results/image_path_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
try:
    import lassi.producer.base_function  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path[:0] = [str(ROOT / d / "src") for d in ("spec_schema", "regulator", "producer")]

from lassi.producer.base_function import BaseFunction  # noqa: E402
from lassi.regulator.encoders import ImageResNet18  # noqa: E402
from lassi.regulator.glow import Glow  # noqa: E402
from lassi.spec.contract.models import CenterSmoothingParams  # noqa: E402
from lassi.spec.runtime.center_selection import min_median_index  # noqa: E402
from lassi.spec.runtime.center_smoothing import CenterSmoothing  # noqa: E402

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(image_size=16, n_levels=2, n_steps=2, hidden=16, width=8, k=16),
    "demo": dict(image_size=32, n_levels=3, n_steps=8, hidden=128, width=64, k=256),
    "paper": dict(image_size=64, n_levels=4, n_steps=32, hidden=512, width=64, k=512),
}
# (n0, n) of the two certification settings the per-sample cost is extrapolated to.
SETTINGS = {"n0=5000,n=2000": (5_000, 2_000), "n0=n=10^4 (paper)": (10_000, 10_000)}
PAPER_SECONDS_PER_SAMPLE = 64.0  # paper Sec. 5: 64 s per sample on four RTX 2080 Ti


@dataclass
class ImagePath:
    """A random-initialised D_G and E_L of one size, with one sample's latent z_G and A [m, D]."""

    size: str
    base: BaseFunction
    z_g: torch.Tensor
    m: int

    @property
    def device(self) -> torch.device:
        return self.z_g.device


def build(size: str, device: torch.device, m: int = 1, seed: int = 0) -> ImagePath:
    """The Glow (ActNorm initialised on a random batch, 1x1 inverses cached) and the ResNet-18."""
    cfg = SIZES[size]
    torch.manual_seed(seed)
    glow = Glow(cfg["image_size"], cfg["n_levels"], cfg["n_steps"], cfg["hidden"])
    images = torch.rand(4, 3, cfg["image_size"], cfg["image_size"]) - 0.5
    glow.initialize_actnorm(images)
    encoder = ImageResNet18(cfg["k"], width=cfg["width"])
    vectors = 0.05 * torch.randn(m, glow.latent_dim)
    base = BaseFunction(encoder, vectors, glow).to(device).eval()
    glow.cache_inverse()  # after the move: the cache is keyed on the parameters' storage
    with torch.inference_mode():
        z_g = glow.encode(images[:1].to(device))[0].clone()
    return ImagePath(size, base, z_g, m)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Precision:
    """Context: strict float32 (TF32 off for cuDNN convolutions and matmuls) or TF32 on CUDA."""

    def __init__(self, tf32: bool) -> None:
        self.tf32 = tf32

    def __enter__(self) -> None:
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32

    def __exit__(self, *exc: object) -> None:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def noise(count: int, m: int, seed: int = 0) -> np.ndarray:
    return 0.65 * np.random.default_rng(seed).standard_normal((count, m))


def time_parts(
    path: ImagePath, draws: int, batch: int, channels_last: bool = False, warmup: bool = True
) -> dict[str, Any]:
    """Seconds per image of D_G and of E_L over ``draws`` draws in batches of ``batch``; the
    outputs [draws, k] on the CPU. The noise moves to the device once."""
    base, device = path.base, path.device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    base.to(memory_format=fmt)
    path.base.glow.cache_inverse()
    t_all = torch.from_numpy(noise(draws, path.m)).to(device=device, dtype=torch.float32)
    decode_s = encode_s = 0.0
    outs = []
    with torch.inference_mode():
        if warmup:
            z = base.shift(path.z_g, t_all[: min(batch, draws)])
            base.encoder(base.glow.decode(z).contiguous(memory_format=fmt))
            sync(device)
        for start in range(0, draws, batch):
            z = base.shift(path.z_g, t_all[start : start + batch])
            sync(device)
            t0 = time.perf_counter()
            x = base.glow.decode(z).contiguous(memory_format=fmt)
            sync(device)
            t1 = time.perf_counter()
            outs.append(base.encoder(x))
            sync(device)
            decode_s += t1 - t0
            encode_s += time.perf_counter() - t1
    base.to(memory_format=torch.contiguous_format)
    path.base.glow.cache_inverse()
    out = torch.cat(outs).float().cpu().numpy()
    return {"decode_s": decode_s / draws, "encoder_s": encode_s / draws, "outputs": out}


def flops_per_image(path: ImagePath) -> dict[str, float]:
    """FLOPs of one image's decode and encoder (convolutions and matmuls, torch's count)."""
    base = path.base
    with torch.inference_mode():
        z = base.shift(path.z_g, torch.zeros(2, path.m, device=path.device))
        with FlopCounterMode(display=False) as counter:
            x = base.glow.decode(z)
        decode = counter.get_total_flops() / 2
        with FlopCounterMode(display=False) as counter:
            base.encoder(x)
        encoder = counter.get_total_flops() / 2
    return {"decode": float(decode), "encoder": float(encoder)}


def matmul_peak(device: torch.device, n: int | None = None, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 square matmul (n = 2048 on the CPU, 8192 on CUDA by default)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def selection_seconds(n0: int, k: int, seed: int = 0) -> float:
    """Wall time of step 1's selection (min_median_index) on random outputs [n0, k]."""
    outputs = np.random.default_rng(seed).standard_normal((n0, k)).astype(np.float32)
    start = time.perf_counter()
    min_median_index(outputs)
    return time.perf_counter() - start


def certify_once(path: ImagePath, n0: int, n: int, batch: int) -> dict[str, Any]:
    """A real certification of sample 0 (exact bounds; ε = 1, Δ = 0.05 at n0 ≥ 2000 and n ≥ 1000,
    else ε = 0.1, Δ = 0.2 so that a smoke run's few draws can certify)."""
    small = n0 < 2_000 or n < 1_000
    delta, epsilon = (0.2, 0.1) if small else (0.05, 1.0)
    params = CenterSmoothingParams(epsilon=epsilon, n0=n0, n=n, delta=delta)
    smoother = CenterSmoothing(path.base.for_latent(path.z_g), path.m, params, batch_size=batch)
    sync(path.device)
    cert = smoother.certify(seed=0, sample_id=0)
    sync(path.device)
    return {
        "n0": n0,
        "n": n,
        "delta": delta,
        "epsilon": epsilon,
        "seconds": cert.seconds,
        "evaluations": 2 * n0 + (0 if cert.abstained else n),
        "abstained": cert.abstained,
        "r_cs": cert.r_cs,
    }


def variants(device: torch.device, batch: int, threads: int) -> list[dict[str, Any]]:
    """The baseline first, then one change each (none changes the function beyond rounding)."""
    base = {"name": "baseline", "batch": batch, "threads": threads, "channels_last": False}
    out = [base]
    if device.type == "cuda":
        out.append({**base, "name": "tf32 (not float32)", "tf32": True})
        out.append({**base, "name": f"batch {2 * batch}", "batch": 2 * batch})
        out.append({**base, "name": "channels_last", "channels_last": True})
        return out
    if threads > 1:
        out.append({**base, "name": "1 thread", "threads": 1})
    out.append({**base, "name": f"batch {max(1, batch // 4)}", "batch": max(1, batch // 4)})
    out.append({**base, "name": f"batch {2 * batch}", "batch": 2 * batch})
    out.append({**base, "name": "channels_last", "channels_last": True})
    return out


def run_size(
    size: str,
    device: torch.device,
    draws: int,
    batch: int,
    threads: int,
    try_variants: bool,
    certify: tuple[int, int] | None,
    settings: dict[str, tuple[int, int]] = SETTINGS,
) -> dict[str, Any]:
    path = build(size, device)
    flops = flops_per_image(path)
    rows = []
    reference = None
    time_parts(path, min(draws, 2 * batch), batch)  # untimed: first-call allocations
    for v in variants(device, batch, threads) if try_variants else variants(device, batch, 1)[:1]:
        torch.set_num_threads(v["threads"])
        with Precision(v.get("tf32", False)):
            timing = time_parts(path, draws, v["batch"], v["channels_last"])
        torch.set_num_threads(threads)
        outputs = timing.pop("outputs")
        if reference is None:
            reference = outputs
        per_image = timing["decode_s"] + timing["encoder_s"]
        rows.append(
            {
                **v,
                **timing,
                "per_image_s": per_image,
                "decode_gflops": flops["decode"] / timing["decode_s"] / 1e9,
                "encoder_gflops": flops["encoder"] / timing["encoder_s"] / 1e9,
                "max_abs_diff_vs_baseline": float(np.abs(outputs - reference).max()),
            }
        )
    baseline = rows[0]
    per_sample = {}
    for name, (n0, n) in settings.items():
        evaluations = 2 * n0 + n
        per_sample[name] = {
            "evaluations": evaluations,
            "selection_s": selection_seconds(n0, SIZES[size]["k"]),
            "network_s": evaluations * baseline["per_image_s"],
            "best_variant_network_s": evaluations
            * min(r["per_image_s"] for r in rows if not r.get("tf32")),
        }
        per_sample[name]["seconds"] = per_sample[name]["network_s"] + per_sample[name]["selection_s"]
    result = {
        "size": size,
        "config": SIZES[size],
        "m": path.m,
        "draws_timed": draws,
        "flops_per_image": flops,
        "variants": rows,
        "per_certified_sample": per_sample,
    }
    if certify is not None:
        with Precision(False):
            result["certify"] = certify_once(path, *certify, batch=batch)
    return result


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def results_table(report: dict[str, Any], command: str, results_file: str) -> dict[str, Any]:
    """The report in the project's generic results-table format (docs/results/*.json)."""
    rows = []
    for size in report["sizes"]:
        base = size["variants"][0]
        for v in size["variants"]:
            ratio = base["per_image_s"] / v["per_image_s"]
            rows.append(
                [
                    size["size"],
                    v["name"],
                    v["batch"],
                    v["threads"],
                    round(1e3 * v["decode_s"], 2),
                    round(1e3 * v["encoder_s"], 2),
                    round(v["decode_gflops"], 1),
                    round(v["encoder_gflops"], 1),
                    round(ratio, 3),
                    float(f"{v['max_abs_diff_vs_baseline']:.2e}"),
                ]
            )
    notes = [
        f"Dense float32 matmul peak measured in the same run: {report['matmul_peak_gflops']:.0f} GFLOP/s "
        f"with {report['threads']} thread(s)"
        + (
            f", {report['matmul_peak_gflops_1_thread']:.0f} GFLOP/s with 1."
            if "matmul_peak_gflops_1_thread" in report
            else "."
        ),
        f"Timed on {report['sizes'][0]['draws_timed']} draws per variant after one warm-up batch; "
        "per-sample figures are extrapolations: per-image cost × (2 n0 + n) evaluations + the "
        "step-1 selection timed on random [n0, k] outputs.",
    ]
    for size in report["sizes"]:
        for name, s in size["per_certified_sample"].items():
            notes.append(
                f"{size['size']}, {name}: {s['evaluations']} evaluations → "
                f"{s['seconds']:.0f} s per certified sample with the baseline variant "
                f"({s['seconds'] / 60:.1f} min; best variant {s['best_variant_network_s'] / 60:.1f} min "
                f"of network time; the paper: {PAPER_SECONDS_PER_SAMPLE:.0f} s on four RTX 2080 Ti)."
            )
        if "certify" in size:
            c = size["certify"]
            notes.append(
                f"{size['size']}: one real certification at n0 = {c['n0']}, n = {c['n']} took "
                f"{c['seconds']:.1f} s ({c['evaluations']} evaluations, "
                f"{'abstained' if c['abstained'] else 'certified'})."
            )
    if report["device"] == "cpu":
        notes.append(
            "The machine's 2 cores were shared with other jobs during the run, so absolute times "
            "are upper bounds; the variant ratios (column 'speed-up') were measured in the same run."
        )
    notes.append(
        "max |Δ| compares each variant's representations with the baseline's on the same draws: "
        "the variants change only the float32 rounding (the function certified is the same)."
    )
    return {
        "title": f"The image path E_L ∘ D_G per draw ({report['device']})",
        "order": 62,
        "intro": (
            "Center smoothing of the ResNet-18 encoder reading the decoded image: time per image "
            "of the Glow decode D_G and of the encoder, with random-initialised networks at the "
            "demo's and the paper's sizes."
        ),
        "columns": [
            "size",
            "variant",
            "batch",
            "threads",
            "decode ms / image",
            "encoder ms / image",
            "decode GFLOP/s",
            "encoder GFLOP/s",
            "speed-up vs baseline",
            "max |Δ| vs baseline",
        ],
        "rows": rows,
        "provenance": {
            "command": command,
            "commit": report["commit"],
            "results_file": results_file,
            "hardware": report["hardware"],
        },
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo size, 16 draws, no variants")
    parser.add_argument("--sizes", default="demo,paper", help="comma list of tiny, demo, paper")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--draws", type=int, default=64, help="timed draws per variant")
    parser.add_argument("--batch", type=int, default=None, help="baseline batch (CPU 32, CUDA 256)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-variants", action="store_true", help="baseline only")
    parser.add_argument("--certify", default=None, help="N0,N: also certify one sample")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--results", type=Path, default=None, help="also write a results table")
    parser.add_argument("--peak-size", type=int, default=None, help="matmul peak: n of n x n")
    parser.add_argument(
        "--settings", default=None, help="N0,N: extrapolate to this setting only (smoke runs)"
    )
    parser.add_argument("--json-line", action="store_true", help="print the report as a JSON line")
    args = parser.parse_args(argv)

    from lassi.spec.runtime.device import resolve_device

    device = resolve_device(args.device)
    if args.quick:
        args.sizes, args.draws, args.no_variants = "demo", 16, True
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        parser.error(f"--sizes: unknown size(s) {unknown}; choose from {sorted(SIZES)}")
    batch = args.batch or (256 if device.type == "cuda" else 32)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    certify = tuple(int(x) for x in args.certify.split(",")) if args.certify else None
    settings = SETTINGS
    if args.settings:
        n0, n = (int(x) for x in args.settings.split(","))
        settings = {f"n0={n0},n={n}": (n0, n)}
    report: dict[str, Any] = {
        "device": device.type,
        "hardware": machine(device),
        "commit": commit(),
        "threads": threads,
        "matmul_peak_gflops": matmul_peak(device, args.peak_size),
        "sizes": [],
    }
    if device.type == "cpu" and threads > 1:  # the "1 thread" variant's own peak
        torch.set_num_threads(1)
        report["matmul_peak_gflops_1_thread"] = matmul_peak(device, args.peak_size)
        torch.set_num_threads(threads)
    for size in sizes:
        report["sizes"].append(
            run_size(
                size, device, args.draws, batch, threads, not args.no_variants, certify, settings
            )
        )
    report["matmul_peak_gflops_after"] = matmul_peak(device, args.peak_size)

    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"image_path_{device.type}.json"
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out_file)
    command = "python benchmarks/bench_image_path.py " + " ".join(argv or sys.argv[1:])
    if args.results is not None:
        table = results_table(report, command, str(out_file.relative_to(ROOT)) if out_file.is_relative_to(ROOT) else str(out_file))
        tmp = args.results.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(args.results)
    print(f"device {report['hardware']}; matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s")
    for size in report["sizes"]:
        for v in size["variants"]:
            print(
                f"{size['size']:>5} {v['name']:<20} batch {v['batch']:>4} threads {v['threads']}: "
                f"decode {1e3 * v['decode_s']:.2f} ms ({v['decode_gflops']:.0f} GFLOP/s), "
                f"encoder {1e3 * v['encoder_s']:.2f} ms ({v['encoder_gflops']:.0f} GFLOP/s), "
                f"max|Δ| {v['max_abs_diff_vs_baseline']:.1e}"
            )
        for name, s in size["per_certified_sample"].items():
            print(f"{size['size']:>5} {name}: {s['seconds']:.1f} s per certified sample (extrapolated)")
        if "certify" in size:
            print(f"{size['size']:>5} certify: {size['certify']}")
    if args.json_line:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
