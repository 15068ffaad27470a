"""lassi-experiments: the paper's experiments on built-in 3D Shapes (paper Sec. 5), one
subcommand each, and the results page.

    lassi-experiments table2   --glow GLOW [--seeds 0 1 2] [--protocol authors|authors-given-scale|strength0.9] [--endpoints] ...
    lassi-experiments ablation --glow GLOW [--vectors halves|pairs] [--sensitive ...] [--methods ...] ...
    lassi-experiments transfer --glow GLOW [--lambda-adv 0.1] [--consumer-epochs 1] ...
    lassi-experiments sibling-probe --glow GLOW [--seed 0] [--protocol authors|authors-given-scale] ...
    lassi-experiments celeba   --data-root DIR --glow GLOW [--task Smiling] [--sensitive Pale_Skin Young ...] ...
    lassi-experiments report   [--results docs/results] [--out docs/results.md] [--check]

Every experiment goes through the same Python API the role CLIs are thin layers over, writes its
artifacts under the experiments folder (``--out``, default runs/experiments; one per Glow, since
every run of a folder is bound to its spec; a finished run is reused when its files record the
settings asked for, refused in one line (exit 2) when they record others, and so is an encoder
another experiment of the folder trained with the same configuration), its results as JSON
(<out>/<experiment folder>/results*.json, one file per variant) and prints a Markdown table.
Settings and Table 2's protocols are data: settings.toml and protocols.toml beside this module
(``--settings``/``--protocols`` read others).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lassi.experiments.celeba import add_parser as add_celeba_parser
from lassi.experiments.settings import Settings, load_settings, with_draws
from lassi.spec import LassiError
from lassi.spec.contract.io import atomic_write_bytes
from lassi.spec.runtime.cli import end_progress_bars


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--glow", type=Path, required=True, help="Glow artifact (the regulator's).")
    parser.add_argument(
        "--data-root", type=Path, default=None,
        help="the folder of the Glow's data when it is on disk (e.g. --dataset shapes3d-h5: the "
        "folder of DeepMind's 3dshapes.h5, whose real orientation siblings are the ground truth)",
    )  # fmt: skip
    parser.add_argument("--test", type=int, default=150, help="Certified test samples per run.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/experiments"),
        help="experiments folder (default runs/experiments); one per Glow",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )


def _certificate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cert-n", type=int, default=None,
        help="center smoothing n (estimation draws) and, unless --cert-n0 is given, n0 "
        "(default: settings.toml, the paper's 10 000)",
    )  # fmt: skip
    parser.add_argument(
        "--cert-n0", type=int, default=None,
        help="center smoothing n0 (selection and abstain-test draws each; default 10^4, the "
        "authors'; at 5000 the step-1 radius is biased low enough that a few concentrated "
        "siblings fail step 2)",
    )  # fmt: skip
    parser.add_argument(
        "--keep", choices=["best", "last"], default="best",
        help="write the encoder of the best validation epoch, or of the last (the authors' code "
        "certifies the last)",
    )  # fmt: skip


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The CLI's parser; defaults come from ``settings``."""
    parser = argparse.ArgumentParser(
        prog="lassi-experiments", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--settings", type=Path, default=None, help="settings TOML (default: packaged)")
    parser.add_argument("--protocols", type=Path, default=None, help="protocols TOML (default: packaged)")
    sub = parser.add_subparsers(dest="experiment", required=True)

    t2 = sub.add_parser("table2", help="ground-truth transfer (paper Table 2)")
    _common(t2)
    _certificate_options(t2)
    t2.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t2.add_argument("--epochs", type=int, default=settings.encoder.epochs, help="encoder epochs")
    t2.add_argument(
        "--methods", nargs="+", choices=list(settings.methods),
        default=["baseline", "adversarial+contrastive"], help="which rows to run",
    )  # fmt: skip
    t2.add_argument(
        "--protocol", choices=list(settings.protocols), default="authors",
        help="; ".join(f"{k}: {p.description}" for k, p in settings.protocols.items()),
    )  # fmt: skip
    t2.add_argument(
        "--executor", choices=["local", "ray"], default="local",
        help="where the siblings are certified (protocols that certify them)",
    )  # fmt: skip
    t2.add_argument("--workers", type=int, default=2, help="--executor ray: actors")
    t2.add_argument("--ray-address", default=None, help="--executor ray: a running cluster")
    t2.add_argument(
        "--verify-n", type=int, default=None,
        help="randomized smoothing n (CERTIFY; n0 = n / 50, at least 100)",
    )  # fmt: skip
    t2.add_argument(
        "--lassi-sigma", type=float, default=None,
        help="sigma_cls of the LASSI rows (default: settings.toml's method value, 1, the authors' "
        "script; the paper sweeps {1, 2.5, 5, 10, 25, 50})",
    )  # fmt: skip
    t2.add_argument(
        "--attack-region", choices=["ball", "cube"], default="ball",
        help="where the encoder's random attack draws t (cube: each t_i on [-eps, eps], as the "
        "authors' code does for one attribute name)",
    )  # fmt: skip
    t2.add_argument(
        "--attack-protocol", choices=settings.pairs_protocols, default=None,
        help="train the encoders' random attack over this protocol's spec, an extension of "
        "--protocol's (lassi-producer train --attack-spec); the certificates stay --protocol's",
    )  # fmt: skip
    t2.add_argument(
        "--producer-train", type=int, default=None,
        help="size of the producer's (correlated) train split; default: the Glow's",
    )  # fmt: skip
    t2.add_argument(
        "--endpoints", action="store_true",
        help="also certify each test sample's segment ends z_G +- eps*a_i (2m more center "
        "smoothings per sample) and report the endpoints' certified but empirically unfair",
    )  # fmt: skip

    ab = sub.add_parser("ablation", help="baseline / augmentation / adversarial / +contrastive (paper Table 1's design)")
    _common(ab)
    _certificate_options(ab)
    ab.add_argument("--epochs", type=int, default=settings.encoder.epochs, help="encoder epochs")
    ab.add_argument(
        "--vectors", choices=["halves", "pairs"], default="halves",
        help="the regulator's attribute vectors (pairs: one per low/high value pair)",
    )  # fmt: skip
    ab.add_argument(
        "--sensitive", nargs="+", choices=settings.ablation.sensitive_sets,
        default=list(settings.ablation.sensitive_sets), help="which sensitive sets (rows) to run",
    )  # fmt: skip
    ab.add_argument(
        "--methods", nargs="+", choices=list(settings.methods), default=list(settings.methods),
        help="which methods (rows per sensitive set) to run; default: all of settings' [methods]",
    )  # fmt: skip

    tr = sub.add_parser("transfer", help="consumers train on tasks the producer never saw")
    _common(tr)
    t = settings.transfer
    tr.add_argument("--lambda-rec", type=float, default=t.lambda_rec, help="latent reconstruction weight")
    tr.add_argument("--lambda-adv", type=float, default=t.lambda_adv, help="adversarial weight")
    tr.add_argument("--lambda-contr", type=float, default=t.lambda_contr, help="contrastive weight")
    tr.add_argument("--consumer-epochs", type=int, default=t.consumer_epochs, help="epochs of C_L")
    tr.add_argument("--sigmas", type=float, nargs="+", default=list(t.sigmas), help="sigma_cls values")

    sp = sub.add_parser("sibling-probe", help="unsmoothed per-image accuracy on the real siblings")
    _common(sp)
    loss = settings.methods["adversarial+contrastive"].loss
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--epochs", type=int, default=settings.sibling_probe.epochs)
    sp.add_argument("--attack-scale", type=float, default=1.0, help="train the attack on s·ε")
    sp.add_argument("--adv", type=float, default=loss.adv)
    sp.add_argument("--contr", type=float, default=loss.contr)
    sp.add_argument("--producer-train", type=int, default=None)
    sp.add_argument("--hidden", type=int, nargs="+", default=list(settings.encoder.hidden), help="encoder MLP widths")
    sp.add_argument("--k", type=int, default=settings.encoder.k, help="representation size")
    sp.add_argument("--name", default=None, help="folder name under <out>/sibling-probe/")
    sp.add_argument(
        "--protocol", choices=settings.pairs_protocols, default="authors",
        help="the Table 2 protocol whose spec and split to use",
    )  # fmt: skip
    sp.set_defaults(threads=1)

    add_celeba_parser(sub, settings)

    rp = sub.add_parser("report", help="write docs/results.md from docs/results/*.json")
    rp.add_argument("--results", type=Path, default=Path("docs/results"), help="results JSON folder")
    rp.add_argument("--out", type=Path, default=Path("docs/results.md"), help="the page to write")
    rp.add_argument("--check", action="store_true", help="exit 1 if the page is not up to date")
    return parser


def _settings_from(argv: list[str]) -> Settings:
    """The settings named by --settings/--protocols in ``argv`` (before the subcommand)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --protocol is not --protocols
    pre.add_argument("--settings", type=Path, default=None)
    pre.add_argument("--protocols", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    return load_settings(known.settings, known.protocols)


def run_experiment(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    """Run ``args.experiment`` in its workspace and write its results file (and figure)."""
    from lassi.experiments.ablation import ablation, plot_sigma
    from lassi.experiments.celeba import celeba
    from lassi.experiments.sibling_probe import sibling_probe
    from lassi.experiments.table2 import table2
    from lassi.experiments.transfer import transfer
    from lassi.experiments.workspace import Workspace
    from lassi.spec.runtime.device import resolve_device
    from lassi.spec.runtime.executors import make_executor

    ws = Workspace(
        out=args.out, device=resolve_device(args.device), settings=settings,
        data_root=getattr(args, "data_root", None),
    )
    if getattr(args, "executor", "local") != "local":  # fail before any compute
        make_executor(args.executor, workers=args.workers, address=args.ray_address)
    if hasattr(args, "cert_n"):
        args.cert, args.verify, args.sibling_n0 = settings.cert, settings.verify, settings.table2.sibling_n0
        if args.cert_n is not None or args.cert_n0 is not None:
            n = args.cert_n or args.cert.n
            n0 = args.cert_n0 or args.cert_n or args.cert.n0
            args.cert = with_draws(args.cert, n0, n)
            args.sibling_n0 = n0
    if getattr(args, "verify_n", None) is not None:
        args.verify = {"n0": max(100, args.verify_n // 50), "n": args.verify_n, "alpha": settings.verify["alpha"]}
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.experiment == "sibling-probe":
        print(json.dumps(sibling_probe(ws, args)))
        return 0
    experiment = {"table2": table2, "ablation": ablation, "transfer": transfer, "celeba": celeba}
    experiment = experiment[args.experiment]
    result = experiment(ws, args)
    result["seconds"] = time.perf_counter() - start
    result["command"] = " ".join(["lassi-experiments", *argv])
    folder = ws.out / result.pop("folder", args.experiment)
    folder.mkdir(parents=True, exist_ok=True)
    results_file = folder / result.pop("results_file", "results.json")
    figure = result.pop("figure", None)
    atomic_write_bytes(results_file, json.dumps(result, indent=2, default=str).encode())
    if figure:
        plot_sigma(result, folder / figure)
        print(f"figure: {folder / figure}")
    print(result["markdown"])
    print(f"{result['command']}: {result['seconds'] / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = _settings_from(argv)
        args = build_parser(settings).parse_args(argv)
        if args.experiment == "report":
            from lassi.experiments.report import report

            return report(args.results, args.out, check=args.check)
        return run_experiment(args, settings, argv)
    except LassiError as error:
        end_progress_bars()
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
