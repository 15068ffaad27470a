"""Sample efficiency of certification: the same samples certified four ways.

(a) today's procedure: Hoeffding bounds, n0 = n = 10^4; randomized smoothing n0 = 2000, n = 10^5;
(b) exact binomial bounds at equal n; (c) exact bounds with smaller n0 (--small-n0) and n (--small-n);
(d) (c) + sequential randomized smoothing (at most 10^5 estimation draws).

For each: base-function evaluations (producer: 2 n0 + n per sample that reaches step 4, 2 n0
otherwise; consumer: the report's ``draws``), per sample and per certified sample, certified fair
%, median r_CS of the certified samples and wall time. Run for the given (linear) classifier and,
with --mlp-epochs > 0, for an MLP head trained here on the train bundle. Writes only under --out.

    .venv/bin/python benchmarks/bench_sample_efficiency.py --samples 60
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from lassi.spec import CenterStatus, RepresentationBundle, read_artifact
from lassi.spec.contract.io import atomic_write_bytes

DEMO = Path(__file__).resolve().parents[1] / "runs" / "demo"
HERE = Path(__file__).resolve().parent


def _producer_evaluations(bundle: Path) -> int:
    art = read_artifact(bundle, expect=RepresentationBundle)
    c = art.meta.certificate
    reached = art.tensors["status"] == CenterStatus.CERTIFIED
    return int(len(reached) * 2 * c.n0 + reached.sum() * c.n)


def _run(name, spec, encoder, data, classifier, out, samples, bounds, n_cs, sequential):
    """``n_cs``: (n0, n) of center smoothing."""
    from lassi.consumer.verification import verify
    from lassi.producer.encode import encode_split
    from lassi.spec.contract.models import CenterSmoothingParams

    params = CenterSmoothingParams(n0=n_cs[0], n=n_cs[1], bounds=bounds)
    bundle = out / f"bundle_{bounds}_{n_cs[0]}_{n_cs[1]}.safetensors"
    start = time.perf_counter()
    if not bundle.exists():
        encode_split(spec, encoder, data, "test", bundle, limit=samples, certify=params)
    produced = time.perf_counter() - start
    report_path = out / f"report_{name}_{classifier.stem}.safetensors"
    start = time.perf_counter()
    report = verify(classifier, bundle, report_path, n0=2_000, n=100_000, sequential=sequential)
    verified = time.perf_counter() - start
    t = report.tensors
    certified = int((t["status"] == 0).sum())
    evals_p, evals_c = _producer_evaluations(bundle), int(t["draws"].sum())
    r_cs = t["r_cs"][t["status"] == 0]
    return {
        "config": name,
        "classifier": classifier.stem,
        "samples": int(len(t["status"])),
        "certified_fair_pct": 100.0 * certified / max(1, len(t["status"])),
        "producer_evals_per_sample": evals_p / len(t["status"]),
        "consumer_evals_per_sample": evals_c / len(t["status"]),
        "total_evals_per_certified": (evals_p + evals_c) / max(1, certified),
        "median_r_cs": float(np.median(r_cs)) if len(r_cs) else float("nan"),
        "producer_seconds": produced,
        "consumer_seconds": verified,
    }


@click.command()
@click.option("--spec", type=click.Path(path_type=Path), default=DEMO / "regulator/spec.safetensors")
@click.option(
    "--encoder", type=click.Path(path_type=Path), default=DEMO / "producer/encoder.safetensors"
)
@click.option(
    "--test-bundle",
    type=click.Path(path_type=Path),
    default=DEMO / "producer/test_bundle.safetensors",
    help="Certified bundle of the demo: its data provenance names the test samples.",
)
@click.option(
    "--train-bundle",
    type=click.Path(path_type=Path),
    default=DEMO / "producer/train_bundle.safetensors",
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path),
    default=DEMO / "consumer/classifier.safetensors",
)
@click.option("--samples", type=int, default=60, show_default=True)
@click.option("--small-n0", type=int, default=5_000, show_default=True, help="n0 of (c), (d).")
@click.option("--small-n", type=int, default=2_000, show_default=True, help="n of (c), (d).")
@click.option("--mlp-epochs", type=int, default=5, show_default=True)
@click.option("--quick", is_flag=True, help="8 samples, center smoothing n = 2000 for (a), (b).")
@click.option("--out", type=click.Path(path_type=Path), default=HERE / "out" / "sample_efficiency")
def main(spec, encoder, test_bundle, train_bundle, classifier, samples, small_n0, small_n, mlp_epochs, quick, out):
    from lassi.consumer.classifier import train_consumer_classifier
    from lassi.regulator.data_config import DatasetConfig

    out.mkdir(parents=True, exist_ok=True)
    meta = read_artifact(test_bundle, expect=RepresentationBundle).meta
    data = DatasetConfig.from_provenance(meta.data)
    samples, big_n = (8, 2_000) if quick else (samples, 10_000)
    heads = [classifier]
    if mlp_epochs > 0:
        card = read_artifact(classifier).meta
        mlp = out / "classifier_mlp.safetensors"
        if not mlp.exists():
            train_consumer_classifier(
                train_bundle, card.task, mlp, card.sigma_cls, architecture="mlp", epochs=mlp_epochs
            )
        heads.append(mlp)
    configs = [
        ("a_hoeffding", "hoeffding", (big_n, big_n), False),
        ("b_exact", "exact", (big_n, big_n), False),
        ("c_exact_small_n", "exact", (small_n0, small_n), False),
        ("d_exact_small_n_sequential", "exact", (small_n0, small_n), True),
    ]
    rows = []
    for head in heads:
        for name, bounds, n_cs, sequential in configs:
            row = _run(name, spec, encoder, data, head, out, samples, bounds, n_cs, sequential)
            rows.append(row)
            click.echo(json.dumps(row))
    atomic_write_bytes(out / "results.json", json.dumps(rows, indent=2).encode())
    keys = list(rows[0])
    click.echo("| " + " | ".join(keys) + " |")
    click.echo("|" + " --- |" * len(keys))
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        click.echo("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
