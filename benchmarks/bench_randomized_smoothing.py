"""Seconds per certified sample of randomized smoothing (CERTIFY, Cohen et al., 2019).

Reference setting (Cohen et al. 2019 CERTIFY as the paper runs it): n0 = 2000 selection draws, n = 100 000 estimation draws,
representations of size k = 512, 10 classes, on the CPU; target ≤ 0.2 s per sample for the
linear head. Rows:

* torch, linear head, input-space noise (the default path, valid for any head);
* torch, linear head, logit-space noise (``Smooth.for_linear_head``: W ε drawn as Rᵀ η, exact);
* torch, MLP head (hidden 256), input-space noise;
* numpy noise + onnxruntime, linear and MLP heads (the consumer's torch-free path).

Run: ``PYTHONPATH=spec_schema/src:consumer/src python benchmarks/bench_randomized_smoothing.py``
(``--quick`` times two samples per row). The machine may be shared: compare medians and minima.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from lassi.consumer.classifier import export_classifier_onnx, make_classifier
from lassi.consumer.onnx_runtime import onnx_logits_fn, ort_session
from lassi.consumer.randomized_smoothing import Smooth, SmoothNumpy

TARGET_SECONDS = 0.2


def time_certify(smooth, z, args: argparse.Namespace, samples: int) -> list[float]:
    """Certify sample ids 0.. of the same representation; the first run is a warm-up."""
    smooth.certify(z, args.n0, args.n, args.alpha, seed=0, sample_id=10_000)
    return [
        smooth.certify(z, args.n0, args.n, args.alpha, seed=0, sample_id=i).seconds
        for i in range(samples)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two timed samples per row")
    parser.add_argument("--n0", type=int, default=2000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5, help="timed samples per row")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = 2 if args.quick else args.samples

    linear = make_classifier("linear", args.k, args.classes, seed=0).eval()
    mlp = make_classifier("mlp", args.k, args.classes, hidden=256, seed=0).eval()
    # A representation the linear head classifies with a margin, as a trained C_L would.
    z = (0.5 * args.sigma * linear.weight[0] / linear.weight[0].norm()).detach()
    z_numpy = z.numpy()

    with tempfile.TemporaryDirectory() as tmp:
        linear_session, provider = ort_session(
            export_classifier_onnx(linear, Path(tmp) / "linear.onnx", args.k)
        )
        mlp_session, _ = ort_session(export_classifier_onnx(mlp, Path(tmp) / "mlp.onnx", args.k))
        rows = [
            (
                "linear, input-space noise",
                "torch",
                Smooth(linear, args.classes, args.sigma, args.batch_size),
                z,
            ),
            (
                "linear, logit-space noise",
                "torch",
                Smooth.for_linear_head(linear, args.sigma, args.batch_size),
                z,
            ),
            ("MLP 256, input-space noise", "torch", Smooth(mlp, args.classes, args.sigma), z),
            (
                "linear, input-space noise",
                f"numpy+ort ({provider})",
                SmoothNumpy(onnx_logits_fn(linear_session), args.classes, args.sigma),
                z_numpy,
            ),
            (
                "MLP 256, input-space noise",
                f"numpy+ort ({provider})",
                SmoothNumpy(onnx_logits_fn(mlp_session), args.classes, args.sigma),
                z_numpy,
            ),
        ]
        print(
            f"CERTIFY n0={args.n0} n={args.n} k={args.k} C={args.classes} "
            f"batch={args.batch_size}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, {samples} timed sample(s) per row"
        )
        header = f"{'head / noise':<28} {'backend':<34} {'median s':>9} {'min s':>7}  target"
        print(header)
        print("-" * len(header))
        for name, backend, smooth, point in rows:
            seconds = time_certify(smooth, point, args, samples)
            median = statistics.median(seconds)
            verdict = "ok" if median <= TARGET_SECONDS else "-"
            print(f"{name:<28} {backend:<34} {median:>9.3f} {min(seconds):>7.3f}  {verdict}")
    print(f"target: <= {TARGET_SECONDS} s per certified sample (linear head, CPU)")


if __name__ == "__main__":
    main()
